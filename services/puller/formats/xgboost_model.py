"""An XGBoost push (.json / .ubj), read with `xgboost.Booster(model_file=)`, which never unpickles.

The objective, classes and targets come from the booster's own config. A loaded booster predicts with
every tree, not with `best_iteration`: the trees used are recorded as `iteration_range` and the same
slice is converted. onnxmltools converts reg:squarederror, binary:logistic and multi:softprob/softmax
faithfully and silently mis-converts others (reg:logistic, binary:logitraw, binary:hinge, ranking,
multi-target): those are served natively. The converter also needs feature names f0..fN, so it gets a
copy without names; the real names stay in the metadata.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from services.core.errors import InvalidArgument
from services.puller.formats.booster import INPUT_NAME, Booster
from services.puller.formats.files import field_of
from services.puller.formats.parity import native_outputs

CONVERTED_OBJECTIVES = ("reg:squarederror", "binary:logistic", "multi:softprob", "multi:softmax")
# binary:logitraw classifies through the sigmoid of its margin (as serving computes it); binary:hinge
# answers hard 0/1, which serving treats as a value, not a probability.
CLASSIFICATION = ("binary:logistic", "binary:logitraw", "multi:softprob", "multi:softmax")
TARGET_OPSET = 15  # onnxmltools' XGBoost converter is proven up to this opset


def load_xgboost(folder: Path, rel: str, kind: str) -> Booster:
    import xgboost

    try:
        with warnings.catch_warnings():  # "Unknown file format": the content was sniffed already, xgboost agrees
            warnings.simplefilter("ignore", UserWarning)
            bst = xgboost.Booster(model_file=str(folder / rel))
        learner = json.loads(bst.save_config())["learner"]
    except (xgboost.core.XGBoostError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{rel} is not a readable XGBoost model: {str(exc).splitlines()[0][:200]}",
                              field=field_of(rel)) from None
    bst.set_param({"nthread": 1})
    objective = learner["objective"]["name"]
    params = learner["learner_model_param"]
    num_class, targets = int(params.get("num_class", 0)), int(params.get("num_target", 1) or 1)
    features = int(params["num_feature"])
    booster_kind = learner.get("gradient_booster", {}).get("name", "gbtree")
    rounds = bst.num_boosted_rounds()
    best = bst.attr("best_iteration")
    end = int(best) + 1 if best is not None and 0 <= int(best) < rounds else rounds
    task = _task(objective)
    width = (num_class if num_class > 1 else 2) if task == "classification" else targets
    reason = _not_converted(objective, booster_kind, targets)

    def predict(x: np.ndarray):
        kwargs = {"iteration_range": (0, end), "validate_features": False}
        if objective == "multi:softmax":  # its predict gives class ids; the probabilities are softmax(margin)
            margin = bst.inplace_predict(x, predict_type="margin", **kwargs).reshape(len(x), -1)
            shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
            values = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            values = np.asarray(bst.inplace_predict(x, **kwargs)).reshape(len(x), -1)
            if objective == "binary:logitraw":  # a raw margin: its probability is the sigmoid
                values = 1.0 / (1.0 + np.exp(-values))
        return native_outputs(values, len(x), task)

    def convert():
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        sliced = bst[0:end]
        sliced.feature_names = None
        sliced.feature_types = None
        model = convert_xgboost(sliced, initial_types=[(INPUT_NAME, FloatTensorType([None, features]))],
                                target_opset=TARGET_OPSET)
        if objective == "multi:softmax":
            _softmax_probabilities(model)
        return model

    def thresholds() -> dict[int, set[float]]:
        return _split_thresholds(json.loads(bytes(bst.save_raw("json"))))

    fmt = "xgboost-ubj" if kind == "xgboost-ubj" else "xgboost-json"
    return Booster("xgboost", fmt, rel, task, objective, features, list(bst.feature_names or []) or None,
                   width, reason, predict, convert, thresholds, {"iteration_range": [0, end]})


def _task(objective: str) -> str:
    if objective in CLASSIFICATION:
        return "classification"
    if objective.startswith("rank:"):
        return "ranking"
    return "regression"  # reg:*, count:*, survival:*, binary:hinge


def _not_converted(objective: str, booster_kind: str, targets: int) -> str:
    if objective not in CONVERTED_OBJECTIVES:
        return f"objective {objective} is not converted to ONNX (onnxmltools mis-converts it); served by xgboost"
    if booster_kind != "gbtree":
        return f"booster {booster_kind} is not converted to ONNX; served by xgboost"
    if targets > 1:
        return f"a multi-target model ({targets} targets) is not converted to ONNX; served by xgboost"
    return ""


def _softmax_probabilities(model) -> None:
    """multi:softmax converts to margins (post_transform NONE); its probabilities are their softmax."""
    for node in model.graph.node:
        if node.op_type == "TreeEnsembleClassifier":
            for attr in node.attribute:
                if attr.name == "post_transform":
                    attr.s = b"SOFTMAX"


def _split_thresholds(dump: dict) -> dict[int, set[float]]:
    booster = dump["learner"]["gradient_booster"]
    model = booster.get("model") or booster.get("gbtree", {}).get("model") or {}
    found: dict[int, set[float]] = {}
    for tree in model.get("trees", []):
        kinds = tree.get("split_type") or [0] * len(tree["split_indices"])
        for index, condition, left, kind in zip(tree["split_indices"], tree["split_conditions"],
                                                tree["left_children"], kinds):
            if left != -1 and kind == 0:  # numerical splits of inner nodes
                found.setdefault(int(index), set()).add(float(condition))
    return found
