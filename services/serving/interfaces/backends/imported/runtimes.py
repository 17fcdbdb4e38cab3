"""Runtimes of imported models, picked by `metadata.runtime.kind`: the model's own named tensors in, its own
named outputs back (`{name: array}` per the signature), one batch per call (boosters: boosters.py).

- onnxruntime: the graph loaded FROM ITS PATH inside the verified folder, so external data resolves
  against that folder (ONNX Runtime refuses locations that escape it; `InferenceSession(bytes)` would
  resolve them against the working directory). The graph and every external data file it references
  are hashed again right before the load, and must be files the artifact lists;
- xgboost / lightgbm: the library's own file, read into memory, hashed there, and parsed from exactly
  those bytes (`xgboost.Booster(model_file=bytearray)`, `lightgbm.Booster(model_str=)`: neither
  unpickles). They run in-process only: Triton here has the python backend with onnxruntime alone.
"""

from __future__ import annotations

import logging
import hashlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, IntegrityError, outward
from services.serving.engine.executor import default_torch_threads
from services.serving.interfaces.backends.imported.boosters import LightGBMRuntime, XGBoostRuntime
from services.serving.interfaces.backends.imported.signature import ModelSignature, TensorInfo, runtime_spec

log = logging.getLogger("mlmesh.serving.models")

ExpectedFiles = Mapping[str, tuple[str, int]]   # artifact path -> (sha256, size), from the manifest
ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "string",
}  # fmt: skip
# manifest.framework -> the runtime kinds its metadata may name
FRAMEWORK_RUNTIMES = {"onnx": ("onnxruntime",), "xgboost": ("onnxruntime", "xgboost"),
                      "lightgbm": ("onnxruntime", "lightgbm")}


def _changed(path: str) -> IntegrityError:
    return IntegrityError(f"sha256 mismatch for {path}: it changed after verification", field="model")


def recheck_file(folder: Path, path: str, expected: ExpectedFiles | None) -> None:
    """The file must still hash as the manifest lists it (a no-op without `expected`)."""
    if expected is None:
        return
    if path not in expected:
        raise FailedPrecondition(f"{path} is not a file of the artifact", field="model")
    target = folder / path
    if target.is_symlink() or not target.is_file():
        raise _changed(path)
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if (digest.hexdigest(), target.stat().st_size) != tuple(expected[path]):
        raise _changed(path)


def read_verified(folder: Path, path: str, expected: ExpectedFiles | None) -> bytes:
    """The file's bytes, hashed in memory against the manifest: what is parsed is what was verified."""
    target = folder / path
    if target.is_symlink() or not target.is_file():
        raise FailedPrecondition(f"{path} is not a file of the artifact", field="model")
    data = target.read_bytes()
    if expected is not None:
        if path not in expected:
            raise FailedPrecondition(f"{path} is not a file of the artifact", field="model")
        if (hashlib.sha256(data).hexdigest(), len(data)) != tuple(expected[path]):
            raise _changed(path)
    return data


def external_data_files(path: Path) -> tuple[str, ...]:
    """The external data locations the graph references (relative to its folder), sorted and unique.
    Only the graph's structure is parsed (no external data is read)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a bad file
        log.warning("not a readable ONNX graph: %s", exc)  # in full; the caller gets outward()
        raise FailedPrecondition(f"not a readable ONNX graph: {type(exc).__name__}: {outward(exc)}",
                                 field="model") from None
    locations: set[str] = set()

    def tensors(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from tensors(attribute.g)
                for sub in attribute.graphs:
                    yield from tensors(sub)

    for tensor in tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            locations.add(entry.get("location", ""))
    for location in locations:
        parts = PurePosixPath(location).parts
        if not location or location.startswith("/") or "\\" in location or ".." in parts:
            raise FailedPrecondition(f"the graph's external data {location!r} is not a file beside it",
                                     field="model")
    return tuple(sorted(locations))


def _ort_check(declared: TensorInfo, actual, role: str) -> None:
    dtype = ORT_TYPES.get(actual.type)
    rank = len(actual.shape) if isinstance(actual.shape, list) and actual.shape else None  # [] / None: unknown
    if dtype != declared.dtype or (rank is not None and rank != len(declared.shape)):
        raise FailedPrecondition(f"the signature's {role} {declared.name!r} is {declared.dtype} "
                                 f"{list(declared.shape)}; the graph's is {actual.type} {actual.shape}",
                                 field="metadata.signature")


class ImportedOnnxRuntime:
    uses_torch = False
    in_process_only = ""
    kind = "onnxruntime"

    def __init__(self, path: Path | str, signature: ModelSignature, *, threads: int | None = None,
                 external_files: tuple[str, ...] = ()) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.external_files = external_files   # relative to the graph's folder (Triton's entry copies them)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_torch_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid models
            log.warning("not a loadable ONNX model: %s", exc)  # in full; the caller gets outward()
            raise FailedPrecondition(f"not a loadable ONNX model: {type(exc).__name__}: {outward(exc)}",
                                     field="model") from None
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        graph_outputs = {o.name: o for o in self.session.get_outputs()}
        if set(graph_inputs) != {t.name for t in signature.inputs}:
            raise FailedPrecondition(f"the graph takes {sorted(graph_inputs)}; the signature lists "
                                     f"{[t.name for t in signature.inputs]}", field="metadata.signature.inputs")
        for tensor in signature.inputs:
            _ort_check(tensor, graph_inputs[tensor.name], "input")
        for tensor in signature.outputs:
            if tensor.name not in graph_outputs:
                raise FailedPrecondition(f"the graph has no output {tensor.name!r}; it has {sorted(graph_outputs)}",
                                         field="metadata.signature.outputs")
            _ort_check(tensor, graph_outputs[tensor.name], "output")
        self.output_names = [t.name for t in signature.outputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


ImportedRuntime = ImportedOnnxRuntime | XGBoostRuntime | LightGBMRuntime


def load_runtime(folder: Path | str, metadata: Mapping[str, Any], signature: ModelSignature, *,
                 framework: str = "", expected: ExpectedFiles | None = None,
                 threads: int | None = None) -> ImportedRuntime:
    """The runtime `metadata.runtime` names, from the verified `folder`; with `expected` (the manifest's
    files), the files it reads are hashed again right before they are loaded."""
    folder = Path(folder)
    spec = runtime_spec(metadata)
    kind, file = spec["kind"], spec["file"]
    allowed = FRAMEWORK_RUNTIMES.get(framework)
    if allowed is not None and kind not in allowed:
        raise FailedPrecondition(f"a {framework} artifact runs {list(allowed)}, not {kind!r}",
                                 field="metadata.runtime.kind")
    if kind == "onnxruntime":
        recheck_file(folder, file, expected)
        path = folder / file
        externals = external_data_files(path)
        base = PurePosixPath(file).parent
        for location in externals:
            recheck_file(folder, (base / location).as_posix(), expected)
        return ImportedOnnxRuntime(path, signature, threads=threads, external_files=externals)
    conversion = metadata.get("conversion")
    reason = str(conversion.get("reason") or "") if isinstance(conversion, Mapping) else ""
    data = read_verified(folder, file, expected)
    cls = XGBoostRuntime if kind == "xgboost" else LightGBMRuntime
    return cls(data, signature, runtime=spec, threads=threads, reason=reason)
