"""The Triton executor: runs the batches the scheduler forms on Triton, one request per batch.

Load and unload go through Triton's explicit model control, so a halt unloads the session's model and
nothing that goes around mlmesh (tritonclient pointed at Triton) keeps getting answers. Inputs are
checked against the model's config before anything is sent, so a bad tensor is INVALID_ARGUMENT
naming the input, not an opaque backend error. Triton's own answers become mlmesh domain errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from services.core.errors import FailedPrecondition, InvalidArgument, MLMeshError, Unavailable, error_for_status

T = TypeVar("T")


def _code(exc: InferenceServerException) -> grpc.StatusCode | None:
    status = exc.status()  # "StatusCode.NOT_FOUND"; None when the client library raised it itself
    return getattr(grpc.StatusCode, status.removeprefix("StatusCode."), grpc.StatusCode.UNKNOWN) if status else None


def from_triton(exc: InferenceServerException, *, model: str) -> MLMeshError:
    """The domain error for a failed Triton request about `model`."""
    message = (exc.message() or "").strip()
    code = _code(exc)
    if code is None:  # nothing was sent
        return InvalidArgument(f"Triton refused the request for {model!r}: {message}")
    # An unloaded model answers NOT_FOUND ("has no available versions"): for a caller that is a halt.
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
        return Unavailable(f"model {model!r} is not served by Triton: {message}")
    if code == grpc.StatusCode.INTERNAL:  # the model itself failed; Triton's text names no mlmesh internals
        return Unavailable(f"model {model!r} failed in Triton: {message}")
    return error_for_status(code, f"Triton ({model!r}): {message}")


def from_triton_load(exc: InferenceServerException, *, model: str) -> MLMeshError:
    """A failed load: the server being gone is Unavailable; anything else means the entry is unusable."""
    if _code(exc) == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"Triton is unreachable; model {model!r} not loaded: {exc.message()}")
    return FailedPrecondition(f"Triton could not load model {model!r}: {(exc.message() or '').strip()}")


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: np.dtype
    datatype: str  # Triton's wire name, e.g. FP32
    dims: tuple[int, ...]  # per row; -1 for any size


def _tensors(entries: list[dict]) -> list[_Tensor]:
    """Tensors from a model config as JSON (dims arrive as strings: int64 in proto JSON)."""
    out = []
    for e in entries:
        datatype = e["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES")  # config vs wire names
        dims = tuple(int(d) for d in e["dims"])
        out.append(_Tensor(e["name"], np.dtype(triton_to_np_dtype(datatype)), datatype, dims))
    return out


class TritonExecutor:
    """Runs `model_name` on the Triton at `url` (host:port, gRPC). Create and use it inside one event loop."""

    def __init__(
        self, url: str, model_name: str, *, request_timeout_s: float = 30.0, load_timeout_s: float = 120.0
    ) -> None:
        self.url, self.model_name = url, model_name
        self.request_timeout_s, self.load_timeout_s = request_timeout_s, load_timeout_s
        self._client: InferenceServerClient | None = None
        self._inputs: list[_Tensor] = []
        self._outputs: list[str] = []
        self.max_batch_size = 0
        self._halted = False

    def _connect(self) -> InferenceServerClient:
        if self._client is None:  # made lazily, so its channel belongs to the loop that uses it
            self._client = InferenceServerClient(self.url)
        return self._client

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except InferenceServerException as exc:
            raise from_triton(exc, model=self.model_name) from None

    async def load(self, *, reload: bool = False) -> None:
        """Load the model (Triton's explicit model control) and read its tensors from its config.

        A model Triton already serves is only attached to, since Triton's load of a loaded model
        restarts its instances; pass `reload=True` after rewriting its repository entry.
        """
        client = self._connect()
        try:
            if reload or not await client.is_model_ready(self.model_name, client_timeout=5.0):
                await client.load_model(self.model_name, client_timeout=self.load_timeout_s)
        except InferenceServerException as exc:
            raise from_triton_load(exc, model=self.model_name) from None
        config = (await self._call(client.get_model_config, self.model_name, as_json=True))["config"]
        self._inputs = _tensors(config.get("input", []))
        self._outputs = [o["name"] for o in config.get("output", [])]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        if self.max_batch_size < 1:
            raise FailedPrecondition(f"model {self.model_name!r} has no batch dimension (max_batch_size 0)")
        self._halted = False

    async def unload(self, *, wait_s: float = 10.0) -> None:
        """Unload from Triton and return once Triton no longer calls the model ready (a halt)."""
        self._halted = True
        client = self._connect()
        await self._call(client.unload_model, self.model_name, client_timeout=wait_s)
        deadline = time.monotonic() + wait_s
        while await self.ready():  # Triton unloads in the background; in-flight requests finish first
            if time.monotonic() > deadline:
                raise Unavailable(f"Triton still serves {self.model_name!r} {wait_s} s after the unload")
            await asyncio.sleep(0.02)

    async def suspend(self) -> None:
        """A session's halt (engine.SuspendableExecutor): Triton stops serving the model."""
        await self.unload()

    async def restore(self) -> None:
        """A session's resume: load the model again."""
        await self.load()

    async def ready(self) -> bool:
        client = self._connect()
        return bool(await self._call(client.is_model_ready, self.model_name, client_timeout=5.0))

    def _request(self, batch: dict[str, np.ndarray]) -> tuple[list[InferInput], int]:
        if not self._inputs:
            raise FailedPrecondition(f"model {self.model_name!r} is not loaded on this executor")
        unknown = sorted(set(batch) - {t.name for t in self._inputs})
        if unknown:
            raise InvalidArgument(f"model {self.model_name!r} has no input {unknown[0]!r}", field=unknown[0])
        rows: int | None = None
        inputs = []
        for spec in self._inputs:
            if spec.name not in batch:
                raise InvalidArgument("missing input", field=spec.name)
            array = np.asarray(batch[spec.name])
            if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                raise InvalidArgument(f"dtype {array.dtype} cannot become {spec.dtype}", field=spec.name)
            shape = array.shape
            fits = len(shape) == len(spec.dims) + 1 and all(d in (-1, s) for d, s in zip(spec.dims, shape[1:]))
            if not fits or shape[0] < 1:
                raise InvalidArgument(f"shape {shape} does not fit (batch, {spec.dims})", field=spec.name)
            if rows is not None and shape[0] != rows:
                raise InvalidArgument(f"batch length {shape[0]} differs from the other inputs' {rows}", field=spec.name)
            rows = shape[0]
            tensor = InferInput(spec.name, list(shape), spec.datatype)
            tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=spec.dtype))  # raw bytes, no copy if fit
            inputs.append(tensor)
        assert rows is not None
        if rows > self.max_batch_size:
            raise InvalidArgument(f"batch of {rows} exceeds the model's max_batch_size {self.max_batch_size}")
        return inputs, rows

    async def execute(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One Triton request for the whole batch; outputs have the batch's length along axis 0."""
        if self._halted:
            raise Unavailable(f"model {self.model_name!r} is halted")
        inputs, rows = self._request(batch)
        client = self._connect()
        result = await self._call(
            client.infer,
            self.model_name,
            inputs,
            outputs=[InferRequestedOutput(name) for name in self._outputs],
            client_timeout=self.request_timeout_s,
        )
        outputs = {name: result.as_numpy(name) for name in self._outputs}
        for name, array in outputs.items():
            if array is None or array.ndim == 0 or array.shape[0] != rows:
                got = None if array is None else array.shape
                raise FailedPrecondition(f"model {self.model_name!r} answered {name} {got} for {rows} rows")
        return outputs

    async def close(self, *, unload: bool = True) -> None:
        """Unload the model (best effort: a server that is gone serves nothing) and close the channel."""
        if self._client is None:
            return
        try:
            if unload and self._inputs and not self._halted:
                await self.unload()
        except Unavailable:
            pass
        finally:
            client, self._client = self._client, None
            await client.close()
