"""tools/list: sixteen data.ml.* tools with input and output schemas, all four annotations and a scope;
the same list over streamable HTTP and over stdio; data_ml_* spellings when asked, both callable."""

from __future__ import annotations

from mcp import Client

from tests.mcp_gateway.conftest import mcp_http, running

TOOLS = ["data.ml.predict", "data.ml.forecast", "data.ml.classify", "data.ml.segment", "data.ml.analyze",
         "data.ml.pull", "data.ml.compile", "data.ml.list_models", "data.ml.list_skills", "data.ml.run_skill",
         "data.ml.serve", "data.ml.list_serving", "data.ml.halt_serving", "data.ml.halt_all",
         "data.ml.operation_status", "data.ml.lineage"]
READ_ONLY = {"data.ml.predict", "data.ml.forecast", "data.ml.classify", "data.ml.segment", "data.ml.analyze",
             "data.ml.list_models", "data.ml.list_skills", "data.ml.list_serving", "data.ml.operation_status",
             "data.ml.lineage"}
DESTRUCTIVE = {"data.ml.halt_serving", "data.ml.halt_all"}


def _dump(tools) -> list[dict]:
    return [t.model_dump(by_alias=True, exclude_none=True) for t in tools]


async def test_every_tool_is_described(http_app, agent_token):
    async with mcp_http(http_app, agent_token()) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == TOOLS
    for tool in tools:
        assert tool.description and tool.title
        assert tool.input_schema["type"] == "object" and tool.input_schema["additionalProperties"] is False
        assert tool.output_schema and tool.output_schema["type"] == "object" and tool.output_schema["required"]
        a = tool.annotations
        assert None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint), tool.name
        assert a.read_only_hint == (tool.name in READ_ONLY), tool.name
        assert a.destructive_hint == (tool.name in DESTRUCTIVE), tool.name
        assert a.open_world_hint == (tool.name == "data.ml.pull"), tool.name
        assert tool.meta["mlmesh/scope"] in tool.description
    by_name = {t.name: t for t in tools}
    assert by_name["data.ml.run_skill"].annotations.idempotent_hint is False
    assert set(by_name["data.ml.predict"].input_schema["required"]) == {"session_id", "rows"}
    assert by_name["data.ml.halt_all"].input_schema["required"] == ["reason"]
    for name in ("data.ml.halt_serving", "data.ml.halt_all"):   # optional, off unless asked, explained
        cancel = by_name[name].input_schema["properties"]["cancel_running"]
        assert (cancel["type"], cancel["default"]) == ("boolean", False) and "emergency" in cancel["description"]


async def test_http_and_stdio_list_the_same_tools(http_app, agent_token, stdio_params):
    async with mcp_http(http_app, agent_token()) as client:
        over_http = _dump((await client.list_tools()).tools)
    async with Client(stdio_params(agent_token())) as client:
        over_stdio = _dump((await client.list_tools()).tools)
    assert over_http == over_stdio and len(over_http) == len(TOOLS)


async def test_underscore_names_are_listed_on_request_and_always_callable(make_gateway, agent_token, registry):
    plain, compat = make_gateway(), make_gateway(underscore_names=True)
    async with running(plain) as app:
        async with mcp_http(app, agent_token()) as client:
            assert all("." in t.name for t in (await client.list_tools()).tools)
            dotted = await client.call_tool("data.ml.list_models", {})
            underscored = await client.call_tool("data_ml_list_models", {})
            assert not dotted.is_error and not underscored.is_error
            assert dotted.structured_content == underscored.structured_content
    async with running(compat) as app:
        async with mcp_http(app, agent_token()) as client:
            names = [t.name for t in (await client.list_tools()).tools]
    assert names[:2] == ["data.ml.predict", "data_ml_predict"] and len(names) == 2 * len(TOOLS)
    assert {n for n in names if "_" in n.split(".")[0]} == {t.replace(".", "_") for t in TOOLS}
    await plain.close()
    await compat.close()
