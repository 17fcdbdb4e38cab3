"""The imported-model backends on their own (no services): the signature contract, the interface table,
the re-hash before a load, the boosters' own semantics (iteration_range, [1-p, p]), a label that must
agree with the probabilities, where each runs (Triton or in-process, and why), the Triton entry's files,
and the statistics the rules get."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import shutil

import numpy as np
import pytest

from services.core.errors import FailedPrecondition, IntegrityError, InvalidArgument
from services.serving.interfaces.backends.imported import imported_backend, parse_signature
from services.serving.interfaces.backends.imported.tabular import ClassOutputs
from services.serving.interfaces.calls import ClassifyCall, ForecastCall
from services.serving.loading.metadata import default_interface, serving_metadata
from services.serving.loading.placement import ExecutorPlacement, TritonTarget
from services.serving.loading.triton_entry import imported_specs
from services.serving.rules.pack import RulePackLoader
from services.serving.sessions.manager import SessionManager
from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec


def files_of(model) -> dict[str, tuple[str, int]]:
    out = {}
    for path in model.folder.rglob("*"):
        data = path.read_bytes()
        out[path.relative_to(model.folder).as_posix()] = (hashlib.sha256(data).hexdigest(), len(data))
    return out


def backend(model, interface: str | None = None, *, metadata=None, folder=None, expected=None):
    meta = serving_metadata(metadata or model.metadata)
    return imported_backend(interface or meta["interface"], artifact_id="sha256:test", metadata=meta,
                            folder=folder or model.folder, framework=model.framework, expected=expected)


def test_the_signature_contract_is_checked(imported_models):
    logistic = imported_models["iris_logistic"].metadata
    with pytest.raises(FailedPrecondition) as refused:
        parse_signature({k: v for k, v in logistic.items() if k != "signature"})
    assert refused.value.field == "metadata.signature"
    broken = copy.deepcopy(logistic)
    del broken["signature"]["classes"]
    with pytest.raises(FailedPrecondition, match="classes") as refused:
        parse_signature(broken)
    assert refused.value.field == "metadata.signature.classes"
    broken = copy.deepcopy(logistic)
    broken["signature"]["probability_output"] = "scores"
    with pytest.raises(FailedPrecondition, match="'scores' is not one of the outputs"):
        parse_signature(broken)
    # outputs serving does not read may be anything (a ZipMap's sequence); an open window comes from metadata
    lenient = copy.deepcopy(logistic)
    lenient["signature"]["outputs"].append({"name": "output_probability", "dtype": "seq(map(int64,tensor(float)))",
                                            "shape": []})
    assert [t.name for t in parse_signature(lenient).outputs] == ["label", "probabilities"]
    window = copy.deepcopy(imported_models["torch_window"].metadata)
    window["signature"]["inputs"][0]["shape"] = [-1, -1]
    assert parse_signature(window).width == 8
    del window["window"]
    with pytest.raises(FailedPrecondition) as refused:
        parse_signature(window)
    assert refused.value.field == "metadata.window"


def test_the_interface_table_and_the_default_interface(imported_models):
    gbr, window = imported_models["iris_gbr"], imported_models["torch_window"]
    with pytest.raises(InvalidArgument) as refused:
        backend(gbr, "classifier", folder=gbr.folder / "absent")  # refused before anything is loaded
    assert refused.value.field == "interface" and "serves ['predictor'], not 'classifier'" in refused.value.message
    assert type(backend(window, "predictor")).__name__ == "ImportedPredictor"
    assert type(backend(window)).__name__ == "ImportedForecaster"
    without = {k: v for k, v in window.metadata.items() if k not in ("interface", "interfaces")}
    assert default_interface(without, "onnx") == "forecaster"
    assert default_interface({**without, "interfaces": ["predictor"]}, "onnx") == "predictor"
    assert default_interface(imported_models["news_text"].metadata, "onnx") == "analyzer"


def test_files_are_hashed_again_right_before_the_load(imported_models, tmp_path):
    for name in ("torch_window", "xgb_binary"):
        model = imported_models[name]
        folder = tmp_path / name
        shutil.copytree(model.folder, folder)
        expected = files_of(model)
        backend(model, folder=folder, expected=expected)  # intact: loads
        changed = "model.onnx.data" if name == "torch_window" else "model.ubj"
        with open(folder / changed, "r+b") as f:  # same size, one byte different
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))
        with pytest.raises(IntegrityError, match=f"sha256 mismatch for {changed}"):
            backend(model, folder=folder, expected=expected)


async def test_boosters_keep_their_own_semantics(imported_models):
    xgb = imported_models["xgb_binary"]
    served = backend(xgb)
    rows = xgb.rows[40:110:5]
    expected = xgb.reference(rows)
    got = await served.classify(rows.tolist())
    assert np.allclose([[c.scores["other"], c.scores["virginica"]] for c in got], expected["probabilities"], atol=1e-6)
    assert served.run({"input": rows.astype(np.float32)})["label"].tolist() == expected["label"].tolist()
    every_tree = copy.deepcopy(xgb.metadata)
    every_tree["runtime"]["iteration_range"] = [0, 0]
    all_trees = await backend(xgb, metadata=every_tree).classify(rows.tolist())
    assert not np.allclose([c.scores["virginica"] for c in all_trees], expected["probabilities"][:, 1], atol=1e-4)
    assert "in-process: no reference sample" in served.in_process_only

    lgb = imported_models["lgb_regressor"]
    predictions = await backend(lgb).predict(lgb.rows[:7].tolist())
    assert np.allclose([p.value for p in predictions], lgb.reference(lgb.rows[:7])["value"], atol=1e-5)


async def test_feature_rows_are_checked_in_process(imported_models):
    logistic = backend(imported_models["iris_logistic"])
    with pytest.raises(InvalidArgument, match="expected 4 features per row, got 3"):
        await logistic.classify([[5.0, 3.0, 1.0]])
    with pytest.raises(InvalidArgument) as refused:
        await logistic.classify({"sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 1.0, "petal_widht": 0.2})
    assert refused.value.field == "rows[0].petal_widht"
    with pytest.raises(InvalidArgument, match="not texts"):
        logistic.preprocess(ClassifyCall(["a text"]))
    prepared = logistic.preprocess(ClassifyCall([[5.0, 3.0, 1.4, 0.2]]))
    assert prepared.inputs["X"].dtype == np.float32 and prepared.view.names[3] == "petal_width"


def test_a_label_must_agree_with_the_probabilities(imported_models):
    metadata = imported_models["iris_logistic"].metadata
    outputs = ClassOutputs(metadata, parse_signature(metadata))
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=np.float32)
    ranked = outputs.ranked({"probabilities": probabilities, "label": np.array([0, 2])}, 2)
    assert [c.label for c in ranked] == ["setosa", "virginica"]
    with pytest.raises(FailedPrecondition, match="not its most probable class .row 1"):
        outputs.ranked({"probabilities": probabilities, "label": np.array([0, 1])}, 2)
    with pytest.raises(FailedPrecondition, match="label '7', not one of its classes"):
        outputs.ranked({"probabilities": probabilities, "label": np.array([0, 7])}, 2)


def test_where_each_imported_model_runs(imported_models, tmp_path):
    target = TritonTarget("127.0.0.1:1", ModelRepository(tmp_path / "repo"))
    auto = ExecutorPlacement("auto", target)
    xgb, lgb = backend(imported_models["xgb_binary"]), backend(imported_models["lgb_regressor"])
    assert auto.choose("auto", xgb) == "in_process" and auto.choose("auto", lgb) == "in_process"
    with pytest.raises(FailedPrecondition) as refused:
        auto.choose("triton", lgb)
    assert refused.value.field == "executor"
    assert "served by the lightgbm library in-process: parity failed" in refused.value.message
    logistic, news = backend(imported_models["iris_logistic"]), backend(imported_models["news_text"], "classifier")
    assert auto.choose("auto", logistic) == "triton" and auto.choose("auto", news) == "triton"
    inputs, outputs = imported_specs(logistic)
    assert inputs == (TensorSpec("X", (4,), "float32"),)
    assert outputs == (TensorSpec("probabilities", (3,), "float32"), TensorSpec("label", (1,), "int64"))
    inputs, outputs = imported_specs(news)
    assert inputs == (TensorSpec("text", (1,), "object"),) and outputs[1] == TensorSpec("label", (1,), "object")


def test_the_entry_copies_the_graphs_external_data(imported_models, tmp_path):
    window = backend(imported_models["torch_window"])
    assert window.runtime.external_files == ("model.onnx.data",)
    source = tmp_path / "graph"
    (source / "weights").mkdir(parents=True)
    (source / "g.onnx").write_bytes(b"graph")
    (source / "weights" / "w.bin").write_bytes(b"w")
    repository = ModelRepository(tmp_path / "repo")
    config = ModelConfig((TensorSpec("x", (2,)),), (TensorSpec("y", (1,)),))
    entry = repository.write_onnx_model("m", config, onnx_file=source / "g.onnx", data_files=("weights/w.bin",))
    assert (entry / "1" / "weights" / "w.bin").read_bytes() == b"w" and (entry / "1" / "model.py").is_file()
    for bad in ("../w.bin", "model.py", "/etc/passwd", ".hidden"):
        with pytest.raises(InvalidArgument):
            repository.write_onnx_model("m2", config, onnx_file=source / "g.onnx", data_files=(bad,))


def test_the_rules_get_statistics_in_the_models_columns(imported_models):
    window = imported_models["torch_window"]
    meta = serving_metadata(window.metadata)
    series = window.extra["series"]
    assert meta["feature_stats"]["value"]["mean"] == pytest.approx(series.mean(), rel=1e-5)
    assert meta["feature_stats"]["value[7]"] == meta["feature_stats"]["value"]
    assert backend(window).info.feature_names == ("value",)
    assert backend(window, "predictor").info.feature_names[0] == "value[0]"
    # one statistic per window position (a puller that records them so): pooled for the series
    per_position = {**window.metadata, "training_stats": {"mean": [1.0, 3.0], "std": [1.0, 1.0]}}
    pooled = serving_metadata(per_position)["feature_stats"]
    assert pooled["value"] == {"mean": 2.0, "std": pytest.approx(2 ** 0.5)} and pooled["value[1]"]["mean"] == 3.0
    logistic = backend(imported_models["iris_logistic"])
    assert logistic.info.feature_stats["petal_width"]["std"] > 0 and logistic.info.expected_features == 4
    text = backend(imported_models["news_text"])
    assert text.info.feature_names == ("token_count",) and "token_count" in text.info.feature_stats


async def test_a_window_model_forecasts_with_iteration_level_batching(imported_models, settings, lineage):
    """Ten forecasts of different horizons at once: one step runs every active sequence, finished ones leave."""
    window = imported_models["torch_window"]
    forecaster = imported_backend("forecaster", artifact_id="sha256:" + "0" * 64,
                                  metadata=serving_metadata(window.metadata), folder=window.folder)
    manager = SessionManager(settings, lineage[0], rule_packs=RulePackLoader("configs/rules"))
    session = await manager.deploy(forecaster, session_id="window")
    try:
        series = window.extra["series"]
        horizons = (3, 7, 1, 12, 5, 9, 2, 4, 6, 8)
        calls = [ForecastCall(series[i:i + 20].tolist(), h) for i, h in zip(range(0, 80, 8), horizons)]
        answers = await asyncio.gather(*(session.infer(c) for c in calls))
        for call, answer in zip(calls, answers):
            assert np.allclose(answer.result.values, (await forecaster.direct(call)).values, atol=1e-5)
        counts = session.snapshot().stats.batch_size_counts
        assert counts[10] == 1 and sum(counts.values()) == 12  # 12 steps for the longest horizon
    finally:
        await manager.close()
