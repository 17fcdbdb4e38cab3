"""Live figures of one engine: counters, throughput and busy ratio over a sliding window, latency
percentiles over a bounded ring of recent requests, and the histogram of batch sizes formed.

Recording is a few list and dict writes per batch; snapshots do the arithmetic (numpy percentiles).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EngineStatsSnapshot:
    queue_depth: int = 0
    running: int = 0
    requests_total: int = 0       # every request that arrived: answered, failed, cancelled or refused
    requests_failed: int = 0      # queued, then failed (deadline, executor error, halt)
    requests_refused: int = 0     # answered without being queued (halted, breaker, rules, full queue)
    requests_cancelled: int = 0   # the caller went away
    throughput_rps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    batch_size_mean: float = 0.0
    batch_size_counts: dict[int, int] = field(default_factory=dict)
    busy_ratio: float = 0.0       # share of the window the executor spent running batches


class EngineStats:
    def __init__(self, *, window_s: float = 5.0, latency_samples: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.requests_total = 0
        self.requests_failed = 0
        self.requests_refused = 0
        self.requests_cancelled = 0
        self.batch_size_counts: dict[int, int] = {}
        self._clock = clock
        self._latency = [0.0] * latency_samples
        self._latency_written = 0
        self._recent: deque[tuple[float, int, float]] = deque()  # (end time, completed, busy seconds)

    def record_batch(self, rows: int, busy_s: float, now: float, latencies_s: list[float] | None = None) -> None:
        """One batch (or forecast step) ran for `busy_s`; `latencies_s` of the requests it completed."""
        counts = self.batch_size_counts
        counts[rows] = counts.get(rows, 0) + 1
        completed = 0
        if latencies_s:
            # A plain list ring: cheaper than numpy for the one or few values a batch brings.
            ring, size, at = self._latency, len(self._latency), self._latency_written
            for value in latencies_s:
                ring[at % size] = value
                at += 1
            completed = at - self._latency_written
            self._latency_written = at
        recent = self._recent
        recent.append((now, completed, busy_s))
        if recent[0][0] < now - self.window_s:
            horizon = now - self.window_s
            while recent and recent[0][0] < horizon:
                recent.popleft()

    def snapshot(self, queue_depth: int, running: int) -> EngineStatsSnapshot:
        # Rates over the whole window (a moving average), so figures change only when batches complete or
        # leave the window: an idle session's snapshot is stable and watchers are not woken for nothing.
        now = self._clock()
        span = self.window_s
        horizon = now - self.window_s
        completed = busy = 0.0
        for end, n, b in self._recent:
            if end >= horizon:
                completed += n
                busy += b
        filled = np.asarray(self._latency[: min(self._latency_written, len(self._latency))])
        p50, p99 = (np.percentile(filled, [50, 99]) * 1e3) if len(filled) else (0.0, 0.0)
        batches = sum(self.batch_size_counts.values())
        mean = sum(k * v for k, v in self.batch_size_counts.items()) / batches if batches else 0.0
        return EngineStatsSnapshot(
            queue_depth=queue_depth, running=running, requests_total=self.requests_total,
            requests_failed=self.requests_failed, requests_refused=self.requests_refused,
            requests_cancelled=self.requests_cancelled, throughput_rps=round(completed / span, 3),
            latency_p50_ms=round(float(p50), 4), latency_p99_ms=round(float(p99), 4),
            batch_size_mean=round(mean, 3), batch_size_counts=dict(self.batch_size_counts),
            busy_ratio=round(min(busy / span, 1.0), 4),
        )
