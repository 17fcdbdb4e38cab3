"""Writes entries of a Triton model repository: python-backend wrappers for torch and ONNX models.

The pytriton binary ships only the python backend, so both kinds run through one `model.py` wrapper
(python_model/model.py): torch modules are rebuilt from an architecture spec + safetensors weights,
ONNX graphs run under onnxruntime. The wrapper runs in Triton's environment, where mlmesh is not
installed, so each entry carries its own copy of services/core/models/architectures.py (the one
import of the mesh's errors swapped for a local class): an entry is self-contained and works as well
on a remote production Triton as on the local one. Entries are staged and renamed into place, so
Triton never sees half an entry.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, InvalidArgument, NotFound

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # no separators, no leading dot: no traversal
TENSOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")  # also quoted into config.pbtxt
TEMPLATE = Path(__file__).parent / "python_model" / "model.py"
_ERRORS_IMPORT = "from services.core.errors import InvalidArgument\n"
_LOCAL_ERROR = (
    "class InvalidArgument(ValueError):  # vendored: mlmesh's errors are not importable inside Triton\n"
    "    def __init__(self, message, *, field=None):\n"
    "        super().__init__(f'{field}: {message}' if field else message)\n"
)
_TRITON_TYPES = {
    "bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
    "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "STRING",
    "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
}  # fmt: skip
DATA_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")  # one part of an external data file's path
RESERVED = ("model.py", "config.pbtxt", "architecture.json", "mlmesh_architectures.py", "model.safetensors")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: `dims` are per row (the batch dimension is implicit), -1 for any size."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "float32"

    def config(self) -> str:
        if not TENSOR_NAME.fullmatch(self.name):
            raise InvalidArgument(f"tensor name {self.name!r} is not allowed", field="name")
        try:
            kind = _TRITON_TYPES.get(np.dtype(self.dtype).name)
        except TypeError:
            kind = None
        if kind is None:
            raise InvalidArgument(f"dtype {self.dtype!r} is not one of {sorted(_TRITON_TYPES)}", field=self.name)
        if not self.dims or any(not isinstance(d, int) or d == 0 or d < -1 for d in self.dims):
            raise InvalidArgument(f"dims {self.dims!r} must be positive sizes or -1", field=self.name)
        return f'{{ name: "{self.name}" data_type: TYPE_{kind} dims: [ {", ".join(map(str, self.dims))} ] }}'


def vendored_architectures() -> str:
    """services/core/models/architectures.py made importable without the mlmesh package."""
    spec = importlib.util.find_spec("services.core.models.architectures")
    source = Path(spec.origin).read_text() if spec and spec.origin else ""
    if _ERRORS_IMPORT not in source:
        raise FailedPrecondition("services/core/models/architectures.py no longer imports only InvalidArgument")
    source = source.replace(_ERRORS_IMPORT, _LOCAL_ERROR)
    if re.search(r"^\s*(from|import)\s+(services|mlmesh)\b", source, re.M):
        raise FailedPrecondition("architectures.py imports mlmesh modules that Triton's environment lacks")
    return source


@dataclass(frozen=True)
class ModelConfig:
    """What config.pbtxt says: tensors, the largest batch Triton accepts, optional dynamic batching."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 32
    dynamic_batching_delay_us: int | None = None  # None: one request = one model call (mlmesh batches)
    instances: int = 1
    threads: int = 0  # intra-op threads per instance; 0 = the runtime's default

    def text(self, name: str, runtime: str, params: Mapping[str, str] | None = None) -> str:
        if not self.inputs or not self.outputs:
            raise InvalidArgument("a model needs at least one input and one output", field="inputs")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise InvalidArgument("input and output names must be distinct", field="inputs")
        delay = self.dynamic_batching_delay_us or 0
        if self.max_batch_size < 1 or self.instances < 1 or self.threads < 0 or delay < 0:
            raise InvalidArgument("max_batch_size and instances must be >= 1, threads and delay >= 0", field="config")
        params = {"mlmesh_runtime": runtime, "mlmesh_threads": str(self.threads), **(params or {})}
        lines = [
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {self.max_batch_size}",
            f"input [ {', '.join(t.config() for t in self.inputs)} ]",
            f"output [ {', '.join(t.config() for t in self.outputs)} ]",
            f"instance_group [ {{ kind: KIND_CPU count: {self.instances} }} ]",
            *(f'parameters: {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}' for k, v in params.items()),
        ]
        if self.dynamic_batching_delay_us is not None:  # Triton groups concurrent requests; model.py splits them
            lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {int(self.dynamic_batching_delay_us)} }}")
        return "\n".join(lines) + "\n"


class ModelRepository:
    """A folder Triton serves with `--model-repository`; one subfolder per model, version 1."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise InvalidArgument(f"model name {name!r} is not allowed", field="model_name")
        return self.root / name

    def write_torch_model(
        self, name: str, config: ModelConfig, *, architecture: Mapping[str, Any], weights: Path
    ) -> Path:
        """A torch module rebuilt from `architecture` with the safetensors file `weights` (copied)."""
        files = {
            "architecture.json": json.dumps(dict(architecture), sort_keys=True).encode(),
            "mlmesh_architectures.py": vendored_architectures().encode(),
        }
        return self._write(name, config.text(name, "torch"), files, {"model.safetensors": Path(weights)})

    def write_onnx_model(self, name: str, config: ModelConfig, *, onnx_file: Path,
                         data_files: tuple[str, ...] | list[str] = ()) -> Path:
        """An ONNX graph run by onnxruntime inside Triton's python backend.

        The file keeps its name, so the external data that torch's exporter writes beside it
        (`<file>.data`, referenced by that name from inside the graph) is found; it is copied too, and so
        is every path in `data_files` (the graph's external data locations, relative to its folder).
        """
        onnx_file = Path(onnx_file)
        if not MODEL_NAME.fullmatch(onnx_file.name) or onnx_file.name in RESERVED:
            raise InvalidArgument(f"ONNX file name {onnx_file.name!r} is not allowed", field="onnx_file")
        copies = {onnx_file.name: onnx_file}
        data = onnx_file.with_name(onnx_file.name + ".data")
        if data.is_file():
            copies[data.name] = data
        for location in data_files:
            parts = location.split("/")
            if not all(DATA_PART.fullmatch(p) for p in parts) or location in RESERVED or location == onnx_file.name:
                raise InvalidArgument(f"external data path {location!r} is not allowed", field="data_files")
            copies[location] = onnx_file.parent / location
        text = config.text(name, "onnxruntime", {"mlmesh_onnx_file": onnx_file.name})
        return self._write(name, text, {}, copies)

    def remove(self, name: str) -> None:
        """Drop an entry (unload it from Triton first); a missing entry is NotFound."""
        path = self.path(name)
        if not path.is_dir():
            raise NotFound(f"no model {name!r} in the repository", field="model_name")
        shutil.rmtree(path)

    def _write(self, name: str, config_text: str, blobs: dict[str, bytes], copies: dict[str, Path]) -> Path:
        final = self.path(name)
        for target, source in copies.items():
            if not source.is_file():
                raise NotFound(f"{source} does not exist", field=target)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / ".staging"  # same filesystem, so the final rename is atomic
        staging.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=staging))
        try:
            (tmp / "1").mkdir()
            (tmp / "config.pbtxt").write_text(config_text)
            shutil.copyfile(TEMPLATE, tmp / "1" / "model.py")
            for target, data in blobs.items():
                (tmp / "1" / target).write_bytes(data)
            for target, source in copies.items():
                (tmp / "1" / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, tmp / "1" / target)
            old = None
            if final.exists():  # a redeploy: swap, then drop the old entry (Triton reads it on load only)
                old = Path(tempfile.mkdtemp(prefix=f"{name}.old.", dir=staging))
                final.rename(old / "entry")
            tmp.rename(final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                staging.rmdir()  # gone again unless another write is under way
            except OSError:
                pass
        return final
