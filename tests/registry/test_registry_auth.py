"""Tokens on the registry: audience-bound, scoped; health and reflection stay open."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mlmesh.v1 import registry_pb2, registry_pb2_grpc
from services.core.auth.policy import REGISTRY_READ


async def test_no_token_is_unauthenticated(channel):
    stub = registry_pb2_grpc.RegistryStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSkills(registry_pb2.ListSkillsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_token_for_another_service_is_unauthenticated(channel, issuer):
    stub = registry_pb2_grpc.RegistryStub(channel)
    token = issuer.mint("op", "serving", [REGISTRY_READ])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSkills(registry_pb2.ListSkillsRequest(), metadata=(("authorization", f"Bearer {token}"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_read_scope_cannot_publish(channel, issuer):
    stub = registry_pb2_grpc.RegistryStub(channel)
    metadata = (("authorization", f"Bearer {issuer.mint('reader', 'registry', [REGISTRY_READ])}"),)
    assert list((await stub.ListSkills(registry_pb2.ListSkillsRequest(), metadata=metadata)).skills) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml="name: x"), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "skills.publish" in caught.value.details()


async def test_health_and_reflection_need_no_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "mlmesh.v1.Registry", "mlmesh.v1.Operations"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for response in reflection.ServerReflectionInfo(iter([request])):
        names |= {s.name for s in response.list_services_response.service}
    assert {"mlmesh.v1.Registry", "mlmesh.v1.Operations", "grpc.health.v1.Health"} <= names
