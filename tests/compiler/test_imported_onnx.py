"""Imported models (docs/byom.md) compiled to int8 and fp16: a small torch MLP exported with
torch.onnx.export and scikit-learn models converted with skl2onnx, laid out as their artifacts are (the
graph, reference.npy, the byom metadata). The compile core is driven directly like conftest's
compile_model; the service path (materialise, sign, store, register) end to end over gRPC; refusals
(tree ensembles, the onnx target, bad kwargs, a broken contract) get their status and field."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mlmesh.v1 import common_pb2, compiler_pb2, operations_pb2, registry_pb2
from services.compiler.compilers.onnx_graph import SourceGraph
from services.compiler.imported.build import compile_graph_and_validate
from services.compiler.imported.contract import imported_model
from services.compiler.triton_config import check_entry
from services.compiler.validation import ValidationPolicy
from services.core.artifacts.manifest import Manifest
from services.core.artifacts.objectstore import ObjectStore, sha256_file
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.lineage import LineageBus
from services.core.settings import ArtifactSettings
from tests.compiler.test_service import Mesh, field_of, running_mesh

MAX_BATCH = 64
FEATURES = 6
MEAN = np.array([0.5, -1.0, 2.0, 0.0, 3.0, -3.0])
STD = np.array([1.0, 0.5, 2.0, 1.0, 3.0, 0.2])


@dataclass(frozen=True)
class Imported:
    """An imported model's artifact folder: its files, manifest framework and metadata."""

    name: str
    folder: Path
    framework: str
    metadata: dict[str, Any]

    @property
    def files(self) -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())

    def manifest(self) -> Manifest:
        return Manifest(files=[{"path": p, "sha256": sha256_file(self.folder / p)[0],
                                "size": (self.folder / p).stat().st_size} for p in self.files],
                        framework=self.framework, format=self.framework, metadata=self.metadata)

    def graph(self) -> SourceGraph:
        model = imported_model(self.manifest())
        return SourceGraph(self.folder / model.graph_file, self.folder, frozenset(self.files),
                           self.folder / model.reference_file if model.reference_file else None, model.graph_file)

    def run_source(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return run_graph(self.folder / self.metadata["runtime"]["file"], x)


def run_graph(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))


def tensor(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def byom_metadata(inputs: list, outputs: list, *, classes: int, file: str = "model.onnx",
                  reference: np.ndarray | None = None, stats: bool = True) -> dict[str, Any]:
    """docs/byom.md metadata of a pushed classifier served by onnxruntime."""
    metadata: dict[str, Any] = {
        "source": "push", "runtime": {"kind": "onnxruntime", "file": file},
        "signature": {"inputs": inputs, "outputs": outputs, "kind": "classification",
                      "probability_output": "probabilities", "classes": [str(c) for c in range(classes)],
                      **({"label_output": "label"} if any(o["name"] == "label" for o in outputs) else {})},
        "interfaces": ["classifier"], "interface": "classifier",
        "feature_names": [f"f{i}" for i in range(inputs[0]["shape"][1])],
        "class_labels": [str(c) for c in range(classes)],
    }
    if stats:
        metadata["training_stats"] = {"mean": MEAN[:inputs[0]["shape"][1]].tolist(),
                                      "std": STD[:inputs[0]["shape"][1]].tolist()}
    if reference is not None:
        metadata["reference"] = {"rows": len(reference), "sample_rows": len(reference), "file": "reference.npy",
                                 "min": reference.min(0).tolist(), "max": reference.max(0).tolist()}
    return metadata


def data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)) * STD[:features] + MEAN[:features]
    z = (x - MEAN[:features]) / STD[:features]
    y = (z[:, 0] + z[:, 1] > 0).astype(int) + (z[:, 2] - z[:, 3] > 0.5).astype(int)
    return x, y


def torch_mlp(folder: Path) -> Imported:
    """A tiny MLP classifier trained for a few steps, exported with torch.onnx.export (dynamic batch)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    x, y = data(512, FEATURES, seed=1)
    mean, std = torch.tensor(MEAN, dtype=torch.float32), torch.tensor(STD, dtype=torch.float32)

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, features):
            return torch.softmax(self.body((features - mean) / std), dim=1)

    model = Classifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.005)
    inputs, labels = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(60):  # soft enough that int8 stays well within its tolerance
        optimiser.zero_grad()
        nn.functional.nll_loss(torch.log(model(inputs) + 1e-9), labels).backward()
        optimiser.step()
    model.eval()
    folder.mkdir(parents=True)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (inputs[:4],), str(folder / "model.onnx"), dynamo=True, input_names=["features"],
                          output_names=["probabilities"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          external_data=False, verbose=False)
    reference, _ = data(300, FEATURES, seed=2)
    np.save(folder / "reference.npy", reference)
    metadata = byom_metadata([tensor("features", "float32", [-1, FEATURES])],
                             [tensor("probabilities", "float32", [-1, 3])], classes=3, reference=reference)
    return Imported("mlp", folder, "onnx", metadata)


def sklearn_graph(folder: Path, estimator: Any, *, black_op: set[str] | None = None,
                  reference: bool = False, framework: str = "onnx", native: Any = None) -> Imported:
    from skl2onnx import to_onnx

    x, y = data(400, 4, seed=3)
    estimator.fit(x.astype(np.float32), y)
    if native is None:
        graph = to_onnx(estimator, x[:1].astype(np.float32), options={"zipmap": False}, black_op=black_op)
    else:  # a booster: onnxmltools' conversion, as the puller makes it
        graph = native(estimator)
    folder.mkdir(parents=True)
    onnx.save(graph, str(folder / "model.onnx"))
    sample = None
    if reference:
        sample, _ = data(200, 4, seed=4)
        np.save(folder / "reference.npy", sample)
    input_name = graph.graph.input[0].name
    metadata = byom_metadata([tensor(input_name, "float32", [-1, 4])],
                             [tensor("label", "int64", [-1]), tensor("probabilities", "float32", [-1, 3])],
                             classes=3, reference=sample)
    if framework != "onnx":
        estimator.get_booster().save_model(str(folder / "model.ubj"))
        metadata["native"] = {"kind": framework, "file": "model.ubj"}
        metadata["conversion"] = {"to": "onnx", "served": "onnx", "rows": 200, "max_abs_diff": 1e-7,
                                  "tolerance": 1e-4, "labels_identical": True, "reason": ""}
    return Imported(folder.name, folder, framework, metadata)


def xgboost_graph(estimator: Any) -> onnx.ModelProto:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_xgboost(estimator, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=15)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Imported]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    root = tmp_path_factory.mktemp("imported")
    scaled = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return {
        "mlp": torch_mlp(root / "mlp"),
        # LinearClassifier (ai.onnx.ml) left out: skl2onnx writes Scaler (ai.onnx.ml) + MatMul + Add + Softmax,
        # whose MatMul quantizes. (On raw features, this data's int8 error is ~0.051: over tolerance.)
        "logreg": sklearn_graph(root / "logreg", scaled, black_op={"LinearClassifier"}),
        "logreg_ml": sklearn_graph(root / "logreg_ml", LogisticRegression(max_iter=500)),
        "tree": sklearn_graph(root / "tree", DecisionTreeClassifier(max_depth=4), reference=True),
    }


def compile_imported(catalog, model: Imported, target: str, tmp_path: Path, kwargs: dict | None = None,
                     policy: ValidationPolicy | None = None):
    resolved = catalog.resolve(target)
    effective = resolved.compiler.check(resolved.target, kwargs or {}, None)
    effective = resolved.compiler.check_graph(resolved.target, kwargs or {}, effective)
    folder = tmp_path / f"{model.name}-{target}"
    return compile_graph_and_validate(
        resolved.compiler, resolved.target, effective, model.graph(), imported_model(model.manifest()).signature,
        MAX_BATCH, (policy or ValidationPolicy()).checked(MAX_BATCH), folder / "entry", folder / "scratch",
    )


@pytest.mark.parametrize("name", ["mlp", "logreg"])
@pytest.mark.parametrize("target", ["int8", "fp16"])
def test_imported_graph_compiles_and_keeps_parity(catalog, imported, tmp_path, name, target):
    model = imported[name]
    source_files = {p: (model.folder / p).read_bytes() for p in model.files}
    compiled = compile_imported(catalog, model, target, tmp_path)
    metrics = compiled.metrics
    tolerance = {"int8": 5e-2, "fp16": 1e-2}[target]  # the quantization compiler's, as for torch models
    assert metrics["passed"] and not metrics["warned"] and metrics["batch_sizes"] == [1, 7, MAX_BATCH]
    assert (metrics["tolerance_abs"], metrics["tolerance_rel"]) == (tolerance, tolerance)
    assert 0 < metrics["max_abs_error"] <= tolerance and metrics["accuracy_delta"] <= 0.05
    assert [f.path for f in compiled.files] == ["1/model.onnx", "config.pbtxt"]
    assert check_entry(compiled.entry) == []
    sample = "reference sample" if name == "mlp" else "training_stats"
    assert any(sample in note for note in compiled.output.notes), compiled.output.notes

    # The compiled graph keeps the source graph's tensor names and IO types; it really is int8 / fp16.
    path = compiled.entry / "1" / "model.onnx"
    graph, source = onnx.load(str(path)), onnx.load(str(model.folder / "model.onnx"))
    assert [(v.name, v.type) for v in graph.graph.input] == [(v.name, v.type) for v in source.graph.input]
    assert [v.name for v in graph.graph.output] == [v.name for v in source.graph.output]
    assert [v.type.tensor_type.elem_type for v in graph.graph.output] == \
        [v.type.tensor_type.elem_type for v in source.graph.output]
    kinds = {t.data_type for t in graph.graph.initializer}
    if target == "int8":
        assert {n.op_type for n in graph.graph.node} & {"MatMulInteger", "DynamicQuantizeMatMul"}
        assert kinds & {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    else:
        assert onnx.TensorProto.FLOAT16 in kinds

    # Its answers, run independently, are close to the source graph's on fresh rows.
    rows, _ = data(100, 6 if name == "mlp" else 4, seed=9)
    want, got = model.run_source(rows.astype(np.float32)), run_graph(path, rows.astype(np.float32))
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= tolerance
    if "label" in want:
        assert (got["label"] != want["label"]).mean() <= 0.05
    assert {p: (model.folder / p).read_bytes() for p in model.files} == source_files  # the source untouched


def test_single_value_outputs_get_a_triton_reshape(catalog, imported, tmp_path):
    compiled = compile_imported(catalog, imported["logreg"], "fp16", tmp_path)
    config = (compiled.entry / "config.pbtxt").read_text()
    label = config[config.index('name: "label"'):config.index('name: "probabilities"')]
    assert "data_type: TYPE_INT64" in label and "dims: [ 1 ]" in label and "reshape: { shape: [ ] }" in label
    assert 'name: "X"' in config and "INPUT__0" not in config and "OUTPUT__0" not in config


def test_over_tolerance_fails_unless_warn_only(catalog, imported, tmp_path):
    strict = ValidationPolicy(tolerance_abs=1e-9, tolerance_rel=1e-9)
    with pytest.raises(FailedPrecondition, match="over tolerance") as err:
        compile_imported(catalog, imported["logreg"], "int8", tmp_path, policy=strict)
    assert err.value.field == "validation"
    warned = compile_imported(catalog, imported["logreg"], "int8", tmp_path / "warn",
                              policy=ValidationPolicy(tolerance_abs=1e-9, tolerance_rel=1e-9, warn_only=True))
    assert warned.metrics["warned"] and not warned.metrics["passed"]


@pytest.mark.parametrize("target", ["int8", "fp16"])
def test_graphs_with_nothing_to_change_are_refused(catalog, imported, tmp_path, target):
    with pytest.raises(FailedPrecondition) as err:
        compile_imported(catalog, imported["tree"], target, tmp_path)
    assert err.value.field == "target"
    assert "tree ensemble" in err.value.message and "useless copy" in err.value.message
    # skl2onnx's default LogisticRegression graph is ai.onnx.ml LinearClassifier: nothing to quantize either.
    with pytest.raises(FailedPrecondition) as err:
        compile_imported(catalog, imported["logreg_ml"], target, tmp_path / "ml")
    assert err.value.field == "target" and "LinearClassifier (ai.onnx.ml)" in err.value.message


def test_kwargs_that_only_shape_torch_exports_are_refused(catalog):
    compiler = catalog.resolve("int8").compiler
    for kwargs, field in (({"opset": 20}, "kwargs.opset"), ({"format": "pt"}, "kwargs.format")):
        with pytest.raises(InvalidArgument) as err:
            compiler.check_graph("int8", kwargs, compiler.check("int8", kwargs, None))
        assert err.value.field == field
    effective = compiler.check_graph("int8", {"per_channel": True}, compiler.check("int8", {"per_channel": True}, None))
    assert effective["per_channel"] and "opset" not in effective and "format" not in effective


def test_broken_contracts_are_refused_naming_the_field(catalog, imported, tmp_path):
    model = imported["logreg"]
    manifest = model.manifest()

    def refused(metadata: dict) -> str:
        with pytest.raises(FailedPrecondition) as err:
            imported_model(manifest.model_copy(update={"metadata": metadata}))
        return err.value.field

    base = model.metadata
    assert refused({**base, "runtime": {"kind": "xgboost", "file": "model.ubj"}}) == "metadata.runtime.kind"
    assert refused({**base, "runtime": {"kind": "onnxruntime", "file": "other.onnx"}}) == "metadata.runtime.file"
    two = {**base["signature"], "inputs": base["signature"]["inputs"] * 2}
    assert refused({**base, "signature": two}) == "metadata.signature.inputs"
    fixed = {**base["signature"], "inputs": [tensor("X", "float32", [4, 4])]}
    assert refused({**base, "signature": fixed}) == "metadata.signature.inputs[0].shape"
    bools = {**base["signature"], "inputs": [tensor("X", "bool", [-1, 4])]}
    assert refused({**base, "signature": bools}) == "metadata.signature.inputs[0].dtype"
    assert refused({**base, "reference": {"file": "missing.npy"}}) == "metadata.reference.file"

    # The graph must be what the signature says, with a dynamic batch, and its external data verified files.
    graph = onnx.load(str(model.folder / "model.onnx"))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    folder = tmp_path / "fixed"
    folder.mkdir()
    onnx.save(graph, str(folder / "model.onnx"))
    fixed_batch = Imported("fixed", folder, "onnx", base)
    with pytest.raises(FailedPrecondition, match="fixed batch dimension") as err:
        compile_imported(catalog, fixed_batch, "fp16", tmp_path)
    assert err.value.field == "metadata.runtime.file"
    renamed = Imported("renamed", model.folder, "onnx", {**base, "signature": {
        **base["signature"], "outputs": [tensor("label", "int64", [-1]), tensor("scores", "float32", [-1, 3])]}})
    with pytest.raises(FailedPrecondition, match="outputs are") as err:
        compile_imported(catalog, renamed, "fp16", tmp_path / "renamed")
    assert err.value.field == "metadata.signature.outputs"
    outside = tmp_path / "outside"
    outside.mkdir()
    graph = onnx.load(str(model.folder / "model.onnx"))
    weights = next(t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    weights.ClearField("float_data")
    weights.data_location = onnx.TensorProto.EXTERNAL
    weights.external_data.add(key="location", value="../secret.bin")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    onnx.save(graph, str(outside / "model.onnx"))
    escaping = Imported("escaping", outside, "onnx", base)
    with pytest.raises(FailedPrecondition, match="external data") as err:
        compile_imported(catalog, escaping, "fp16", tmp_path / "escaping")
    assert err.value.field == "metadata.runtime.file"


# ---- the service: materialise -> compile -> validate -> sign -> store -> register ----

async def register_imported(mesh: Mesh, model: Imported) -> common_pb2.Artifact:
    """What the puller's push leaves behind: the files stored, signed by the mesh's signer, registered."""
    token = set_principal(Principal("test-operator", frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
    try:
        store = StoreHandler(ObjectStore.from_url(mesh.settings.object_store_url), LineageBus(), service="test")
        signer = ArtifactSigner(ArtifactSettings(), mesh.settings.home)
        bundle = signer.sign_files(model.folder, model.files)
        manifest = model.manifest()
        for f in manifest.files:
            await store.put_file(model.folder / f.path, expected_sha256=f.sha256)
    finally:
        reset_principal(token)
    request = registry_pb2.RegisterArtifactRequest(
        manifest=common_pb2.Manifest(files=[common_pb2.ArtifactFile(**f.model_dump()) for f in manifest.files],
                                     framework=manifest.framework, format=manifest.format),
        name=f"test/{model.name}", signature=signature_message(signer, bundle))
    request.manifest.metadata.update(manifest.metadata)
    return await mesh.registry.RegisterArtifact(request, metadata=mesh.registry_metadata)


async def test_service_compiles_an_imported_graph_to_int8(imported, tmp_path):
    model = imported["mlp"]
    async with running_mesh(tmp_path) as (mesh, _):
        artifact = await register_imported(mesh, model)
        op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(
            artifact=f"test/{model.name}", target="int8", max_batch_size=32), metadata=mesh.metadata)
        updates = await mesh.watch(op.id)
        final = updates[-1]
        assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
        assert [u.progress.stage for u in updates if u.progress.stage][-1] == "register"
        compiled = common_pb2.CompiledArtifact()
        assert final.result.Unpack(compiled)
        assert (compiled.source_artifact_id, compiled.compiler, compiled.target) == (artifact.id, "quantization", "int8")
        assert [f.path for f in compiled.files] == ["1/model.onnx", "config.pbtxt"]
        assert compiled.triton_platform == "onnxruntime_onnx" and "onnxruntime" in compiled.tool_versions
        assert compiled.validation.passed and list(compiled.validation.batch_sizes) == [1, 7, 32]
        assert compiled.validation.tolerance_abs == 5e-2 and 0 < compiled.validation.size_ratio
        assert "opset" not in compiled.kwargs and compiled.kwargs["max_batch_size"] == 32
        assert await mesh.compiled_of(artifact.id) == [compiled]
        # Signed over exactly its files as stored; the stored graph answers like the source.
        stored = tmp_path / "stored"
        for f in compiled.files:
            (stored / f.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mesh.settings.home / "objects" / "sha256" / f.sha256, stored / f.path)
        signer = ArtifactSigner(ArtifactSettings(), mesh.settings.home)
        signer.verify_files(stored, [f.path for f in compiled.files], compiled.signature.bundle)
        rows = np.load(model.folder / "reference.npy").astype(np.float32)
        got, want = run_graph(stored / "1" / "model.onnx", rows), model.run_source(rows)
        assert list(got) == ["probabilities"] and np.abs(got["probabilities"] - want["probabilities"]).max() <= 5e-2


async def test_service_refuses_what_an_imported_graph_cannot_become(imported, tmp_path):
    from xgboost import XGBClassifier

    booster = sklearn_graph(tmp_path / "booster", XGBClassifier(n_estimators=5, max_depth=2), framework="xgboost",
                            native=xgboost_graph)
    async with running_mesh(tmp_path / "mesh") as (mesh, _):
        mlp = await register_imported(mesh, imported["mlp"])
        xgb = await register_imported(mesh, booster)
        tree = await register_imported(mesh, imported["tree"])
        cases = [
            (dict(artifact=mlp.id, target="onnx"), grpc.StatusCode.FAILED_PRECONDITION, "target", "already is an ONNX"),
            (dict(artifact=mlp.id, target="pt"), grpc.StatusCode.FAILED_PRECONDITION, "target", "int8"),
            (dict(artifact=mlp.id, target="bf16"), grpc.StatusCode.FAILED_PRECONDITION, "target", "torch module"),
            (dict(artifact=mlp.id, target="int8", kwargs={"opset": 20}), grpc.StatusCode.INVALID_ARGUMENT,
             "kwargs.opset", "own opsets"),
            (dict(artifact=xgb.id, target="int8"), grpc.StatusCode.FAILED_PRECONDITION, "target", "tree ensemble"),
            (dict(artifact=xgb.id, target="fp16"), grpc.StatusCode.FAILED_PRECONDITION, "target", "tree ensemble"),
        ]
        for fields, code, field, text in cases:
            request = compiler_pb2.CompileRequest(**{k: v for k, v in fields.items() if k != "kwargs"})
            request.kwargs.update(fields.get("kwargs", {}))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await mesh.compiler.Compile(request, metadata=mesh.metadata)
            assert (err.value.code(), field_of(err.value)) == (code, field), (fields, err.value.details())
            assert text in err.value.details(), err.value.details()
        # A plain ONNX artifact whose graph is a tree ensemble: known once its graph is read, in the operation.
        op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(artifact=tree.id, target="int8"),
                                         metadata=mesh.metadata)
        final = (await mesh.watch(op.id))[-1]
        assert final.state == operations_pb2.OPERATION_STATE_FAILED
        assert (final.error.code, final.error.field) == ("FAILED_PRECONDITION", "target")
        assert "tree ensemble" in final.error.message and "useless copy" in final.error.message
        assert await mesh.compiled_of(tree.id) == []


def test_a_reference_sample_that_does_not_fit_the_input_is_refused(imported, tmp_path):
    from services.compiler.imported.validation import load_reference

    signature = imported_model(imported["logreg"].manifest()).signature
    np.save(tmp_path / "wide.npy", np.zeros((5, 7)))
    with pytest.raises(FailedPrecondition, match=r"rows of shape \(7,\)") as err:
        load_reference(tmp_path / "wide.npy", signature)
    assert err.value.field == "metadata.reference.file"
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FailedPrecondition, match="not a plain .npy array"):
        load_reference(tmp_path / "objects.npy", signature)
    np.save(tmp_path / "ok.npy", np.ones((3, 4)))
    assert load_reference(tmp_path / "ok.npy", signature).dtype == np.float32
