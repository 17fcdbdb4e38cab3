"""A session's model on Triton: its repository entry (python-backend wrapper around the verified weights,
the compiled ONNX graph, or an imported model's ONNX graph) and an executor that removes the entry again
when the session goes.

The backend's tensor names (`input`/`output`, `window`/`next`) are the entry's names for torch entries;
a compiled ONNX graph keeps the compiler's (INPUT__0 / OUTPUT__0) and a RenamedExecutor maps them. An
imported graph keeps the MODEL'S OWN names and dtypes, every output its interface reads (a classifier's
probabilities and label), with the graph's external data files copied beside it; a [batch] tensor is
[batch, 1] in the entry (Triton's dims are per row) and reshaped back on the way out. Native boosters
(xgboost / lightgbm served by their library) run in-process only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from services.core.artifacts.save import write_safetensors
from services.core.canonical import canonical_json
from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.engine.adapters import RenamedExecutor
from services.serving.engine.config import BatchingConfig
from services.serving.engine.executor import Batch, Executor
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.runtimes import ImportedOnnxRuntime
from services.serving.interfaces.backends.imported.signature import TensorInfo
from services.serving.loading.resolver import ResolvedModel
from services.serving.triton.executor import TritonExecutor
from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec

COMPILED_INPUT, COMPILED_OUTPUT = "INPUT__0", "OUTPUT__0"  # the compiler's tensor names


def tensor_specs(backend: ModelBackend) -> tuple[tuple[str, tuple[int, ...]], tuple[str, tuple[int, ...]]]:
    """(input name, dims per row), (output name, dims per row) of the backend's batch function."""
    if backend.in_process_only:  # compiled .pt / .pt2, transformers pipelines
        raise FailedPrecondition(backend.in_process_only, field="executor")
    architecture = backend.architecture
    kind = architecture.get("type")
    if kind == "mlp":
        layers = [int(n) for n in architecture["layers"]]
        return ("input", (layers[0],)), ("output", (layers[-1],))
    if kind == "lstm_forecaster":
        return ("window", (int(backend.window),)), ("next", (1,))
    if kind == "hashed_bow_linear":
        return ("input", (int(backend.buckets),)), ("output", (len(backend.labels),))
    raise FailedPrecondition(f"the {backend.interface} backend ({kind or 'algorithmic'}) runs in-process only",
                             field="executor")


def _entry_spec(tensor: TensorInfo) -> TensorSpec:
    return TensorSpec(tensor.name, tensor.dims or (1,), "object" if tensor.is_string else tensor.dtype)


def imported_specs(backend: ImportedBackend) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The entry's inputs and outputs for an imported backend: the model's own tensors."""
    if backend.in_process_only:  # native boosters
        raise FailedPrecondition(backend.in_process_only, field="executor")
    if not isinstance(backend.runtime, ImportedOnnxRuntime):
        raise FailedPrecondition(f"the {backend.interface} backend's runtime runs in-process only", field="executor")
    signature = backend.signature
    inputs = tuple(_entry_spec(t) for t in signature.inputs)
    outputs = tuple(_entry_spec(signature.output(name)) for name in backend.batch_outputs)
    for spec in (*inputs, *outputs):
        try:
            spec.config()
        except InvalidArgument as exc:  # a name or dtype a Triton config cannot carry: auto stays in-process
            raise FailedPrecondition(f"the model's tensor {spec.name!r} cannot be a Triton tensor: {exc.message}",
                                     field="executor") from None
    return inputs, outputs


def check_triton(backend: ModelBackend) -> None:
    """FailedPrecondition (field "executor", with the reason) unless the backend can run on Triton."""
    if isinstance(backend, ImportedBackend):
        imported_specs(backend)
    else:
        tensor_specs(backend)


def torch_architecture(backend: ModelBackend) -> dict:
    """The spec the entry rebuilds the module from: integers as integers (metadata crossed a Struct), and a
    text model's class count from its labels when the spec leaves it out (as the torch factory does)."""
    architecture = json.loads(canonical_json(dict(backend.architecture)))
    if architecture.get("type") == "hashed_bow_linear" and "classes" not in architecture:
        architecture["classes"] = len(backend.labels)
    return architecture


class TritonSessionExecutor:
    """A TritonExecutor whose repository entry is removed when the session is undeployed."""

    def __init__(self, inner: Executor, triton: TritonExecutor, repository: ModelRepository) -> None:
        self.inner = inner          # the executor the engine calls (maybe renaming tensors)
        self.triton = triton
        self._repository = repository
        self._closed = False

    async def execute(self, batch: Batch) -> Batch:
        return await self.inner.execute(batch)

    async def suspend(self) -> None:
        await self.triton.suspend()

    async def restore(self) -> None:
        await self.triton.restore()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.inner.close()
        finally:
            try:
                await asyncio.to_thread(self._repository.remove, self.triton.model_name)
            except Exception:  # noqa: BLE001 - a leftover entry is rewritten by the next deploy of this id
                pass


async def write_entry(repository: ModelRepository, name: str, backend: ModelBackend, model: ResolvedModel,
                      batching: BatchingConfig) -> bool:
    """Writes the entry for `name`; True when its tensors carry the compiler's names (need renaming)."""
    if isinstance(backend, ImportedBackend):
        inputs, outputs = imported_specs(backend)
        config = ModelConfig(inputs, outputs, max_batch_size=batching.max_batch_size)
        runtime = backend.runtime
        await asyncio.to_thread(repository.write_onnx_model, name, config, onnx_file=runtime.path,
                                data_files=runtime.external_files)
        return False
    (in_name, in_dims), (out_name, out_dims) = tensor_specs(backend)
    if model.onnx_path is not None:
        config = ModelConfig((TensorSpec(COMPILED_INPUT, in_dims),), (TensorSpec(COMPILED_OUTPUT, out_dims),),
                             max_batch_size=batching.max_batch_size)
        await asyncio.to_thread(repository.write_onnx_model, name, config, onnx_file=model.onnx_path)
        return True
    if model.state_dict is None:
        raise FailedPrecondition("this model has no weights Triton could run", field="executor")
    config = ModelConfig((TensorSpec(in_name, in_dims),), (TensorSpec(out_name, out_dims),),
                         max_batch_size=batching.max_batch_size)
    architecture = torch_architecture(backend)
    await asyncio.to_thread(_write_torch, repository, name, config, architecture, model.state_dict)
    return False


def _write_torch(repository: ModelRepository, name: str, config: ModelConfig, architecture: dict,
                 state_dict: dict) -> None:
    # The tensors were built from the verified bytes; writing them out again (rather than copying the
    # cached file, which something could change after its check) gives Triton exactly what was verified.
    tmp = Path(tempfile.mkdtemp(prefix="mlmesh-triton-weights-"))
    try:
        weights = tmp / "model.safetensors"
        write_safetensors(state_dict, weights)
        repository.write_torch_model(name, config, architecture=architecture, weights=weights)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def imported_adapter(triton: Executor, backend: ImportedBackend) -> RenamedExecutor:
    """The backend's batch keys onto the entry's tensors and back, in the model's own shapes."""
    signature = backend.signature
    inputs = {t.name: t for t in signature.inputs}
    return RenamedExecutor(
        triton, inputs=backend.batch_inputs, outputs=backend.batch_outputs,
        input_dims={name: inputs[name].dims or (1,) for name in backend.batch_inputs.values()},
        output_dims={key: signature.output(name).dims for name, key in backend.batch_outputs.items()},
    )


async def triton_executor(url: str, repository: ModelRepository, name: str, backend: ModelBackend,
                          model: ResolvedModel, batching: BatchingConfig, *, request_timeout_s: float,
                          load_timeout_s: float) -> TritonSessionExecutor:
    """Writes the entry, loads it into Triton (explicit model control) and returns the session's executor;
    on any failure nothing is left loaded or written."""
    renamed = await write_entry(repository, name, backend, model, batching)
    triton = TritonExecutor(url, name, request_timeout_s=request_timeout_s, load_timeout_s=load_timeout_s)
    inner: Executor = triton
    if isinstance(backend, ImportedBackend):
        inner = imported_adapter(triton, backend)
    elif renamed:
        (in_name, _), (out_name, _) = tensor_specs(backend)
        inner = RenamedExecutor(triton, inputs={in_name: COMPILED_INPUT}, outputs={COMPILED_OUTPUT: out_name})
    executor = TritonSessionExecutor(inner, triton, repository)
    try:
        await triton.load(reload=True)  # a rewritten entry must be read again
    except BaseException:
        await executor.close()
        raise
    return executor
