"""The continuous-batching engine: a Scheduler (waiting + running), Executors (run batches off the loop),
and loops that do schedule -> execute -> update: EngineLoop (request-level) and SequenceLoop
(autoregressive forecasters, iteration-level or request-level)."""

from services.serving.engine.adapters import RenamedExecutor
from services.serving.engine.config import BatchingConfig
from services.serving.engine.driver import LoopDriver
from services.serving.engine.executor import (
    Batch,
    BatchFunction,
    Executor,
    InProcessExecutor,
    SuspendableExecutor,
    default_torch_threads,
)
from services.serving.engine.loop import EngineLoop
from services.serving.engine.request import Completion
from services.serving.engine.scheduler import Scheduler
from services.serving.engine.sequences import SequenceLoop
from services.serving.engine.stats import EngineStats, EngineStatsSnapshot

__all__ = [
    "Batch", "BatchFunction", "BatchingConfig", "Completion", "EngineLoop", "EngineStats", "EngineStatsSnapshot",
    "Executor", "InProcessExecutor", "LoopDriver", "RenamedExecutor", "Scheduler", "SequenceLoop", "SuspendableExecutor",
    "default_torch_threads",
]
