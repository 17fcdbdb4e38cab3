"""How the serving verbs print: the sessions table (one per replica when there are several), one session,
and a typed call's answer with its batch figures."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from rich import box
from rich.console import Group
from rich.table import Table

from mlmesh.v1 import common_pb2, serving_pb2
from services.mesh import output as out

STATE_COLOUR = {"ready": "green", "halted": "red", "deploying": "yellow", "undeployed": "dim", "failed": "red"}


def enum_name(value: int, enum, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower() if value in enum.values() else str(value)


def state_name(s: serving_pb2.ServingSession) -> str:
    return enum_name(s.state, serving_pb2.SessionState, "SESSION_STATE_")


# (header, width the table needs before it is shown, value of a session); narrow terminals keep the figures.
SESSION_COLUMNS: list[tuple[str, int, Any]] = [
    ("session", 0, lambda s, st: out.escape(s.id)),
    ("model", 150, lambda s, st: out.escape(out.short(s.model, 24))),
    ("interface", 110, lambda s, st: enum_name(s.interface, common_pb2.InterfaceKind, "INTERFACE_KIND_")),
    ("state", 0, lambda s, st: f"[{STATE_COLOUR.get(state_name(s), 'white')}]{state_name(s)}[/]"),
    ("executor", 110, lambda s, st: enum_name(s.executor, serving_pb2.ExecutorKind, "EXECUTOR_KIND_")),
    ("queue", 0, lambda s, st: str(st.queue_depth)),
    ("batch", 0, lambda s, st: f"{st.batch_size_mean:.1f}"),
    ("req/s", 0, lambda s, st: f"{st.throughput_rps:.1f}"),
    ("p50/p99 ms", 0, lambda s, st: f"{st.latency_p50_ms:.2f}/{st.latency_p99_ms:.2f}"),
    ("rule trips", 0, lambda s, st: out.escape(", ".join(f"{k} {v}" for k, v in sorted(st.rule_trips.items()) if v)
                                               or "-")),
    ("breaker", 0, lambda s, st: enum_name(st.breaker_state, serving_pb2.BreakerState, "BREAKER_STATE_")
     .replace("unspecified", "-")),
]
NUMERIC = {"queue", "batch", "req/s", "p50/p99 ms"}


def sessions_table(sessions, width: int, title: str = "serving sessions") -> Table:
    columns = [c for c in SESSION_COLUMNS if width >= c[1]]
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, _, _ in columns:
        table.add_column(header, justify="right" if header in NUMERIC else "left",
                         no_wrap=header in NUMERIC or header in ("session", "state", "breaker"), overflow="fold")
    for s in sessions:
        table.add_row(*(value(s, s.stats) for _, _, value in columns))
    return table


def replica_tables(sessions, width: int, replicas: list[str]) -> Group:
    """One table per replica (named as it names itself), in topology order, a replica without sessions too."""
    names = [f"serving@{a}" for a in replicas]
    by_replica: dict[str, list] = {name: [] for name in names}
    for s in sessions:
        by_replica.setdefault(s.replica, []).append(s)
    return Group(*(sessions_table(group, width, f"serving sessions on {out.escape(name)}")
                   for name, group in by_replica.items()))


def print_session(s: serving_pb2.ServingSession, as_json: bool) -> None:
    if as_json:
        return out.print_json(s)
    b = s.batching
    batching = f"max {b.max_batch_size} rows, delay {b.max_queue_delay_us} µs, queue {b.max_queue_size}"
    if b.HasField("iteration_level"):
        batching += ", iteration-level" if b.iteration_level else ", request-level"
    rows = [("session", s.id), ("state", state_name(s)), ("model", s.model), ("artifact", s.artifact_id),
            ("interface", enum_name(s.interface, common_pb2.InterfaceKind, "INTERFACE_KIND_")),
            ("executor", enum_name(s.executor, serving_pb2.ExecutorKind, "EXECUTOR_KIND_")), ("batching", batching),
            ("rule pack", s.rule_pack), ("rule notes", "; ".join(s.rule_notes)), ("halt reason", s.halt_reason),
            ("replica", s.replica)]
    out.console().print(out.table(None, ["", ""], rows))


def print_answer(reply: Message, columns: list[str], rows: list[list[Any]], as_json: bool) -> None:
    if as_json:
        return out.print_json(reply)
    out.console().print(out.table(None, columns, rows))
    m = reply.meta
    out.console().print(f"[dim]session {out.escape(m.session_id)} · batch {m.batch_size} · queue {m.queue_ms:.2f} ms"
                        f" · compute {m.compute_ms:.2f} ms[/]")


def fmt_values(values) -> str:
    return ", ".join(f"{v:.6g}" for v in values)
