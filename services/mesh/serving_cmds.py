"""Serving verbs: `serve`, `sessions` (live with --watch), the typed calls (`predict`, `forecast`, `classify`,
`analyze`, `segment`) and the kill switch (`halt`, `resume`, `halt-all`, `undeploy`).

Every verb is one Serving RPC (WatchSessions: a stream) through MeshClient, so errors print as one red line
with the usual exit codes; a halted session's UNAVAILABLE keeps its message ("... halted: <reason>").
Arguments are parsed inside the call, so a bad number is the same one-line error (exit 2).

With several serving replicas (`replicas: N`), `sessions` lists (and watches) every replica's sessions, a
table per replica, and `halt`, `resume` and `undeploy` act on the session wherever a replica holds it (the same
id may live on each, as when deploys go through Envoy); a replica that does not answer is named and the
command exits 1. The typed calls go to one replica, as a client would.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import nullcontext
from collections.abc import Callable
from typing import Annotated, Any

import typer
from google.protobuf.message import Message
from pydantic import ValidationError
from rich.live import Live

from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc
from services.core.errors import InvalidArgument, MLMeshError, NotFound
from services.mesh import output as out
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.registry_cmds import JsonOpt
from services.mesh.serving_output import fmt_values, print_answer, print_session, replica_tables, sessions_table

DEPLOY_TIMEOUT_S = 300.0  # a deploy fetches, verifies and may load the model into Triton
INTERFACES = {n: common_pb2.InterfaceKind.Value(f"INTERFACE_KIND_{n.upper()}")
              for n in ("predictor", "forecaster", "classifier", "segmenter", "analyzer")}
EXECUTORS = {"auto": serving_pb2.EXECUTOR_KIND_UNSPECIFIED, "triton": serving_pb2.EXECUTOR_KIND_TRITON,
             "in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS}

SessionArg = Annotated[str, typer.Argument(help="The session id (see `mlmesh sessions`).")]
FeaturesOpt = Annotated[str, typer.Option("--features", help="One row of numbers in the model's order: 1,2,3.")]
RowOpt = Annotated[list[str], typer.Option("--row", help="Another row of numbers (repeat).")]
NamedOpt = Annotated[list[str], typer.Option("--named", help="NAME=VALUE of one row by feature name (repeat).")]
TextOpt = Annotated[list[str], typer.Option("--text", help="A text (repeat for more).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; shown to every refused caller.")]
CancelRunningOpt = Annotated[bool, typer.Option(
    "--cancel-running", help="Also fail the batch the model is running now (UNAVAILABLE) instead of letting it "
                             "finish and answering it: for an emergency, when nothing more may be answered.")]


# ---- parsing ----

def numbers(text: str, field: str) -> list[float]:
    values = []
    for part in text.replace(",", " ").split():
        try:
            values.append(float(part))
        except ValueError:
            raise InvalidArgument(f"{part!r} is not a number", field=field) from None
    if not values:
        raise InvalidArgument("give at least one number", field=field)
    return values


def feature_rows(features: str, rows: list[str], named: list[str]) -> list[serving_pb2.FeatureRow]:
    """--features and each --row are rows of values; all --named pairs (also comma-separated) form one row."""
    out_rows = [serving_pb2.FeatureRow(values=numbers(features, "features"))] if features else []
    out_rows += [serving_pb2.FeatureRow(values=numbers(r, f"row[{i}]")) for i, r in enumerate(rows)]
    pairs = [p for item in named for p in item.split(",") if p.strip()]
    if pairs:
        row = serving_pb2.FeatureRow()
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise InvalidArgument(f"{pair!r} is not NAME=VALUE", field="named")
            row.named[name.strip()] = numbers(value, f"named.{name.strip()}")[0]
        out_rows.append(row)
    if not out_rows:
        raise InvalidArgument("give --features, --row or --named", field="features")
    return out_rows


def _call(method: str, build: Callable[[], Message], timeout: float = CALL_TIMEOUT_S) -> Any:
    """Build the request (parse errors: exit 2) and make the call, both under out.run's error handling."""
    async def call() -> Any:
        request = build()
        async with MeshClient().channel("serving") as channel:
            return await getattr(serving_pb2_grpc.ServingStub(channel), method)(request, timeout=timeout)
    return out.run(call())


# ---- several replicas ----

async def _on_replicas(method: str, request: Message, timeout: float = CALL_TIMEOUT_S
                       ) -> list[tuple[str, Any]]:
    """`method` on every serving replica at once: (replica address, its reply or its domain error)."""
    client = MeshClient()

    async def one(address: str) -> tuple[str, Any]:
        try:
            async with client.channel("serving", address) as channel:
                return address, await getattr(serving_pb2_grpc.ServingStub(channel), method)(request, timeout=timeout)
        except MLMeshError as exc:
            return address, exc

    return list(await asyncio.gather(*(one(a) for a in client.replica_addresses("serving"))))


def _report_unreachable(failed: list[tuple[str, MLMeshError]]) -> None:
    for address, exc in failed:
        out.err_console().print(f"[bold red]error:[/] replica serving@{out.escape(address)}: {out.escape(str(exc))}",
                                soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _several_replicas() -> bool:
    try:
        return len(MeshClient().replica_addresses("serving")) > 1
    except MLMeshError as exc:   # a bad topology file: the usual one red line
        out.fail_with(exc)
    except ValidationError as exc:
        out.fail_settings(exc)


# ---- verbs ----

def serve(
    artifact: Annotated[str, typer.Argument(help="sha256:<hex>, name@alias, name, compiled:sha256:<hex> or "
                                                  "builtin:changepoint.")],
    interface: Annotated[str, typer.Option(help="predictor, forecaster, classifier, segmenter or analyzer "
                                                "(default: the model's own).")] = "",
    executor: Annotated[str, typer.Option(help="auto, triton or in_process.")] = "auto",
    max_batch_size: Annotated[int, typer.Option(min=0, help="Rows per batch (0 = the service's default).")] = 0,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="Extra wait for a fuller batch, µs.")] = 0,
    rule_pack: Annotated[str, typer.Option(help="A pack under configs/rules/ (default ood_default).")] = "",
    session_id: Annotated[str, typer.Option(help="A stable id (default: generated).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Deploy a model as a serving session behind its typed interface (and KServe v2)."""

    def build() -> serving_pb2.DeployRequest:
        if interface and interface not in INTERFACES:
            raise InvalidArgument(f"unknown interface {interface!r}; known: {', '.join(INTERFACES)}", field="interface")
        if executor not in EXECUTORS:
            raise InvalidArgument(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}", field="executor")
        return serving_pb2.DeployRequest(
            model=artifact, interface=INTERFACES.get(interface, 0), executor=EXECUTORS[executor],
            batching=serving_pb2.BatchingConfig(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us),
            rule_pack=rule_pack, session_id=session_id)

    print_session(_call("Deploy", build, DEPLOY_TIMEOUT_S), as_json)


def sessions(
    watch: Annotated[bool, typer.Option("--watch", help="Keep the table live (WatchSessions); Ctrl-C stops.")]
    = False,
    interval: Annotated[float, typer.Option(min=0.1, help="With --watch: seconds between refreshes.")] = 1.0,
    count: Annotated[int, typer.Option(min=0, help="With --watch: stop after this many updates (0: never).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Serving sessions with their live figures (every replica's); --json with --watch prints one JSON line per
    update."""
    if _several_replicas():
        return _sessions_of_replicas(watch, interval, count, as_json)
    if not watch:
        reply = _call("ListSessions", serving_pb2.ListSessionsRequest)
        console = out.console()
        return out.print_json(reply) if as_json else console.print(sessions_table(reply.sessions, console.width))

    async def follow() -> None:
        async with MeshClient().channel("serving") as channel:
            stream = serving_pb2_grpc.ServingStub(channel).WatchSessions(
                serving_pb2.WatchSessionsRequest(interval_s=interval))
            console = out.console()
            live_table = nullcontext() if as_json else Live(console=console, auto_refresh=False)
            with live_table as live:
                seen = 0
                async for update in stream:
                    if as_json:
                        typer.echo(json.dumps(out.to_dict(update), default=str))
                    else:
                        live.update(sessions_table(update.sessions, console.width), refresh=True)
                    seen += 1
                    if count and seen >= count:
                        stream.cancel()
                        return

    try:
        out.run(follow())
    except KeyboardInterrupt:  # Ctrl-C ends watching, not the session's figures: a normal exit
        pass


def _sessions_of_replicas(watch: bool, interval: float, count: int, as_json: bool) -> None:
    console = out.console()
    if not watch:
        results = out.run(_on_replicas("ListSessions", serving_pb2.ListSessionsRequest()))
        merged = serving_pb2.ListSessionsResponse(
            sessions=[s for _, reply in results if not isinstance(reply, MLMeshError) for s in reply.sessions])
        out.print_json(merged) if as_json else console.print(
            replica_tables(merged.sessions, console.width, [a for a, _ in results]))
        return _report_unreachable([(a, r) for a, r in results if isinstance(r, MLMeshError)])

    async def follow() -> None:   # one stream per replica; the table is redrawn from the latest of each
        client, latest = MeshClient(), {}
        updates: asyncio.Queue = asyncio.Queue()

        async def watch_one(address: str) -> None:
            async with client.channel("serving", address) as channel:
                async for update in serving_pb2_grpc.ServingStub(channel).WatchSessions(
                        serving_pb2.WatchSessionsRequest(interval_s=interval)):
                    await updates.put((address, update))

        addresses = client.replica_addresses("serving")
        streams = [asyncio.ensure_future(watch_one(a)) for a in addresses]
        failed = asyncio.ensure_future(asyncio.wait(streams, return_when=asyncio.FIRST_EXCEPTION))
        live_table = nullcontext() if as_json else Live(console=console, auto_refresh=False)
        try:
            with live_table as live:
                seen = 0
                while not count or seen < count:
                    got = asyncio.ensure_future(updates.get())
                    await asyncio.wait([got, failed], return_when=asyncio.FIRST_COMPLETED)
                    if not got.done():   # a replica's stream failed (say which), or every stream ended
                        got.cancel()
                        for stream in streams:
                            if stream.done() and stream.exception() is not None:
                                raise stream.exception()
                        return
                    address, update = got.result()
                    latest[address] = update
                    merged = serving_pb2.ListSessionsResponse(
                        sessions=[s for u in latest.values() for s in u.sessions])
                    if as_json:
                        typer.echo(json.dumps(out.to_dict(merged), default=str))
                    else:
                        live.update(replica_tables(merged.sessions, console.width, addresses), refresh=True)
                    seen += 1
        finally:
            for task in (*streams, failed):
                task.cancel()

    try:
        out.run(follow())
    except KeyboardInterrupt:
        pass


def _on_session(method: str, request: Message, as_json: bool) -> None:
    """A session verb: on the one replica, or on every replica that holds the session."""
    if not _several_replicas():
        return print_session(_call(method, lambda: request), as_json)
    results = out.run(_on_replicas(method, request))
    found = [reply for _, reply in results if not isinstance(reply, MLMeshError)]
    failed = [(a, r) for a, r in results if isinstance(r, MLMeshError) and not isinstance(r, NotFound)]
    if not found and not failed:
        out.fail_with(next(r for _, r in results))   # no replica holds it: the usual NOT_FOUND line
    if as_json:
        out.print_json([out.to_dict(s) for s in found])
    else:
        for session in found:
            print_session(session, False)
    _report_unreachable(failed)


def predict(session: SessionArg, features: FeaturesOpt = "", row: RowOpt = [], named: NamedOpt = [],
            as_json: JsonOpt = False) -> None:
    """Predict values for feature rows."""
    reply = _call("Predict", lambda: serving_pb2.PredictRequest(session_id=session,
                                                                 rows=feature_rows(features, row, named)))
    print_answer(reply, ["row", "values"], [[i, fmt_values(p.values)] for i, p in enumerate(reply.predictions)],
                 as_json)


def classify(session: SessionArg, features: FeaturesOpt = "", row: RowOpt = [], named: NamedOpt = [],
             text: TextOpt = [], as_json: JsonOpt = False) -> None:
    """Classify feature rows, or texts (text classifiers)."""

    def build() -> serving_pb2.ClassifyRequest:
        if text:
            return serving_pb2.ClassifyRequest(session_id=session, texts=text)
        return serving_pb2.ClassifyRequest(session_id=session, rows=feature_rows(features, row, named))

    reply = _call("Classify", build)
    rows = [[i, c.label, f"{c.probability:.4f}", ", ".join(f"{s.label} {s.probability:.3f}" for s in c.scores)]
            for i, c in enumerate(reply.classifications)]
    print_answer(reply, ["row", "label", "probability", "scores"], rows, as_json)


def analyze(session: SessionArg, text: TextOpt = [], as_json: JsonOpt = False) -> None:
    """Analyze texts (e.g. sentiment)."""

    def build() -> serving_pb2.AnalyzeRequest:
        if not text:
            raise InvalidArgument("give at least one --text", field="texts")
        return serving_pb2.AnalyzeRequest(session_id=session, texts=text)

    reply = _call("Analyze", build)
    rows = [[t, a.label, f"{a.score:.4f}"] for t, a in zip(text, reply.analyses)]
    print_answer(reply, ["text", "label", "score"], rows, as_json)


def forecast(session: SessionArg,
             history: Annotated[str, typer.Option(help="Past values, oldest first: 1,2,3,...")],
             horizon: Annotated[int, typer.Option(help="How many steps ahead.")] = 1,
             as_json: JsonOpt = False) -> None:
    """Forecast the next HORIZON values of a series."""
    reply = _call("Forecast", lambda: serving_pb2.ForecastRequest(
        session_id=session, history=numbers(history, "history"), horizon=horizon))
    print_answer(reply, ["step", "value"], [[i + 1, f"{v:.6g}"] for i, v in enumerate(reply.forecast)], as_json)


def segment(session: SessionArg, series: Annotated[str, typer.Option(help="The series: 1,2,3,...")],
            as_json: JsonOpt = False) -> None:
    """Find the change points of a series."""
    reply = _call("Segment", lambda: serving_pb2.SegmentRequest(session_id=session, series=numbers(series, "series")))
    rows = [[f"{s.start}-{s.end}", f"{s.mean:.4g}", f"{s.stddev:.4g}"] for s in reply.segments]
    if not as_json:
        out.console().print(f"change points: {', '.join(map(str, reply.change_points)) or 'none'}")
    print_answer(reply, ["segment", "mean", "stddev"], rows, as_json)


def halt(session: SessionArg, reason: ReasonOpt = "", cancel_running: CancelRunningOpt = False,
         as_json: JsonOpt = False) -> None:
    """Kill switch for one session (on every replica that holds it): queued calls fail UNAVAILABLE at once, new
    ones are refused."""
    _on_session("HaltSession", serving_pb2.HaltSessionRequest(session_id=session, reason=reason,
                                                              cancel_running=cancel_running), as_json)


def resume(session: SessionArg, as_json: JsonOpt = False) -> None:
    """Serve a halted session again (on every replica that holds it)."""
    _on_session("ResumeSession", serving_pb2.ResumeSessionRequest(session_id=session), as_json)


def undeploy(session: SessionArg, as_json: JsonOpt = False) -> None:
    """Stop a session for good and free its model (on every replica that holds it)."""
    _on_session("UndeploySession", serving_pb2.UndeploySessionRequest(session_id=session), as_json)


def halt_all(reason: ReasonOpt = "", cancel_running: CancelRunningOpt = False, as_json: JsonOpt = False) -> None:
    """Kill switch for every session of the serving service; exits 1 when any session did not confirm."""
    reply = _call("HaltAll", lambda: serving_pb2.HaltAllRequest(reason=reason, cancel_running=cancel_running))
    if as_json:
        out.print_json(reply)
    else:
        rows = [[r.session_id or ("(no sessions)" if r.halted else "(replica)"), r.replica,
                 "yes" if r.halted else "no", r.error] for r in reply.results]
        out.console().print(out.table("halt-all", ["session", "replica", "halted", "error"], rows))
        sessions = sum(1 for r in reply.results if r.session_id)
        out.console().print(f"{reply.halted} of {sessions} sessions halted on "
                            f"{len({r.replica for r in reply.results})} replicas")
    if any(not r.halted or r.error for r in reply.results):   # a session or a whole replica did not confirm
        raise typer.Exit(1)
