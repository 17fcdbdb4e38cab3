"""Executor adapters. RenamedExecutor maps a backend's tensor names (`input`/`output`, `window`/`next`)
onto a compiled model's own (e.g. an ONNX export's `x` / `linear_1`) for executors that address
tensors by name, such as Triton's. Halt and resume pass through to executors that can suspend."""

from __future__ import annotations

from collections.abc import Mapping

from services.serving.engine.executor import Batch, Executor, SuspendableExecutor


class RenamedExecutor:
    """With `input_dims` / `output_dims` (per row, keyed by the model's and the backend's names), arrays are
    also reshaped on the way: e.g. a model's [batch] label that a Triton entry carries as [batch, 1]."""

    def __init__(self, inner: Executor, *, inputs: Mapping[str, str] | None = None,
                 outputs: Mapping[str, str] | None = None, input_dims: Mapping[str, tuple[int, ...]] | None = None,
                 output_dims: Mapping[str, tuple[int, ...]] | None = None) -> None:
        self.inner = inner
        self._inputs = dict(inputs or {})     # backend name -> model name
        self._outputs = dict(outputs or {})   # model name -> backend name
        self._input_dims = dict(input_dims or {})     # model name -> dims per row it takes
        self._output_dims = dict(output_dims or {})   # backend name -> dims per row it expects

    async def execute(self, batch: Batch) -> Batch:
        names, back = self._inputs, self._outputs
        sent = {names.get(k, k): v for k, v in batch.items()}
        if self._input_dims:
            sent = {k: _rows(v, self._input_dims.get(k)) for k, v in sent.items()}
        result = await self.inner.execute(sent)
        answered = {back.get(k, k): v for k, v in result.items()}
        if self._output_dims:
            answered = {k: _rows(v, self._output_dims.get(k)) for k, v in answered.items()}
        return answered

    async def close(self) -> None:
        await self.inner.close()

    async def suspend(self) -> None:
        if isinstance(self.inner, SuspendableExecutor):
            await self.inner.suspend()

    async def restore(self) -> None:
        if isinstance(self.inner, SuspendableExecutor):
            await self.inner.restore()


def _rows(array, dims: tuple[int, ...] | None):
    return array if dims is None else array.reshape((len(array), *dims))
