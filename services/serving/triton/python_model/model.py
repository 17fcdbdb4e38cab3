"""Triton python-backend model that mlmesh writes into a model repository (copied, never imported).

It runs inside Triton's own environment (.triton-venv or a production Triton image), where the mlmesh
package is absent: everything it needs lies next to it in the version folder. Parameters (config.pbtxt):

  mlmesh_runtime   "torch": architecture.json + model.safetensors, rebuilt by the vendored
                   mlmesh_architectures.py; "onnxruntime": the graph named by mlmesh_onnx_file, with its
                   own tensor names and dtypes (strings included; a [batch] tensor is [batch, 1] here)
  mlmesh_threads   intra-op threads of torch / onnxruntime ("0" = the library's default)

The stub embeds the system libpython and ignores PYTHONPATH, and it imports numpy (through
triton_python_backend_utils) right after this module: so the folders in $MLMESH_TRITON_SYS_PATH (set by
mlmesh's launcher to Triton's site-packages) go first on sys.path here, at import time. A production
Triton whose interpreter already has the packages leaves the variable unset.

Requests that Triton's dynamic batcher groups are concatenated, run once and split again.
"""

import json
import os
import sys

_EXTRA = [p for p in os.environ.get("MLMESH_TRITON_SYS_PATH", "").split(os.pathsep) if p and p not in sys.path]
sys.path[:0] = _EXTRA

import numpy as np  # noqa: E402  (only now findable)
import triton_python_backend_utils as pb  # noqa: E402


def _param(config, key, default=""):
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, version_dir)  # the vendored architectures module
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [(o["name"], pb.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        self.output_dims = [tuple(int(d) for d in o.get("dims", [])) for o in config["output"]]
        runtime, threads = _param(config, "mlmesh_runtime"), int(_param(config, "mlmesh_threads", "0") or 0)
        if runtime == "torch":
            self.run = self._torch_runner(version_dir, threads)
        elif runtime == "onnxruntime":
            self.run = self._onnx_runner(os.path.join(version_dir, _param(config, "mlmesh_onnx_file")), threads)
        else:
            raise ValueError(f"mlmesh_runtime {runtime!r} is neither 'torch' nor 'onnxruntime'")

    def _torch_runner(self, version_dir, threads):
        import torch
        from safetensors.torch import load_file

        import mlmesh_architectures

        if threads > 0:
            torch.set_num_threads(threads)
        with open(os.path.join(version_dir, "architecture.json")) as f:
            architecture = json.load(f)
        state = load_file(os.path.join(version_dir, "model.safetensors"))
        module = mlmesh_architectures.load_module(architecture, state)  # strict: weights must fit

        def run(arrays):
            with torch.inference_mode():
                out = module(*[torch.from_numpy(a) for a in arrays])
            out = out if isinstance(out, (tuple, list)) else (out,)
            return [t.detach().cpu().numpy() for t in out]

        return run

    def _onnx_runner(self, path, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if sorted(names[0]) != sorted(self.inputs) or not {n for n, _ in self.outputs} <= set(names[1]):
            raise ValueError(f"the ONNX graph's inputs/outputs {names} do not match the config's")
        graph = {i.name: i for i in session.get_inputs()}
        # A graph input of rank 1 ([batch]) arrives as [batch, 1] (Triton's dims are per row); a string
        # input arrives as bytes, which onnxruntime would turn into "b'...'" rather than decode.
        flat = [isinstance(graph[n].shape, list) and len(graph[n].shape) == 1 for n in self.inputs]
        text = [graph[n].type == "tensor(string)" for n in self.inputs]
        wanted = [n for n, _ in self.outputs]

        def feed(array, flat_input, text_input):
            if flat_input and array.ndim == 2 and array.shape[1] == 1:
                array = array.reshape(-1)
            if text_input:
                decoded = np.empty(array.shape, dtype=object)
                decoded.ravel()[:] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
                array = decoded
            return array

        def run(arrays):
            return session.run(wanted, {n: feed(a, f, t) for n, a, f, t in zip(self.inputs, arrays, flat, text)})

        return run

    @staticmethod
    def _shaped(result, dims, rows):
        """A graph's [batch] output as the config's [batch, 1] (dims per row), and the like."""
        result = np.asarray(result)
        if result.shape[1:] != tuple(dims) and dims and all(d > 0 for d in dims) and result.size == rows * int(
                np.prod(dims)):
            return result.reshape((rows, *dims))
        return result

    def execute(self, requests):
        try:
            per_request = [[pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs] for r in requests]
            sizes = [arrays[0].shape[0] for arrays in per_request]
            joined = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*per_request)]
            results = [self._shaped(r, dims, sum(sizes)) for r, dims in zip(self.run(joined), self.output_dims)]
            if len(results) != len(self.outputs) or any(r.shape[0] != sum(sizes) for r in results):
                raise ValueError(f"the model answered shapes {[r.shape for r in results]} for {sum(sizes)} rows")
        except Exception as exc:  # one failure answers every request of the batch, never half of them
            return [pb.InferenceResponse(error=pb.TritonError(f"{type(exc).__name__}: {exc}")) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb.Tensor(name, np.ascontiguousarray(result[start : start + size], dtype=dtype))
                for (name, dtype), result in zip(self.outputs, results)
            ]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
