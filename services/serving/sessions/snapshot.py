"""What a session looks like from outside: its state, configuration and live figures, as plain values
the servicer turns into ServingSession / SessionStats."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum

from services.serving.engine.config import BatchingConfig
from services.serving.engine.stats import EngineStatsSnapshot


class SessionState(str, Enum):
    DEPLOYING = "deploying"
    READY = "ready"
    HALTED = "halted"
    UNDEPLOYED = "undeployed"   # terminal; the executor is freed


@dataclass(frozen=True)
class SessionStats(EngineStatsSnapshot):
    rule_trips: dict[str, int] = field(default_factory=dict)   # rule name -> trips
    breaker_state: str | None = None                          # "closed" / "open" / "half_open"; None without one

    @classmethod
    def of(cls, engine: EngineStatsSnapshot, rule_trips: dict[str, int], breaker_state: str | None) -> SessionStats:
        return cls(**{f.name: getattr(engine, f.name) for f in fields(engine)},
                   rule_trips=dict(rule_trips), breaker_state=breaker_state)


@dataclass(frozen=True)
class SessionSnapshot:
    id: str
    model: str                  # the reference as deployed
    artifact_id: str
    interface: str
    state: SessionState
    executor: str               # "in_process", "triton", ...
    batching: BatchingConfig
    rule_pack: str
    halt_reason: str
    stats: SessionStats
    created_at: datetime
    updated_at: datetime
    rule_notes: tuple[str, ...] = ()   # what the rules cannot check for this model (RuleSet.notes)


@dataclass(slots=True)
class InferTotals:
    """Answered requests and their summed queue and compute time since the deploy (mutable, per session)."""

    success: int = 0
    queue_s: float = 0.0
    compute_s: float = 0.0
    last_ms: int = 0            # wall-clock milliseconds of the last answer; 0 before the first


@dataclass(frozen=True)
class ResponseMeta:
    session_id: str
    artifact_id: str
    batch_size: int             # rows of the batch this request ran in
    queue_ms: float
    compute_ms: float


@dataclass(frozen=True)
class Answer:
    result: object              # the interface's plain result (list[Prediction], Forecast, ...)
    meta: ResponseMeta


@dataclass(frozen=True)
class HaltResult:
    session_id: str
    halted: bool
    error: str = ""             # why the halt was not (fully) confirmed
