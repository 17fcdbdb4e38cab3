"""Durable operations: the store, the runner (progress, cancel, failures) and the Operations service."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from mlmesh.v1 import common_pb2, operations_pb2, operations_pb2_grpc
from services.core.errors import FailedPrecondition, InvalidArgument, MLMeshError, NotFound, Unavailable
from services.core.operations import OperationRunner, OperationsServicer, OperationStore

S = operations_pb2
PENDING, RUNNING = S.OPERATION_STATE_PENDING, S.OPERATION_STATE_RUNNING
SUCCEEDED, FAILED, CANCELLED = S.OPERATION_STATE_SUCCEEDED, S.OPERATION_STATE_FAILED, S.OPERATION_STATE_CANCELLED


@pytest.fixture
def store(engine):
    return OperationStore(engine, "puller")


@pytest.fixture
async def runner(store):
    runner = OperationRunner(store, cancel_poll_s=0.05, progress_interval_s=0.1)
    yield runner
    await runner.aclose()


# The store


async def test_create_and_get(store):
    op = await store.create("pull", {"repo": "org/model", "files": ["a", "b"], "n": 2}, "alice")
    assert op.state == PENDING and op.service == "puller" and op.created_by == "alice"
    got = await store.get(op.id)
    assert got == op
    assert dict(got.request) == {"repo": "org/model", "files": ["a", "b"], "n": 2.0}
    assert got.created_at.seconds > 0 and not got.HasField("finished_at") and not got.HasField("result")


async def test_bad_ids_and_requests(store):
    with pytest.raises(InvalidArgument) as empty:
        await store.get("")
    with pytest.raises(NotFound) as unknown:
        await store.get("00000000-0000-0000-0000-000000000000")
    assert empty.value.field == unknown.value.field == "id"
    with pytest.raises(InvalidArgument) as kind:
        await store.create("", {})
    with pytest.raises(InvalidArgument) as request:
        await store.create("pull", {"x": object()})
    assert (kind.value.field, request.value.field) == ("kind", "request")


async def test_lifecycle_to_success_and_terminal_states_stay(store):
    op = await store.create("compile", {})
    assert (await store.set_running(op.id)).state == RUNNING
    await store.update_progress(op.id, 5, 10, "files", "export", "halfway")
    progress = (await store.get(op.id)).progress
    assert (progress.done, progress.total, progress.unit, progress.stage, progress.message) == (
        5, 10, "files", "export", "halfway",
    )  # fmt: skip
    result = common_pb2.ArtifactFile(path="model.onnx", sha256="ab" * 32, size=42)
    done = await store.succeed(op.id, result)
    assert done.state == SUCCEEDED and done.HasField("finished_at")
    unpacked = common_pb2.ArtifactFile()
    assert done.result.Unpack(unpacked) and unpacked == result
    # Nothing moves a finished operation again.
    assert (await store.fail(op.id, "INTERNAL", "late")).state == SUCCEEDED
    assert (await store.request_cancel(op.id)) == done
    await store.update_progress(op.id, 99)
    assert (await store.get(op.id)) == done


async def test_fail_records_the_error(store):
    op = await store.create("pull", {})
    failed = await store.fail(op.id, "INVALID_ARGUMENT", "no such revision", "revision")
    assert failed.state == FAILED
    assert (failed.error.code, failed.error.message, failed.error.field) == (
        "INVALID_ARGUMENT", "no such revision", "revision",
    )  # fmt: skip


async def test_cancel_pending_at_once_running_by_flag(store):
    pending = await store.create("pull", {})
    cancelled = await store.request_cancel(pending.id)
    assert cancelled.state == CANCELLED and cancelled.cancel_requested and cancelled.error.code == "CANCELLED"
    running = await store.create("pull", {})
    await store.set_running(running.id)
    assert not await store.is_cancel_requested(running.id)
    flagged = await store.request_cancel(running.id)
    assert flagged.state == RUNNING and flagged.cancel_requested and await store.is_cancel_requested(running.id)
    assert (await store.mark_cancelled(running.id)).state == CANCELLED
    with pytest.raises(NotFound):
        await store.request_cancel("nope")


async def test_recover_interrupted_touches_only_own_unfinished(engine, store):
    other = OperationStore(engine, "compiler")
    pending, running, done = [await store.create("pull", {}) for _ in range(3)]
    await store.set_running(running.id)
    await store.succeed(done.id)
    foreign = await other.create("compile", {})
    assert await store.recover_interrupted() == 2
    for op_id in (pending.id, running.id):
        op = await store.get(op_id)
        assert op.state == FAILED and (op.error.code, op.error.message) == ("ABORTED", "interrupted by a restart")
    assert (await store.get(done.id)).state == SUCCEEDED
    assert (await store.get(foreign.id)).state == PENDING
    assert await store.recover_interrupted() == 0


async def test_list_pages_filters_and_tokens(store):
    made = [await store.create("pull" if i % 3 else "compile", {"i": i}) for i in range(8)]
    seen, token = [], ""
    while True:
        page, token = await store.list(page_size=3, page_token=token)
        assert len(page) <= 3
        seen += [op.id for op in page]
        if not token:
            break
    assert seen == [op.id for op in reversed(made)]  # newest first, each once
    pulls, _ = await store.list(kind="pull")
    assert len(pulls) == 5 and {op.kind for op in pulls} == {"pull"}
    await store.set_running(made[0].id)
    assert [op.id for op in (await store.list(state=RUNNING))[0]] == [made[0].id]
    assert [op.id for op in (await store.list(state="RUNNING"))[0]] == [made[0].id]
    _, pull_token = await store.list(kind="pull", page_size=2)
    for bad in ("garbage!", "eyJ2IjoxfQ", pull_token[:-3]):
        with pytest.raises(InvalidArgument) as caught:
            await store.list(kind="pull", page_token=bad)
        assert caught.value.field == "page_token"
    with pytest.raises(InvalidArgument, match="different filters"):
        await store.list(kind="compile", page_token=pull_token)
    with pytest.raises(InvalidArgument) as negative:
        await store.list(page_size=-1)
    with pytest.raises(InvalidArgument) as state:
        await store.list(state=42)
    assert (negative.value.field, state.value.field) == ("page_size", "state")


# The runner


async def test_runner_returns_pending_then_succeeds_with_last_progress(store, runner):
    gate = asyncio.Event()
    result = common_pb2.ArtifactFile(path="w.safetensors", size=7)
    writes = []
    real_update = store.update_progress

    async def counting_update(*args, **kwargs):
        writes.append(args)
        await real_update(*args, **kwargs)

    store.update_progress = counting_update

    async def work(reporter):
        await gate.wait()
        for done in range(1, 501):
            await reporter.progress(done, 500, "bytes", "download")
        return result

    op = await runner.start("pull", {"repo": "x"}, work, "bob")
    assert op.state == PENDING
    gate.set()
    final = await runner.join(op.id)
    assert final.state == SUCCEEDED and final.progress.done == 500 and final.progress.total == 500
    unpacked = common_pb2.ArtifactFile()
    assert final.result.Unpack(unpacked) and unpacked == result
    assert 2 <= len(writes) < 60, "progress writes are throttled to ~10/s"
    assert writes[-1][1] == 500
    assert runner.active == []


@pytest.mark.parametrize(
    ("error", "code", "message", "field"),
    [
        (InvalidArgument("bad revision", field="revision"), "INVALID_ARGUMENT", "bad revision", "revision"),
        (FailedPrecondition("not signed"), "FAILED_PRECONDITION", "not signed", ""),
        (RuntimeError("secret internal detail /etc/x"), "INTERNAL", "internal error", ""),
    ],
)
async def test_runner_failures(runner, caplog, error, code, message, field):
    async def work(reporter):
        raise error

    with caplog.at_level(logging.ERROR, logger="services.core.operations.runner"):
        op = await runner.join((await runner.start("pull", {}, work)).id)
    assert op.state == FAILED and (op.error.code, op.error.message, op.error.field) == (code, message, field)
    if not isinstance(error, MLMeshError):
        assert "secret internal detail" in caplog.text  # logged in full, never returned


async def test_runner_rejects_a_non_message_result(runner):
    async def work(reporter):
        return {"not": "a message"}

    op = await runner.join((await runner.start("pull", {}, work)).id)
    assert op.state == FAILED and op.error.code == "INTERNAL"


@pytest.mark.parametrize("from_other_process", [False, True])
async def test_cancel_stops_running_work(engine, store, runner, from_other_process):
    started, seen = asyncio.Event(), {}

    async def work(reporter):
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            seen["flag"] = reporter.cancelled

    op = await runner.start("pull", {}, work)
    await started.wait()
    # Another process's store sends no in-process notification: the runner must poll.
    canceller = OperationStore(engine, "gateway") if from_other_process else store
    assert (await canceller.request_cancel(op.id)).state == RUNNING
    final = await asyncio.wait_for(runner.join(op.id), 5)
    assert final.state == CANCELLED and final.cancel_requested and seen["flag"] is True


async def test_check_cancel_raises_in_cooperative_work(store, runner):
    async def work(reporter):
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # work that swallows task cancels still stops at check_cancel
            await reporter.check_cancel()

    op = await runner.start("compile", {}, work)
    await asyncio.sleep(0.05)
    await store.request_cancel(op.id)
    assert (await asyncio.wait_for(runner.join(op.id), 5)).state == CANCELLED


async def test_aclose_interrupts_running_work_and_refuses_new(store):
    runner = OperationRunner(store)
    started = asyncio.Event()

    async def work(reporter):
        started.set()
        await asyncio.sleep(60)

    op = await runner.start("pull", {}, work)
    await started.wait()
    not_yet_started = await runner.start("pull", {}, work)
    await runner.aclose()
    for op_id in (op.id, not_yet_started.id):
        final = await store.get(op_id)
        assert final.state == FAILED and (final.error.code, final.error.message) == (
            "ABORTED", "interrupted by a shutdown",
        )  # fmt: skip
    with pytest.raises(Unavailable):
        await runner.start("pull", {}, work)


# The Operations service, in-process on 127.0.0.1:0 with real stubs


class _MapErrors(grpc.aio.ServerInterceptor):
    """Test-local stand-in for the mesh interceptor: domain errors -> status codes."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or not (handler.unary_unary or handler.unary_stream):
            return handler
        codec = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    return await inner(request, context)
                except MLMeshError as exc:
                    await context.abort(exc.code, str(exc))

            return grpc.unary_unary_rpc_method_handler(unary, **codec)
        inner_stream = handler.unary_stream

        async def stream(request, context):
            try:
                async for item in inner_stream(request, context):
                    yield item
            except MLMeshError as exc:
                await context.abort(exc.code, str(exc))

        return grpc.unary_stream_rpc_method_handler(stream, **codec)


@pytest.fixture
async def stub(store):
    server = grpc.aio.server(interceptors=[_MapErrors()])
    operations_pb2_grpc.add_OperationsServicer_to_server(OperationsServicer(store, poll_interval_s=0.05), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield operations_pb2_grpc.OperationsStub(channel)
    await server.stop(None)


async def test_get_list_cancel_over_grpc(store, stub):
    op = await store.create("pull", {"repo": "r"})
    assert await stub.GetOperation(S.GetOperationRequest(id=op.id)) == op
    for request, code in ((S.GetOperationRequest(id=""), grpc.StatusCode.INVALID_ARGUMENT),
                          (S.GetOperationRequest(id="missing"), grpc.StatusCode.NOT_FOUND)):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetOperation(request)
        assert caught.value.code() == code
    await store.create("compile", {})
    listed = await stub.ListOperations(S.ListOperationsRequest(kind="pull", page_size=1))
    assert [o.id for o in listed.operations] == [op.id] and listed.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await stub.ListOperations(S.ListOperationsRequest(page_token="x"))
    assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    cancelled = await stub.CancelOperation(S.CancelOperationRequest(id=op.id))
    assert cancelled.state == CANCELLED


@pytest.mark.parametrize("from_other_process", [False, True])
async def test_watch_streams_each_change_until_terminal(engine, store, stub, from_other_process):
    writer = OperationStore(engine, "puller") if from_other_process else store
    op = await writer.create("pull", {})
    stream = stub.WatchOperation(S.WatchOperationRequest(id=op.id))
    first = await stream.read()
    assert first.state == PENDING
    await writer.set_running(op.id)
    assert (await stream.read()).state == RUNNING
    await writer.update_progress(op.id, 3, 4, "files")
    assert (await stream.read()).progress.done == 3
    await writer.succeed(op.id)
    assert (await stream.read()).state == SUCCEEDED
    assert await stream.read() == grpc.aio.EOF


async def test_watch_ends_when_the_client_goes_away(store, stub):
    op = await store.create("pull", {})
    call = stub.WatchOperation(S.WatchOperationRequest(id=op.id))
    await call.read()
    assert store.subscriber_count(op.id) == 1
    call.cancel()
    for _ in range(100):
        if store.subscriber_count(op.id) == 0:
            break
        await asyncio.sleep(0.02)
    assert store.subscriber_count(op.id) == 0


async def test_watch_unknown_operation_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WatchOperation(S.WatchOperationRequest(id="missing")).read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
