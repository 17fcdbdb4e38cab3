"""One request inside the engine, and what it gets back. Slotted: these are made once per call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

WAITING, RUNNING, DONE = 0, 1, 2
DISCARDED = -1   # out of the queue (a tombstone in its heap) and not yet answered: expired, cancelled, drained


class Request:
    """Inputs of one caller: arrays whose first dimension is `rows`, answered through `future`."""

    __slots__ = ("inputs", "rows", "steps", "priority", "deadline", "future", "enqueued", "state", "timer",
                 "started", "batch_size", "out", "step", "span_context")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int, steps: int, priority: int,
                 deadline: float | None, future: asyncio.Future, enqueued: float) -> None:
        self.inputs = inputs
        self.rows = rows
        self.steps = steps            # autoregressive steps wanted (forecast horizon); 1 otherwise
        self.priority = priority
        self.deadline = deadline      # monotonic seconds, or None
        self.future = future
        self.enqueued = enqueued
        self.state = WAITING
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0            # when it reached the executor
        self.batch_size = 0           # rows of the (first) batch it ran in
        self.out: Any = None          # sequence loops: the values produced so far
        self.step = 0
        self.span_context = None      # the caller's span, when traces are recorded: batch spans link it


@dataclass(slots=True)
class Completion:
    """A request's own output rows, and how it was served."""

    outputs: dict[str, np.ndarray]
    batch_size: int
    queue_s: float
    compute_s: float
