"""How a session batches: the domain form of the proto's BatchingConfig, with settings as defaults."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.errors import InvalidArgument
from services.core.settings import MLSettings

DEFAULT_MAX_QUEUE_SIZE = 1024
# Upper bounds a Deploy may ask for (the MCP gateway's too): a batch and a queue are memory held per session.
MAX_BATCH_SIZE = 65_536
MAX_QUEUE_SIZE = 1_000_000
MAX_QUEUE_DELAY_S = 10.0


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 32          # rows per batch (sequences per step for forecasters)
    max_queue_delay_s: float = 0.0    # extra wait for fill while the batch is below max; 0 takes what waits
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE  # waiting requests; over it a submit is refused at once
    iteration_level: bool = True      # forecasters: join and leave the running batch at step boundaries

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE:
            raise InvalidArgument(f"must be from 1 to {MAX_BATCH_SIZE}", field="batching.max_batch_size")
        if not 0 <= self.max_queue_delay_s <= MAX_QUEUE_DELAY_S:
            raise InvalidArgument(f"must be from 0 to {int(MAX_QUEUE_DELAY_S * 1e6)} µs",
                                  field="batching.max_queue_delay_us")
        if not 1 <= self.max_queue_size <= MAX_QUEUE_SIZE:
            raise InvalidArgument(f"must be from 1 to {MAX_QUEUE_SIZE}", field="batching.max_queue_size")

    @classmethod
    def resolve(
        cls,
        settings: MLSettings,
        *,
        max_batch_size: int = 0,
        max_queue_delay_us: int = 0,
        max_queue_size: int = 0,
        iteration_level: bool = True,
    ) -> BatchingConfig:
        """The proto's convention: 0 means the default (settings for batch size and delay)."""
        return cls(
            max_batch_size=max_batch_size or settings.ml_serving_max_batch_size,
            max_queue_delay_s=(max_queue_delay_us / 1e6) if max_queue_delay_us
            else settings.ml_serving_max_queue_delay_ms / 1e3,
            max_queue_size=max_queue_size or DEFAULT_MAX_QUEUE_SIZE,
            iteration_level=iteration_level,
        )
