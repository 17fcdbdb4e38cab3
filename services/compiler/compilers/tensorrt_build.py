"""TensorRT in its own process: `build` an engine from ONNX with an optimization profile for the batch
dimension, or `run` an engine on saved inputs (for validation). TensorRT can abort the whole process
(e.g. `trt.Builder()` without a usable GPU), so the service only ever talks to this through a
subprocess and reads its exit status and last stderr line.

    python -m services.compiler.compilers.tensorrt_build build --onnx M.onnx --plan M.plan --min 1 --opt 32 --max 64
    python -m services.compiler.compilers.tensorrt_build run --plan M.plan --inputs in.npz --outputs out.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build(args: argparse.Namespace) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(args.onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        fail(f"the TensorRT ONNX parser refused the graph: {errors or 'no reason given'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace_mb << 20)
    if args.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        row = tuple(tensor.shape)[1:]
        if any(d < 0 for d in row):
            fail(f"input {tensor.name} has dynamic dimensions besides the batch: {tuple(tensor.shape)}")
        profile.set_shape(tensor.name, (args.min, *row), (args.opt, *row), (args.max, *row))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        fail("the TensorRT builder produced no engine (its log above says why)")
    Path(args.plan).write_bytes(bytes(engine))


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(args.plan).read_bytes())
    if engine is None:
        fail("the engine could not be deserialised on this GPU")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        fail(f"expected one input and one output, the engine has {inputs} -> {outputs}")
    stream = torch.cuda.current_stream()
    data, results = np.load(args.inputs), {}
    for key in sorted(data.files):
        x = torch.from_numpy(data[key]).cuda().contiguous()
        context.set_input_shape(inputs[0], tuple(x.shape))
        y = torch.empty(tuple(context.get_tensor_shape(outputs[0])), dtype=torch.float32, device="cuda")
        context.set_tensor_address(inputs[0], x.data_ptr())
        context.set_tensor_address(outputs[0], y.data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            fail(f"the engine failed to run batch {x.shape[0]}")
        stream.synchronize()
        results[key] = y.cpu().numpy()
    np.savez(args.outputs, **results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.compiler.compilers.tensorrt_build")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build")
    b.add_argument("--onnx", required=True)
    b.add_argument("--plan", required=True)
    b.add_argument("--min", type=int, default=1)
    b.add_argument("--opt", type=int, required=True)
    b.add_argument("--max", type=int, required=True)
    b.add_argument("--precision", choices=("fp32", "fp16"), default="fp16")
    b.add_argument("--workspace-mb", type=int, default=2048)
    r = commands.add_parser("run")
    r.add_argument("--plan", required=True)
    r.add_argument("--inputs", required=True)
    r.add_argument("--outputs", required=True)
    args = parser.parse_args(argv)
    try:
        (build if args.command == "build" else run)(args)
    except SystemExit:
        raise
    except Exception as exc:  # one line for the parent; the traceback stays in this process
        fail(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")


if __name__ == "__main__":
    main()
