"""Sessions: one deployed model each (state machine, kill switch), and the SessionManager."""

from services.serving.sessions.manager import ExecutorFactory, SessionManager, in_process_executor, session_entity
from services.serving.sessions.session import Session
from services.serving.sessions.snapshot import (
    Answer,
    HaltResult,
    InferTotals,
    ResponseMeta,
    SessionSnapshot,
    SessionState,
    SessionStats,
)

__all__ = [
    "Answer", "ExecutorFactory", "HaltResult", "InferTotals", "ResponseMeta", "Session", "SessionManager",
    "SessionSnapshot", "SessionState", "SessionStats", "in_process_executor", "session_entity",
]
