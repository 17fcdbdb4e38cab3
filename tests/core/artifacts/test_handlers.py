"""MLOpsHandler: policy first, lineage after success only."""

from __future__ import annotations

import pytest

from services.core.artifacts.handlers import MLOpsHandler
from services.core.auth.policy import COMPILER_COMPILE, PULLER_PULL
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.errors import InvalidArgument, NotFound, PermissionDenied

from .conftest import principal


class Demo(MLOpsHandler):
    def __init__(self, bus) -> None:
        super().__init__(bus, service="puller")
        self.work = 0

    async def run(self, fail: bool = False, record: bool = True):
        async with self.lifecycle("pull", PULLER_PULL) as op:
            self.work += 1
            if fail:
                raise NotFound("no such repo")
            if record:
                op.record(inputs=["source:hf://org/m"], outputs=["artifact:sha256:" + "a" * 64],
                          parameters={"revision": "abc"})
        return op


async def test_event_after_success_with_actor_and_typed_refs(bus, recorder):
    token = set_principal(Principal(subject="mcp-gateway", scopes=frozenset({PULLER_PULL}), audience="puller",
                                    token_id="t", expires_at=2e9, on_behalf_of="agent-7"))
    try:
        op = await Demo(bus).run()
    finally:
        reset_principal(token)
    [event] = recorder.events
    assert op.event is event
    assert (event.operation, event.actor, event.service) == ("pull", "mcp-gateway", "puller")
    assert event.inputs == ("source:hf://org/m",) and event.outputs == ("artifact:sha256:" + "a" * 64,)
    assert event.parameters == {"revision": "abc", "on_behalf_of": "agent-7"}


async def test_no_event_when_the_operation_fails(bus, recorder):
    with pytest.raises(NotFound):
        await Demo(bus).run(fail=True)
    assert recorder.events == []


async def test_policy_runs_before_any_work(bus, recorder):
    demo = Demo(bus)
    token = set_principal(principal({COMPILER_COMPILE}))
    try:
        with pytest.raises(PermissionDenied):
            await demo.run()
    finally:
        reset_principal(token)
    assert demo.work == 0 and recorder.events == []


async def test_an_operation_must_record_what_it_touched(bus):
    with pytest.raises(InvalidArgument):
        await Demo(bus).run(record=False)
