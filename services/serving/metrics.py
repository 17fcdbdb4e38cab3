"""Serving's engine figures as Prometheus series, read from the sessions at scrape time.

The engine already counts everything (EngineStats, the rule set's trips, the breaker, the session's
halts and answered totals), so the request path pays nothing for metrics beyond the interceptor's RPC
series: the collector copies each live session's snapshot on the event loop (LoopReader) and turns it
into series labelled by session. The batch-size histogram is built from the engine's per-size counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.core.observability.metrics import LoopReader
from services.serving.rules.breaker import CLOSED, HALF_OPEN, OPEN
from services.serving.sessions.manager import SessionManager
from services.serving.sessions.snapshot import SessionSnapshot, SessionState

log = logging.getLogger("mlmesh.serving.metrics")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)


@dataclass(frozen=True)
class SessionFigures:
    snapshot: SessionSnapshot
    halts: int
    answered: int
    queue_s: float
    compute_s: float


def read_figures(manager: SessionManager) -> list[SessionFigures]:
    """Every session's figures now; runs on the event loop."""
    return [SessionFigures(s.snapshot(), s.halts, s.totals.success, s.totals.queue_s, s.totals.compute_s)
            for s in manager.list()]


def batch_buckets(counts: dict[int, int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets (le, count) and the sum of rows, from {batch size: batches of that size}."""
    buckets, below = [], 0
    for bound in BATCH_BUCKETS:
        below = sum(n for size, n in counts.items() if size <= bound)
        buckets.append((str(bound), below))
    buckets.append(("+Inf", sum(counts.values())))
    return buckets, float(sum(size * n for size, n in counts.items()))


class SessionCollector(Collector):
    def __init__(self, manager: SessionManager, reader: LoopReader) -> None:
        self._manager = manager
        self._read = reader

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self._read(lambda: read_figures(self._manager))
        except Exception as exc:  # noqa: BLE001 - a busy or closing loop costs these series one scrape, not all
            log.warning("serving metrics not read this scrape: %s", type(exc).__name__)
            return
        yield from _families([f for f in figures if f.snapshot.state is not SessionState.UNDEPLOYED],
                             [f.snapshot.state for f in figures])


def _families(live: list[SessionFigures], states: list[SessionState]) -> Iterator[Metric]:
    sessions = GaugeMetricFamily("mlmesh_serving_sessions", "Sessions by state.", labels=["state"])
    for state in SessionState:
        sessions.add_metric([state.value], sum(1 for s in states if s is state))
    yield sessions

    by_session = ["session"]
    info = GaugeMetricFamily("mlmesh_serving_session_info", "Always 1 per live session: its interface, executor, "
                             "rule pack and state.",
                             labels=[*by_session, "interface", "executor", "rule_pack", "state"])
    queue = GaugeMetricFamily("mlmesh_serving_queue_depth", "Requests waiting for a batch.", labels=by_session)
    running = GaugeMetricFamily("mlmesh_serving_running_requests", "Requests in the batch on the executor.",
                                labels=by_session)
    arrived = CounterMetricFamily("mlmesh_serving_requests", "Requests that reached the session's engine or "
                                  "rules, whatever their end.", labels=by_session)
    outcomes = CounterMetricFamily("mlmesh_serving_request_outcomes", "How requests ended: answered, failed "
                                   "(queued, then deadline / executor error / halt), refused (never queued: "
                                   "halted, breaker, rules, full queue), cancelled (the caller left).",
                                   labels=[*by_session, "outcome"])
    batches = HistogramMetricFamily("mlmesh_serving_batch_size", "Rows per batch the executor ran (sequences per "
                                    "step for forecasters).", labels=by_session)
    busy = GaugeMetricFamily("mlmesh_serving_executor_busy_ratio", "Share of the last window the executor spent "
                             "running batches (0-1).", labels=by_session)
    queue_s = CounterMetricFamily("mlmesh_serving_queue_seconds", "Summed time answered requests waited in the "
                                  "queue.", labels=by_session)
    compute_s = CounterMetricFamily("mlmesh_serving_compute_seconds", "Summed executor time of the batches "
                                    "answered requests ran in.", labels=by_session)
    trips = CounterMetricFamily("mlmesh_serving_rule_trips", "Requests a rule refused, by rule (the breaker's "
                                "refusals count as CircuitBreaker trips).", labels=[*by_session, "rule"])
    breaker = GaugeMetricFamily("mlmesh_serving_breaker_state", "1 for the circuit breaker's current state "
                                "(closed, open, half_open), 0 for the others.", labels=[*by_session, "state"])
    halts = CounterMetricFamily("mlmesh_serving_halts", "Times the session was halted (kill switch).",
                                labels=by_session)

    for f in live:
        snap, stats = f.snapshot, f.snapshot.stats
        sid = [snap.id]
        info.add_metric([snap.id, snap.interface, snap.executor, snap.rule_pack, snap.state.value], 1)
        queue.add_metric(sid, stats.queue_depth)
        running.add_metric(sid, stats.running)
        arrived.add_metric(sid, stats.requests_total)
        for outcome, value in (("answered", f.answered), ("failed", stats.requests_failed),
                               ("refused", stats.requests_refused), ("cancelled", stats.requests_cancelled)):
            outcomes.add_metric([snap.id, outcome], value)
        buckets, rows = batch_buckets(stats.batch_size_counts)
        batches.add_metric(sid, buckets, rows)
        busy.add_metric(sid, stats.busy_ratio)
        queue_s.add_metric(sid, f.queue_s)
        compute_s.add_metric(sid, f.compute_s)
        for rule, count in sorted(stats.rule_trips.items()):
            trips.add_metric([snap.id, rule], count)
        if stats.breaker_state is not None:
            for state in BREAKER_STATES:
                breaker.add_metric([snap.id, state], 1.0 if stats.breaker_state == state else 0.0)
        halts.add_metric(sid, f.halts)
    yield from (info, queue, running, arrived, outcomes, batches, busy, queue_s, compute_s, trips, breaker, halts)
