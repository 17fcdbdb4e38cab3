"""The compile lane: one worker thread that runs every export, compile and validation of a service.

torch.export / dynamo keep process-wide state and are not thread-safe, and a compile already uses
every core, so compiles run one at a time, in order, off the event loop. A thread cannot be stopped
part-way: when the awaiting task is cancelled, the lane lets the step finish (so the caller's cleanup
never races a writer in its folder) and then re-raises the cancel.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class CompileLane:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlmesh-compile")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                try:
                    await asyncio.shield(future)
                except asyncio.CancelledError:
                    continue  # cancelled again while waiting: still wait for the thread
                except Exception:
                    break
            raise

    def close(self) -> None:
        """Queued steps are dropped; a running one finishes in its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
