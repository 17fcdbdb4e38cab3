"""Pushes of the kinds that existed before: safetensors with an architecture of services/core/models, and
transformers snapshots (config.json + safetensors)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save as safetensors_save

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.models.architectures import build_module
from services.puller.formats import ImportOptions, inspect_model
from tests.puller.formats.conftest import FEATURES, push, write_csv

MLP = {"type": "mlp", "layers": [4, 8, 3], "activation": "relu", "output": "logits"}
LSTM = {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 4, "num_layers": 1, "window": 12}


def _weights(architecture: dict, metadata: dict[str, str] | None = None) -> bytes:
    state = build_module(architecture).state_dict()
    return safetensors_save(state, metadata=metadata)


def test_safetensors_mlp_with_architecture(tmp_path, data):
    files = {"model.safetensors": _weights(MLP, {"architecture": json.dumps(MLP),
                                                 "feature_names": json.dumps(FEATURES)})}
    reference = write_csv(tmp_path / "sample.csv", FEATURES, data.x)
    folder = push(tmp_path, files)
    imported = inspect_model(folder, ImportOptions(labels=("bear", "flat", "bull"), reference=reference))
    assert (imported.framework, imported.format) == ("torch", "safetensors")
    meta = imported.metadata
    assert meta["architecture"] == MLP and meta["feature_names"] == FEATURES
    assert meta["class_labels"] == ["bear", "flat", "bull"]
    assert (meta["interfaces"], meta["interface"]) == (["classifier", "predictor"], "classifier")
    assert len(meta["training_stats"]["mean"]) == 4 and (folder / "reference.npy").is_file()


def test_safetensors_lstm_forecaster(tmp_path):
    folder = push(tmp_path, {"model.safetensors": _weights(LSTM, {"architecture": json.dumps(LSTM)})})
    meta = inspect_model(folder, ImportOptions()).metadata
    assert meta["interfaces"] == ["forecaster"] and meta["window"] == 12 and meta["feature_names"] == ["value"]


def test_safetensors_without_architecture_or_not_fitting_is_refused(tmp_path):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.safetensors": _weights(MLP, {"format": "pt"})}), ImportOptions())
    assert refused.value.field == "format" and "__metadata__['architecture']" in refused.value.message
    other = {**MLP, "layers": [5, 8, 3]}
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", {"model.safetensors": _weights(MLP, {"architecture": json.dumps(other)})}),
                      ImportOptions())
    assert refused.value.field == "files[model.safetensors]" and "do not fit" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", {"model.safetensors": _weights(MLP, {"architecture": json.dumps(MLP)})}),
                      ImportOptions(labels=("a", "b")))
    assert refused.value.field == "labels"
    broken = bytearray(_weights(MLP, {"architecture": json.dumps(MLP)}))
    with pytest.raises(FailedPrecondition):  # the header's offsets no longer fit the file
        inspect_model(push(tmp_path / "d", {"model.safetensors": bytes(broken[:-16])}), ImportOptions())


def _snapshot(tmp_path, **extra: bytes) -> dict[str, bytes]:
    config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
              "id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}
    files = {"config.json": json.dumps(config).encode(), "tokenizer.json": b"{}",
             "model.safetensors": safetensors_save({"w": torch.ones(2, 2)})}
    files.update(extra)
    return files


def test_hf_snapshot(tmp_path, torch_pickle):
    folder = push(tmp_path, _snapshot(tmp_path, **{"pytorch_model.bin": torch_pickle}))
    imported = inspect_model(folder, ImportOptions(interface="analyzer"))
    assert (imported.framework, imported.format) == ("transformers", "safetensors")
    assert imported.metadata == {"source": "push", "task": "text-classification",
                                 "class_labels": ["negative", "positive"], "interfaces": ["classifier", "analyzer"],
                                 "interface": "analyzer"}
    assert not (folder / "pytorch_model.bin").exists()  # safetensors win; the pickle copy is not kept


def test_hf_snapshot_refusals(tmp_path, torch_pickle):
    files = _snapshot(tmp_path)
    config = json.loads(files["config.json"])
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {**files, "config.json": json.dumps({**config, "auto_map": {
            "AutoModel": "modeling.Evil"}}).encode()}), ImportOptions())
    assert refused.value.field == "files[config.json]" and "auto_map" in refused.value.message
    only_pickle = {k: v for k, v in files.items() if k != "model.safetensors"} | {"pytorch_model.bin": torch_pickle}
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", only_pickle), ImportOptions(allow_pickle=True))
    assert refused.value.field == "files[pytorch_model.bin]" and "only pickle weights" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", {**files, "modeling.py": b"import os"}), ImportOptions())
    assert refused.value.field == "files[modeling.py]"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "d", files), ImportOptions(labels=("neg", "pos")))
    assert refused.value.field == "labels"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "e", files), ImportOptions(interface="forecaster"))
    assert refused.value.field == "interface"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "f", {k: v for k, v in files.items() if k != "model.safetensors"}),
                      ImportOptions())
    assert refused.value.field == "files" and "no .safetensors" in refused.value.message
