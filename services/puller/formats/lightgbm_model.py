"""A LightGBM push (text model), read with `lightgbm.Booster(model_file=)`, which never unpickles.

LightGBM keeps its thresholds as doubles and compares `x <= t`; an ONNX tree ensemble holds float32
thresholds. When float32(t) rounds above t, a float32 input equal to float32(t) goes right in LightGBM
and left in the graph. The converted thresholds are therefore moved to the largest float32 <= t, which
makes the graph split every float32 input as LightGBM does; parity then proves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.core.errors import InvalidArgument
from services.puller.formats.booster import INPUT_NAME, Booster
from services.puller.formats.files import field_of
from services.puller.formats.parity import native_outputs

CONVERTED_OBJECTIVES = ("regression", "regression_l1", "huber", "fair", "quantile", "mape", "binary", "multiclass")
RANKING = ("lambdarank", "rank_xendcg")
TARGET_OPSET = 15


def load_lightgbm(folder: Path, rel: str) -> Booster:
    import lightgbm

    try:
        bst = lightgbm.Booster(model_file=str(folder / rel))
        dump = bst.dump_model()
    except (lightgbm.basic.LightGBMError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"{rel} is not a readable LightGBM model: {str(exc).splitlines()[0][:200]}",
                              field=field_of(rel)) from None
    objective = str(dump.get("objective", "")).split(" ")[0]
    num_class = int(dump.get("num_class", 1))
    features = int(dump["max_feature_idx"]) + 1
    names = [str(n) for n in dump.get("feature_names") or []] or None
    if objective in ("binary", "multiclass", "multiclassova", "cross_entropy"):
        task, width = "classification", (num_class if objective.startswith("multiclass") else 2)
    else:
        task, width = ("ranking" if objective in RANKING else "regression"), 1
    reason = "" if objective in CONVERTED_OBJECTIVES else (
        f"objective {objective} is not converted to ONNX; served by lightgbm")
    if not reason and any(tree.get("is_linear") for tree in dump.get("tree_info", [])):
        reason = "linear trees are not converted to ONNX; served by lightgbm"

    def predict(x: np.ndarray):
        return native_outputs(bst.predict(x, num_threads=1), len(x), task)

    def convert():
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = convert_lightgbm(bst, initial_types=[(INPUT_NAME, FloatTensorType([None, features]))],
                                 target_opset=TARGET_OPSET, zipmap=False)
        _float32_thresholds(model, _split_thresholds(dump))
        return model

    return Booster("lightgbm", "lightgbm-text", rel, task, objective, features, names, width, reason, predict,
                   convert, lambda: _split_thresholds(dump))


def _split_thresholds(dump: dict) -> dict[int, set[float]]:
    found: dict[int, set[float]] = {}

    def walk(node: dict) -> None:
        while "split_feature" in node:
            if node.get("decision_type", "<=") == "<=":
                found.setdefault(int(node["split_feature"]), set()).add(float(node["threshold"]))
            walk(node["left_child"])
            node = node["right_child"]

    for tree in dump.get("tree_info", []):
        walk(tree["tree_structure"])
    return found


def _float32_thresholds(model, thresholds: dict[int, set[float]]) -> None:
    """Each BRANCH_LEQ threshold float32(t) > t becomes the float32 just below it. A float32 value that two
    thresholds of one feature share, one rounded up and one not, is left alone (parity judges it)."""
    rounded_up: dict[tuple[int, bytes], set[bool]] = {}
    for feature, values in thresholds.items():
        for t in values:
            key = (feature, np.float32(t).tobytes())
            rounded_up.setdefault(key, set()).add(float(np.float32(t)) > t)
    for node in model.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        values = np.asarray(attrs["nodes_values"].floats, dtype=np.float32)
        for i, (feature, mode) in enumerate(zip(attrs["nodes_featureids"].ints, attrs["nodes_modes"].strings)):
            if mode == b"BRANCH_LEQ" and rounded_up.get((feature, values[i].tobytes())) == {True}:
                values[i] = np.nextafter(values[i], np.float32(-np.inf))
        del attrs["nodes_values"].floats[:]
        attrs["nodes_values"].floats.extend(values.tolist())
