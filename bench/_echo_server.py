"""The baseline of bench/serving.py's overhead section: a bare grpc.aio server answering
/mlmesh.v1.Serving/Predict with the same payload mlmesh sends back, and nothing else: no interceptor,
no auth, no model, no scheduler. It parses the request (any server must) and returns a canned answer.

    python bench/_echo_server.py PORT ROWS OUTPUTS
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from mlmesh.v1 import serving_pb2


async def main(port: int, rows: int, outputs: int) -> None:
    answer = serving_pb2.PredictResponse(
        predictions=[serving_pb2.Prediction(values=[0.123456] * outputs) for _ in range(rows)],
        meta=serving_pb2.ResponseMeta(session_id="bench-mlp", artifact_id="sha256:" + "0" * 64, batch_size=1,
                                      queue_ms=0.01, compute_ms=0.02))

    async def predict(request: serving_pb2.PredictRequest, context) -> serving_pb2.PredictResponse:
        return answer

    handler = grpc.method_handlers_generic_handler("mlmesh.v1.Serving", {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict, request_deserializer=serving_pb2.PredictRequest.FromString,
            response_serializer=serving_pb2.PredictResponse.SerializeToString),
    })
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:4])))
