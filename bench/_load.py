"""What bench/serving.py's sections share: the one closed-loop load client, child processes on free
loopback ports, and the table / verdict printing.

The load client runs in the bench process (its own core's worth of GIL), the servers in their own
processes, so client and server never serialize on one interpreter lock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 64)
console = Console(width=140, highlight=False)


@dataclass
class Cell:
    """One measurement: completions per second in the window, latency percentiles, failures, and the
    server's CPU time per answered request (user + system, its process tree) when its pid was given."""

    rps: float
    p50_ms: float
    p99_ms: float
    done: int
    errors: int = 0
    first_error: str = ""
    cpu_us: float = float("nan")
    client_cpu_us: float = float("nan")   # this process's (the load client's) CPU per answered request

    def row(self, cpu: bool = False) -> list[str]:
        flag = f" ({self.errors} errors)" if self.errors else ""
        cells = [f"{self.rps:,.0f}{flag}", f"{self.p50_ms:.2f}", f"{self.p99_ms:.2f}"]
        return [*cells, f"{self.cpu_us:,.0f}"] if cpu else cells


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and every live descendant (Triton's backend stubs), from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    tree, grown = {pid}, True
    while grown:
        grown = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grown = True
    return sum(stats[p][1] for p in tree if p in stats)


async def closed_loop(call: Callable[[int], Awaitable[object]], concurrency: int, seconds: float,
                      warmup_s: float = 0.5, server_pid: int | None = None) -> Cell:
    """`concurrency` workers each call back to back; only calls that start and end inside the measured
    window (after `warmup_s`) count, so start-up and tail effects are left out. With `server_pid`, the
    server's CPU time over the window is divided by the calls answered in it."""
    latencies: list[float] = []
    errors: list[str] = []
    begin = time.perf_counter()
    window = (begin + warmup_s, begin + warmup_s + seconds)
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while (start := time.perf_counter()) < window[1]:
            try:
                await call(next(counter))
            except Exception as exc:  # noqa: BLE001 - counted and reported with the cell
                errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                await asyncio.sleep(0.001)
                continue
            end = time.perf_counter()
            if start >= window[0] and end <= window[1]:
                latencies.append(end - start)

    async def cpu_meter() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        server, client = cpu_seconds(server_pid) if server_pid else 0.0, time.process_time()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        return ((cpu_seconds(server_pid) - server) if server_pid else float("nan"), time.process_time() - client)

    meter = asyncio.ensure_future(cpu_meter())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, client_cpu = await meter
    if not latencies:
        return Cell(0.0, 0.0, 0.0, 0, len(errors), errors[0] if errors else "")
    p50, p99 = np.percentile(np.asarray(latencies) * 1e3, [50, 99])
    return Cell(len(latencies) / seconds, float(p50), float(p99), len(latencies), len(errors),
                errors[0] if errors else "", cpu / len(latencies) * 1e6, client_cpu / len(latencies) * 1e6)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(list(args), cwd=cwd, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_until(check: Callable[[], Awaitable[bool]], process: subprocess.Popen, log: Path,
                     what: str, timeout_s: float = 90.0) -> None:
    """Polls `check` until it is true; a dead process or the deadline ends the bench with its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            raise SystemExit(f"{what} did not become ready; {log}:\n{tail}")
        await asyncio.sleep(0.2)


def python() -> str:
    return sys.executable


# ---- printing ----

def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    out = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        out.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        out.add_row(*row)
    console.print(out)


def verdict(label: str, met: bool | None, detail: str) -> bool | None:
    """One line per target; None is 'not measured'."""
    mark = {True: "[green]MET[/]", False: "[red]NOT MET[/]", None: "[yellow]NOT MEASURED[/]"}[met]
    console.print(f"  target {label}: {mark} - {detail}")
    return met


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def summary(targets: dict, began: float) -> None:
    """The closing lines of a bench: how many targets were met, each one's verdict, the machine's load."""
    met = sum(1 for v in targets.values() if v)
    console.print(f"\n[bold]{met} of {len(targets)} targets met[/] in {time.monotonic() - began:.0f} s; "
                  f"{machine_load()} at the end")
    for name, value in targets.items():
        console.print(f"  {'met' if value else 'not measured' if value is None else 'NOT met'}: {name}")
