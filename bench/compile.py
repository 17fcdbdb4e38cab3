"""Compiled vs eager: latency at batch 1 and 32 and size, side by side in one run.

Models large enough for INT8 to matter: an MLP with three 1024-wide hidden layers and an LSTM
forecaster (hidden 256, window 32). Each is compiled by the compiler's own core (the files the service
would store, validated the same way): ONNX fp32, INT8 ONNX (ONNX Runtime quant_pre_process +
quantize_dynamic QInt8), and INT8 TorchScript (torch dynamic quantization) for comparison. Latency
is the median of timed runs after warm-up, every runtime on this machine's cores; sizes are against
the fp32 safetensors weights. Goal: INT8 >= 1.5x faster than eager fp32 at batch 32, size <= 0.3x.

    .venv/bin/python bench/compile.py [--runs 200] [--models mlp,lstm]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from safetensors.torch import save as safetensors_bytes

from services.compiler.build import compile_and_validate
from services.compiler.compilers.onnx import onnx_runner
from services.compiler.compilers.registry import CompilerCatalog
from services.compiler.compilers.torchscript import torchscript_runner
from services.compiler.models import build_module
from services.compiler.settings import CompilerSettings
from services.compiler.signature import sample_inputs, signature_for
from services.compiler.validation import ValidationPolicy

MODELS = {
    "mlp": {"type": "mlp", "layers": [256, 1024, 1024, 1024, 16], "output": "value"},
    "lstm": {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 256, "num_layers": 1, "window": 32},
}
BATCHES = (1, 32)
VARIANTS = (("onnx", "onnx", {}), ("int8 onnx", "int8", {}), ("int8 pt", "int8", {"format": "pt"}))


def median_ms(runs_by_variant: list, x, runs: int, rounds: int = 20) -> list[float]:
    """Median ms per variant. Variants take turns in short rounds, so a noisy neighbour on a shared
    machine slows them all alike instead of whichever happened to be measured at that moment."""
    for run in runs_by_variant:
        for _ in range(max(5, runs // 10)):
            run(x)
    times: list[list[float]] = [[] for _ in runs_by_variant]
    for _ in range(rounds):
        for index, run in enumerate(runs_by_variant):
            for _ in range(max(1, runs // rounds)):
                start = time.perf_counter()
                run(x)
                times[index].append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def bench_model(name: str, catalog: CompilerCatalog, root: Path, runs: int) -> list[dict]:
    architecture = MODELS[name]
    torch.manual_seed(0)
    module = build_module(architecture).eval()
    signature = signature_for({"architecture": architecture})
    weights = len(safetensors_bytes({k: v.contiguous() for k, v in module.state_dict().items()}))

    def eager(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    rows = [{"model": name, "variant": "eager fp32", "size": weights, "run": eager, "error": 0.0}]
    for label, target, kwargs in VARIANTS:
        resolved = catalog.resolve(target)
        effective = resolved.compiler.check(resolved.target, kwargs, signature)
        folder = root / f"{name}-{label.replace(' ', '-')}"
        compiled = compile_and_validate(resolved.compiler, resolved.target, effective, module, signature, 64,
                                        ValidationPolicy().checked(64), folder / "entry", folder / "scratch")
        path = compiled.entry / compiled.primary.path
        run = onnx_runner(path) if path.suffix == ".onnx" else torchscript_runner(path)
        rows.append({"model": name, "variant": label, "size": compiled.model_size, "run": run,
                     "error": compiled.metrics["max_rel_error"]})
    for b in BATCHES:
        x = sample_inputs(signature, b, seed=b)
        for row, ms in zip(rows, median_ms([r["run"] for r in rows], x, runs)):
            row[f"ms{b}"] = ms
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--models", default="mlp,lstm")
    args = parser.parse_args()
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    catalog = CompilerCatalog.build(CompilerSettings())
    console = Console(width=150)  # one row per variant, also when piped
    table = Table(title=f"compiled vs eager (torch threads: {torch.get_num_threads()}, median of {args.runs} runs)")
    for column in ("model", "variant", "b=1 ms", "b=1 speedup", "b=32 ms", "b=32 speedup", "size", "size ratio",
                   "max rel err"):
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="mlmesh-bench-compile-") as tmp:
        for name in args.models.split(","):
            rows = bench_model(name, catalog, Path(tmp), args.runs)
            base = rows[0]
            for row in rows:
                table.add_row(
                    row["model"], row["variant"], f"{row['ms1']:.3f}", f"{base['ms1'] / row['ms1']:.2f}x",
                    f"{row['ms32']:.3f}", f"{base['ms32'] / row['ms32']:.2f}x", f"{row['size'] / 1e6:.2f} MB",
                    f"{row['size'] / base['size']:.2f}x", f"{row['error']:.2e}",
                )
            int8 = next(r for r in rows if r["variant"] == "int8 onnx")
            speed, size = base["ms32"] / int8["ms32"], int8["size"] / base["size"]
            verdicts.append(f"{name}: INT8 ONNX {speed:.2f}x eager fp32 at batch 32 (goal >= 1.5x: "
                            f"{'met' if speed >= 1.5 else 'NOT met'}), size {size:.2f}x (goal <= 0.3x: "
                            f"{'met' if size <= 0.3 else 'NOT met'})")
    console.print(table)
    for line in verdicts:
        console.print(line)


if __name__ == "__main__":
    main()
