"""Durable long-running operations: the store, the runner (progress, cancel) and the Operations servicer."""

from services.core.operations.runner import OperationRunner, ProgressReporter, Work
from services.core.operations.servicer import OperationsServicer
from services.core.operations.store import Operation, OperationStore

__all__ = ["Operation", "OperationRunner", "OperationStore", "OperationsServicer", "ProgressReporter", "Work"]
