"""Executor adapters. RenamedExecutor maps a backend's tensor names (`input`/`output`, `window`/`next`)
onto a compiled model's own (e.g. an ONNX export's `x` / `linear_1`) for executors that address
tensors by name, such as Triton's. Halt and resume pass through to executors that can suspend."""

from __future__ import annotations

from collections.abc import Mapping

from services.serving.engine.executor import Batch, Executor, SuspendableExecutor


class RenamedExecutor:
    def __init__(self, inner: Executor, *, inputs: Mapping[str, str] | None = None,
                 outputs: Mapping[str, str] | None = None) -> None:
        self.inner = inner
        self._inputs = dict(inputs or {})     # backend name -> model name
        self._outputs = dict(outputs or {})   # model name -> backend name

    async def execute(self, batch: Batch) -> Batch:
        names, back = self._inputs, self._outputs
        result = await self.inner.execute({names.get(k, k): v for k, v in batch.items()})
        return {back.get(k, k): v for k, v in result.items()}

    async def close(self) -> None:
        await self.inner.close()

    async def suspend(self) -> None:
        if isinstance(self.inner, SuspendableExecutor):
            await self.inner.suspend()

    async def restore(self) -> None:
        if isinstance(self.inner, SuspendableExecutor):
            await self.inner.restore()
