"""Publishing hash-locked skills over gRPC: versions, locks, references, refusals that write nothing."""

import grpc
import pytest
import sqlalchemy as sa
import yaml

from mlmesh.v1 import registry_pb2
from services.core.db.schema import ml_skill_versions
from tests.registry.conftest import SEED_MODELS, SKILLS_DIR, manifest


async def register_seed_models(stub) -> dict[str, str]:
    ids = {}
    for name in SEED_MODELS:
        request = registry_pb2.RegisterArtifactRequest(manifest=manifest(name), name=name, aliases=["prod"])
        ids[name] = (await stub.RegisterArtifact(request)).id
    return ids


def seed_yaml(name: str) -> str:
    return (SKILLS_DIR / f"{name}.yaml").read_text()


def reorder(value):
    """The same content with every mapping's keys reversed."""
    if isinstance(value, dict):
        return {key: reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(item) for item in value]
    return value


async def test_both_seed_skills_publish_and_lock_their_models(stub):
    ids = await register_seed_models(stub)
    for skill in ("regime_aware_alpha", "multi_horizon_forecast"):
        published = await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml(skill)))
        version = published.version
        assert published.created and version.name == skill and version.number == 1
        assert len(version.version) == 64
        assert version.lock, "every model reference is locked"
        for ref, locked in version.lock.items():
            assert locked == ids[ref.split("@")[0]]
    regime = await stub.GetSkill(registry_pb2.GetSkillRequest(ref="regime_aware_alpha"))
    assert set(regime.lock) == {"regime_classifier@prod", "alpha_bull@prod", "alpha_bear@prod", "alpha_sideways@prod"}


async def test_same_content_same_version_and_nothing_changes(stub):
    await register_seed_models(stub)
    text = seed_yaml("regime_aware_alpha")
    first = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text))).version
    shuffled = yaml.safe_dump(reorder(yaml.safe_load(text)), sort_keys=False, default_flow_style=True)
    assert shuffled != text
    again = await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=shuffled))
    assert not again.created and again.version.version == first.version and again.version.number == 1
    assert again.version.spec_yaml == text, "the published version keeps the YAML it was published with"
    versions = await stub.ListSkillVersions(registry_pb2.ListSkillVersionsRequest(name="regime_aware_alpha"))
    assert len(versions.versions) == 1


async def test_changed_content_is_a_new_version_and_refs_select_it(stub):
    await register_seed_models(stub)
    spec = yaml.safe_load(seed_yaml("regime_aware_alpha"))
    v1 = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=yaml.safe_dump(spec)))).version
    spec["description"] = spec.get("description", "") + " (tuned)"
    v2 = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=yaml.safe_dump(spec)))).version
    assert v2.version != v1.version and v2.number == 2
    get = stub.GetSkill
    assert (await get(registry_pb2.GetSkillRequest(ref="regime_aware_alpha"))).version == v2.version
    assert (await get(registry_pb2.GetSkillRequest(ref="regime_aware_alpha@latest"))).version == v2.version
    assert (await get(registry_pb2.GetSkillRequest(ref="regime_aware_alpha@1"))).version == v1.version
    assert (await get(registry_pb2.GetSkillRequest(ref=f"regime_aware_alpha@{v1.version[:10]}"))).version == v1.version
    assert (await get(registry_pb2.GetSkillRequest(ref=f"regime_aware_alpha@{v1.version}"))).version == v1.version
    skills = await stub.ListSkills(registry_pb2.ListSkillsRequest())
    assert [(s.name, s.version_count, s.latest_version) for s in skills.skills] == [
        ("regime_aware_alpha", 2, v2.version)
    ]


async def test_the_lock_does_not_follow_a_moved_alias(stub):
    ids = await register_seed_models(stub)
    published = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))).version
    newer = await stub.RegisterArtifact(
        registry_pb2.RegisterArtifactRequest(manifest=manifest("bull-v2"), name="alpha_bull", aliases=["prod"])
    )
    assert newer.id != ids["alpha_bull"]
    got = await stub.GetSkill(registry_pb2.GetSkillRequest(ref=f"regime_aware_alpha@{published.version}"))
    assert got.lock["alpha_bull@prod"] == ids["alpha_bull"]


async def test_unresolvable_model_reference_is_not_found_and_writes_nothing(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "regime_classifier@prod" in caught.value.details() or "@prod" in caught.value.details()
    assert list((await stub.ListSkills(registry_pb2.ListSkillsRequest())).skills) == []


@pytest.mark.parametrize(
    "text,field",
    [
        ("name: [unclosed", "spec_yaml"),
        ("- just\n- a list\n", "spec_yaml"),
        ("name: x\nsteps: []\nsurprise: 1\n", "surprise"),
    ],
)
async def test_bad_specs_are_invalid_argument_naming_the_field(stub, text, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()
    assert list((await stub.ListSkills(registry_pb2.ListSkillsRequest())).skills) == []


async def test_unknown_interface_names_the_step(stub):
    spec = yaml.safe_load(seed_yaml("regime_aware_alpha"))
    spec["steps"][0]["interface"] = "oracle"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=yaml.safe_dump(spec)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("steps[0].interface")


async def test_oversized_spec_is_refused(stub):
    text = seed_yaml("regime_aware_alpha") + "\n# " + "x" * 70_000 + "\n"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_expected_version_mismatch_is_refused(stub):
    await register_seed_models(stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(
            registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha"), expected_version="0" * 64)
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("expected_version:")
    assert list((await stub.ListSkills(registry_pb2.ListSkillsRequest())).skills) == []


async def test_different_content_under_an_existing_version_id_is_refused(stub, registry):
    await register_seed_models(stub)
    text = seed_yaml("regime_aware_alpha")
    published = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text))).version
    # Someone tampers with the stored row behind the registry's back.
    async with registry.engine.begin() as conn:
        await conn.execute(
            sa.update(ml_skill_versions).where(ml_skill_versions.c.version == published.version).values(spec_json="{}")
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    "ref,code",
    [
        ("nosuch", grpc.StatusCode.NOT_FOUND),
        ("regime_aware_alpha@9", grpc.StatusCode.NOT_FOUND),
        ("regime_aware_alpha@deadbeefdeadbeef", grpc.StatusCode.NOT_FOUND),
        ("Bad Name", grpc.StatusCode.INVALID_ARGUMENT),
        ("regime_aware_alpha@v-one", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_unknown_and_malformed_skill_refs(stub, ref, code):
    await register_seed_models(stub)
    await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSkill(registry_pb2.GetSkillRequest(ref=ref))
    assert caught.value.code() == code


async def test_run_skill_of_an_unknown_skill_is_not_found(stub):
    # Runs themselves are covered in test_skill_runtime.py (with a real serving).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunSkill(registry_pb2.RunSkillRequest(ref="regime_aware_alpha"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_concurrent_publishes_of_one_skill_all_land_with_distinct_numbers(stub):
    import asyncio

    await register_seed_models(stub)
    spec = yaml.safe_load(seed_yaml("regime_aware_alpha"))
    texts = []
    for index in range(12):
        spec["description"] = f"revision {index}"
        texts.append(yaml.safe_dump(spec))
    published = await asyncio.gather(
        *(stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=text)) for text in texts + texts[:4])
    )
    versions = {p.version.version: p.version.number for p in published}
    assert len(versions) == 12 and sorted(versions.values()) == list(range(1, 13))
    listed = await stub.ListSkills(registry_pb2.ListSkillsRequest())
    assert listed.skills[0].version_count == 12
