"""Artifacts over gRPC: content ids, aliases, listing, and the bad inputs that must write nothing."""

import grpc
import pytest

from mlmesh.v1 import common_pb2, registry_pb2
from services.core.artifacts.manifest import parse_manifest
from services.core.artifacts.messages import manifest_dict
from services.core.db.schema import ml_compiled_artifacts
from tests.registry.conftest import manifest


async def test_artifact_id_is_the_hash_of_the_canonical_manifest(stub):
    message = manifest("a")
    artifact = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=message, name="model-a"))
    assert artifact.id == parse_manifest(manifest_dict(message)).artifact_id
    assert artifact.id.startswith("sha256:") and len(artifact.id) == 71
    assert artifact.total_size == sum(f.size for f in message.files)
    assert list(artifact.aliases) == ["model-a@latest"]
    assert artifact.created_by == "test-operator"


async def test_file_order_and_number_types_do_not_change_the_id(stub):
    message = manifest("b", files=3)
    reordered = common_pb2.Manifest()
    reordered.CopyFrom(message)
    del reordered.files[:]
    reordered.files.extend(reversed(message.files))
    first = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=message))
    second = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=reordered))
    assert first.id == second.id
    # A client computing the id from plain ints gets what the server computed from Struct doubles.
    local = parse_manifest({**manifest_dict(message), "metadata": {"seed": "b", "layers": [4, 8, 1]}})
    assert local.artifact_id == first.id


async def test_get_by_id_name_and_alias(stub):
    v1 = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("v1"), name="m", aliases=["prod"]))
    v2 = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("v2"), name="m"))
    assert (await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref=v1.id))).id == v1.id
    assert (await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="m"))).id == v2.id  # latest moved
    assert (await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="m@latest"))).id == v2.id
    assert (await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="m@prod"))).id == v1.id  # prod stayed
    moved = await stub.SetAlias(registry_pb2.SetAliasRequest(name="m", alias="prod", artifact_id=v2.id))
    assert sorted(moved.aliases) == ["m@latest", "m@prod"]
    assert (await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="m@prod"))).id == v2.id


async def test_registering_the_same_content_again_is_idempotent(stub):
    first = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("x"), name="x"))
    again = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("x"), name="x"))
    assert again.id == first.id and again.created_at == first.created_at
    listed = await stub.ListArtifacts(registry_pb2.ListArtifactsRequest())
    assert [a.id for a in listed.artifacts] == [first.id]


async def test_list_filters_and_pages(stub):
    ids = []
    for index in range(5):
        request = registry_pb2.RegisterArtifactRequest(
            manifest=manifest(f"p{index}"), name="paged" if index < 4 else "other", labels={"team": "a" if index % 2 else "b"}
        )
        ids.append((await stub.RegisterArtifact(request)).id)
    seen, token = [], ""
    while True:
        page = await stub.ListArtifacts(registry_pb2.ListArtifactsRequest(name="paged", page_size=3, page_token=token))
        seen += [a.id for a in page.artifacts]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids[:4]) and len(seen) == 4
    labelled = await stub.ListArtifacts(registry_pb2.ListArtifactsRequest(labels={"team": "a"}))
    assert sorted(a.id for a in labelled.artifacts) == sorted([ids[1], ids[3]])
    models = await stub.ListArtifacts(registry_pb2.ListArtifactsRequest(framework="onnx"))
    assert list(models.artifacts) == []


def _bad_manifests():
    good = manifest("bad")
    cases = {}
    m = common_pb2.Manifest(); m.CopyFrom(good); m.files[0].sha256 = "XYZ"
    cases["manifest.files[0].sha256"] = m
    m = common_pb2.Manifest(); m.CopyFrom(good); m.files[1].path = "../escape"
    cases["manifest.files[1].path"] = m
    m = common_pb2.Manifest(); m.CopyFrom(good); m.files[1].path = m.files[0].path
    cases["manifest"] = m
    m = common_pb2.Manifest(); m.CopyFrom(good); m.files[0].size = -1
    cases["manifest.files[0].size"] = m
    cases["manifest.files"] = common_pb2.Manifest(framework="torch")
    return cases.items()


@pytest.mark.parametrize("field,bad", list(_bad_manifests()), ids=[f for f, _ in _bad_manifests()])
async def test_bad_manifests_are_refused_naming_the_field_and_write_nothing(stub, field, bad):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=bad, name="bad"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field + ":"), caught.value.details()
    assert list((await stub.ListArtifacts(registry_pb2.ListArtifactsRequest())).artifacts) == []


@pytest.mark.parametrize(
    "request_,code,field",
    [
        (registry_pb2.RegisterArtifactRequest(manifest=manifest("n"), name="bad name!"), "INVALID_ARGUMENT", "name"),
        (registry_pb2.RegisterArtifactRequest(manifest=manifest("n"), name="ok", aliases=["UPPER"]), "INVALID_ARGUMENT", "aliases[0]"),
        (registry_pb2.RegisterArtifactRequest(manifest=manifest("n"), aliases=["prod"]), "INVALID_ARGUMENT", "name"),
    ],
)
async def test_bad_names_and_aliases(stub, request_, code, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RegisterArtifact(request_)
    assert caught.value.code().name == code
    assert caught.value.details().startswith(field + ":")
    assert list((await stub.ListArtifacts(registry_pb2.ListArtifactsRequest())).artifacts) == []


@pytest.mark.parametrize(
    "ref,code",
    [
        ("sha256:" + "0" * 64, grpc.StatusCode.NOT_FOUND),
        ("nobody@prod", grpc.StatusCode.NOT_FOUND),
        ("sha256:short", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("name@Bad Alias", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_unknown_and_malformed_refs(stub, ref, code):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref=ref))
    assert caught.value.code() == code
    assert caught.value.details().startswith("ref:")


async def test_bad_page_token_and_alias_to_unknown_artifact(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListArtifacts(registry_pb2.ListArtifactsRequest(page_token="not-a-token"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("page_token:")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetAlias(registry_pb2.SetAliasRequest(name="m", alias="prod", artifact_id="sha256:" + "1" * 64))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_compiled_artifacts_are_recorded_against_their_source(stub, sign, tmp_path):
    source = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("src"), name="src"))
    out = manifest("onnx", files=1).files
    signature = sign("onnx", files=1)
    compiled = common_pb2.CompiledArtifact(
        source_artifact_id=source.id, compiler="onnx", target="onnx", files=out, tool_versions={"torch": "2.13.0"},
        validation=common_pb2.ValidationMetrics(batch_sizes=[1, 7, 64], max_abs_error=3e-7, passed=True),
        triton_platform="onnxruntime_onnx", signature=signature,
    )
    compiled.kwargs.update({"opset": 20})
    made = await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=compiled))
    assert made.id.startswith("sha256:") and made.sha256 == out[0].sha256 and made.size == out[0].size
    assert made.validation.max_abs_error == pytest.approx(3e-7) and list(made.validation.batch_sizes) == [1, 7, 64]
    again = await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=compiled))
    assert again.id == made.id
    listed = await stub.ListCompiledArtifacts(registry_pb2.ListCompiledArtifactsRequest(source_artifact_id=source.id))
    assert [c.id for c in listed.compiled] == [made.id]
    got = await stub.GetCompiledArtifact(registry_pb2.GetCompiledArtifactRequest(id=made.id))
    assert got.kwargs["opset"] == 20 and got.triton_platform == "onnxruntime_onnx"
    # The signature round-trips whole, and still verifies over the files the record lists.
    assert made.signature == got.signature == listed.compiled[0].signature == signature
    assert got.signature.key_id and got.signature.media_type == signature.media_type
    sign.signer.verify_files(tmp_path / "signed" / "onnx", [f.path for f in got.files], got.signature.bundle)


async def test_an_unsigned_compiled_artifact_is_refused(stub, sign):
    source = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("src"), name="src"))
    unsigned = common_pb2.CompiledArtifact(source_artifact_id=source.id, compiler="onnx",
                                           files=manifest("onnx", files=1).files)
    for record in (unsigned, common_pb2.CompiledArtifact(  # a Signature with no bundle is no signature
            source_artifact_id=source.id, compiler="onnx", files=manifest("onnx", files=1).files,
            signature=common_pb2.Signature(media_type="application/vnd.dev.sigstore.bundle.v0.3+json"))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=record))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("compiled.signature:")
    listed = await stub.ListCompiledArtifacts(registry_pb2.ListCompiledArtifactsRequest(source_artifact_id=source.id))
    assert list(listed.compiled) == []  # nothing was stored
    unsigned.signature.CopyFrom(sign("onnx", files=1))
    assert (await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=unsigned))).id


async def test_a_record_from_before_signing_takes_the_signature_it_is_registered_again_with(stub, sign, registry):
    source = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("src"), name="src"))
    first, second = sign("onnx", files=1), sign("onnx", files=1)  # ECDSA: two different bundles
    assert first.bundle != second.bundle
    record = common_pb2.CompiledArtifact(source_artifact_id=source.id, compiler="onnx",
                                         files=manifest("onnx", files=1).files, signature=first)
    made = await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=record))
    record.signature.CopyFrom(second)  # a signed record keeps the signature it was registered with
    again = await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=record))
    assert again.id == made.id and again.signature == first
    async with registry.engine.begin() as conn:  # as migration 0002 leaves an older record
        await conn.execute(ml_compiled_artifacts.update().values(
            signature_media_type="", signature_bundle=None, signature_key_id=""))
    got = await stub.GetCompiledArtifact(registry_pb2.GetCompiledArtifactRequest(id=made.id))
    assert not got.HasField("signature")
    again = await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=record))
    assert again.id == made.id and again.signature == second


async def test_compiled_artifact_bad_inputs(stub, sign):
    out = manifest("c", files=1).files
    unknown = common_pb2.CompiledArtifact(source_artifact_id="sha256:" + "2" * 64, compiler="onnx", files=out,
                                          signature=sign("c", files=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=unknown))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().startswith("compiled.source_artifact_id:")
    no_compiler = common_pb2.CompiledArtifact(source_artifact_id="sha256:" + "2" * 64, files=out)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RegisterCompiledArtifact(registry_pb2.RegisterCompiledArtifactRequest(compiled=no_compiler))
    assert caught.value.details().startswith("compiled.compiler:")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCompiledArtifact(registry_pb2.GetCompiledArtifactRequest(id="sha256:" + "3" * 64))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
