"""How a session batches: the domain form of the proto's BatchingConfig, with settings as defaults."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.errors import InvalidArgument
from services.core.settings import MLSettings

DEFAULT_MAX_QUEUE_SIZE = 1024


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 32          # rows per batch (sequences per step for forecasters)
    max_queue_delay_s: float = 0.0    # extra wait for fill while the batch is below max; 0 takes what waits
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE  # waiting requests; over it a submit is refused at once
    iteration_level: bool = True      # forecasters: join and leave the running batch at step boundaries

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InvalidArgument("must be at least 1", field="batching.max_batch_size")
        if self.max_queue_delay_s < 0:
            raise InvalidArgument("must not be negative", field="batching.max_queue_delay_us")
        if self.max_queue_size < 1:
            raise InvalidArgument("must be at least 1", field="batching.max_queue_size")

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
