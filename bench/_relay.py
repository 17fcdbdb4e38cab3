"""The floor of bench/gateway.py: the least any Python HTTP gateway in front of serving does per call.

uvicorn (the gateway's server, same settings) answers each POST by parsing the JSON-RPC body, making the
same Serving.Predict over one grpc.aio channel and returning the predictions as a tools/call result. No
token check, no MCP SDK, no argument validation, no audit: what is left is one HTTP hop and one gRPC hop.

    python bench/_relay.py PORT SERVING_ADDRESS SERVING_TOKEN
"""

from __future__ import annotations

import json
import sys

import grpc
import uvicorn

from mlmesh.v1 import serving_pb2, serving_pb2_grpc


def build(serving: str, token: str):
    metadata = (("authorization", f"Bearer {token}"),)
    state: dict = {}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    state["stub"] = serving_pb2_grpc.ServingStub(grpc.aio.insecure_channel(serving))
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = json.loads(body)
        arguments = call["params"]["arguments"]
        reply = await state["stub"].Predict(serving_pb2.PredictRequest(
            session_id=arguments["session_id"], rows=[serving_pb2.FeatureRow(values=r) for r in arguments["rows"]]),
            metadata=metadata)
        result = {"predictions": [list(p.values) for p in reply.predictions]}
        out = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": {
            "content": [{"type": "text", "text": json.dumps(result)}], "structuredContent": result}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    return app


if __name__ == "__main__":
    port, serving, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(build(serving, token), host="127.0.0.1", port=port, lifespan="on", access_log=False,
                log_level="warning")
