"""The scheduler: owns the waiting requests (a priority queue) and the running set, and decides each step.

Waiting requests sit in a heap keyed by (-priority, arrival): higher priority first, FIFO within one.
A request that is cancelled or expires while waiting is only marked (a tombstone) and skipped when it
reaches the head, so removing one costs O(1); the heap is compacted when tombstones pile up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator

from services.core.errors import ResourceExhausted
from services.serving.engine.request import DISCARDED, RUNNING, WAITING, Request

# Rebuild the heap without tombstones once they outnumber live entries by this much.
_COMPACT_SLACK = 64


class Scheduler:
    __slots__ = ("max_queue_size", "waiting", "waiting_rows", "running", "running_rows", "_heap", "_arrivals",
                 "_expired")

    def __init__(self, max_queue_size: int, expired: Callable[[Request], None]) -> None:
        self.max_queue_size = max_queue_size
        self._expired = expired   # fails a request whose deadline passed while it waited
        self.waiting = 0          # live waiting requests (tombstones excluded)
        self.waiting_rows = 0
        self.running: list[Request] = []
        self.running_rows = 0
        self._heap: list[tuple[int, int, Request]] = []
        self._arrivals = itertools.count()

    def add(self, request: Request) -> None:
        """Queues `request`, or refuses it at once when the queue is full."""
        if self.waiting >= self.max_queue_size:
            raise ResourceExhausted(f"queue full ({self.max_queue_size} requests waiting)")
        heapq.heappush(self._heap, (-request.priority, next(self._arrivals), request))
        self.waiting += 1
        self.waiting_rows += request.rows
        if len(self._heap) > 2 * self.waiting + _COMPACT_SLACK:
            self._heap = [entry for entry in self._heap if entry[2].state == WAITING]
            heapq.heapify(self._heap)

    def discard(self, request: Request) -> bool:
        """Takes a waiting request out of the queue (cancelled, expired); False when it was not waiting."""
        if request.state != WAITING:
            return False
        request.state = DISCARDED  # a tombstone: skipped when it reaches the head
        self.waiting -= 1
        self.waiting_rows -= request.rows
        return True

    def take(self, capacity_rows: int, now: float) -> list[Request]:
        """Moves the highest-priority waiting requests that fit `capacity_rows` to the running set.

        Requests whose caller went away are dropped; ones whose deadline passed fail with
        DeadlineExceeded: neither reaches the model. Order is strict: a request that does not fit
        stops the take rather than letting a lower-priority one overtake it.
        """
        heap, taken, rows = self._heap, [], 0
        while heap:
            request = heap[0][2]
            if request.state != WAITING or request.future.done():
                heapq.heappop(heap)
                self.discard(request)
                continue
            if request.deadline is not None and request.deadline <= now:
                heapq.heappop(heap)
                self.discard(request)
                self._expired(request)   # answered now, not left to its timer (which may fire much later)
                continue
            if rows + request.rows > capacity_rows:
                break
            heapq.heappop(heap)
            self.waiting -= 1
            self.waiting_rows -= request.rows
            request.state = RUNNING
            taken.append(request)
            rows += request.rows
        self.running.extend(taken)
        self.running_rows += rows
        return taken

    def drain_waiting(self) -> Iterator[Request]:
        """Empties the queue, yielding every live waiting request (halt, undeploy)."""
        heap, self._heap = self._heap, []
        self.waiting = self.waiting_rows = 0
        for _, _, request in heap:
            if request.state == WAITING:
                request.state = DISCARDED
                yield request

    def set_running(self, running: list[Request]) -> None:
        self.running = running
        self.running_rows = sum(r.rows for r in running)
