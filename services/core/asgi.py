"""uvicorn for mlmesh's HTTP processes (the MCP gateway, the console): stop like the gRPC services do.

On SIGINT/SIGTERM uvicorn drains, then re-raises the signal so the process dies of it (exit -15), which a
supervisor cannot tell from a crash. `DrainingServer` drains the same way and then returns normally: exit 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class DrainingServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn (pinned in requirements.lock) re-raises what it captured once this block ends.
                self._captured_signals.clear()
