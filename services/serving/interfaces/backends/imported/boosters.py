"""The boosters' own libraries as runtimes: XGBoost (`Booster(model_file=bytearray)`, `inplace_predict` over
the metadata's `iteration_range`) and LightGBM (`Booster(model_str=)`), both parsed from bytes already hashed
against the manifest, neither unpickling. Their answers become the signature's outputs: the value, or the
class probabilities (a binary objective's p becomes [1 - p, p]) and, when the signature has one, the label.
They run in-process only (`in_process_only` says why): Triton here runs ONNX graphs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, outward
from services.serving.engine.executor import default_torch_threads
from services.serving.interfaces.backends.imported.signature import ModelSignature

log = logging.getLogger("mlmesh.serving.models")

NATIVE_REASON = ("{library} models converted to ONNX run on Triton; this one is served by the {kind} library "
                 "in-process: {reason}")


def label_values(signature: ModelSignature) -> np.ndarray | None:
    """The label output's value per class, in its dtype (None without a label output)."""
    if not signature.label_output:
        return None
    tensor = signature.output(signature.label_output)
    if tensor.is_string:
        values = np.empty(len(signature.classes), dtype=object)
        values[:] = list(signature.classes)
        return values
    try:
        return np.asarray([float(c) for c in signature.classes]).astype(tensor.numpy_dtype)
    except ValueError:
        raise FailedPrecondition(f"classes {list(signature.classes)} are not {tensor.dtype} values of "
                                 f"{tensor.name!r}", field="metadata.signature.classes") from None


class NativeBooster:
    """What the xgboost and lightgbm runtimes share: objective -> values or class probabilities, and the
    signature's outputs built from them (a binary classifier's p becomes [1 - p, p])."""

    uses_torch = False
    kind = ""
    library = ""

    def __init__(self, signature: ModelSignature, *, features: int, reason: str) -> None:
        self.signature = signature
        self.input_name = signature.input.name
        self.in_process_only = NATIVE_REASON.format(library=self.library, kind=self.kind,
                                                    reason=reason or "no conversion was proven")
        if signature.width != features:
            raise FailedPrecondition(f"the booster has {features} features; the signature's input "
                                     f"{list(signature.input.shape)}", field="metadata.signature.inputs[0]")
        self.labels = label_values(signature)

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(feeds[self.input_name])
        raw = np.asarray(self.predict(x))
        signature, outputs = self.signature, {}
        rows = len(x)
        if signature.probability_output:
            classes = len(signature.classes)
            probabilities = raw.reshape(rows, -1)
            if probabilities.shape[1] == 1 and classes == 2:
                probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=1)
            if probabilities.shape[1] != classes:
                raise RuntimeError(f"the booster answered {probabilities.shape[1]} columns for {classes} classes")
            tensor = signature.output(signature.probability_output)
            outputs[tensor.name] = probabilities.astype(tensor.numpy_dtype)
            if self.labels is not None:
                outputs[signature.label_output] = self.labels[probabilities.argmax(axis=1)]
        if signature.value_output:
            tensor = signature.output(signature.value_output)
            shape = (rows,) if len(tensor.shape) == 1 else (rows, -1)
            outputs[tensor.name] = raw.reshape(shape).astype(tensor.numpy_dtype)
        return outputs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class XGBoostRuntime(NativeBooster):
    kind, library = "xgboost", "XGBoost"
    CLASSIFYING = ("binary:logistic", "binary:logitraw", "multi:softprob", "multi:softmax")

    def __init__(self, data: bytes, signature: ModelSignature, *, runtime: Mapping[str, Any],
                 threads: int | None = None, reason: str = "") -> None:
        import xgboost as xgb

        try:
            self.booster = xgb.Booster(model_file=bytearray(data))
            learner = json.loads(self.booster.save_config())["learner"]
        except (xgb.core.XGBoostError, ValueError, KeyError) as exc:
            log.warning("not a loadable XGBoost model: %s", exc)  # in full; the caller gets outward()
            raise FailedPrecondition(f"not a loadable XGBoost model: {type(exc).__name__}: {outward(exc)}",
                                     field="model") from None
        self.booster.set_param({"nthread": threads or default_torch_threads()})
        self.objective = str(learner.get("objective", {}).get("name", ""))
        if signature.probability_output and self.objective not in self.CLASSIFYING:
            raise FailedPrecondition(f"XGBoost objective {self.objective!r} gives no class probabilities; "
                                     f"served classifiers use {list(self.CLASSIFYING)}", field="model")
        span = runtime.get("iteration_range") or (0, 0)
        self.iteration_range = (int(span[0]), int(span[1]))
        super().__init__(signature, features=self.booster.num_features(), reason=reason)

    def predict(self, x: np.ndarray) -> np.ndarray:
        margin = self.objective in ("binary:logitraw", "multi:softmax")
        raw = self.booster.inplace_predict(x, iteration_range=self.iteration_range, validate_features=False,
                                           predict_type="margin" if margin else "value")
        if self.objective == "binary:logitraw":
            return _sigmoid(raw)
        if self.objective == "multi:softmax":
            return _softmax(np.asarray(raw).reshape(len(x), -1))
        return raw


class LightGBMRuntime(NativeBooster):
    kind, library = "lightgbm", "LightGBM"
    CLASSIFYING = ("binary", "cross_entropy", "xentropy", "multiclass", "softmax", "multiclassova",
                   "multiclass_ova", "ova", "ovr")

    def __init__(self, data: bytes, signature: ModelSignature, *, runtime: Mapping[str, Any],
                 threads: int | None = None, reason: str = "") -> None:
        import lightgbm as lgb

        try:
            text = data.decode()
            self.booster = lgb.Booster(model_str=text)
        except (lgb.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            log.warning("not a loadable LightGBM model: %s", exc)  # in full; the caller gets outward()
            raise FailedPrecondition(f"not a loadable LightGBM model: {type(exc).__name__}: {outward(exc)}",
                                     field="model") from None
        line = next((ln for ln in text.splitlines() if ln.startswith("objective=")), "objective=")
        self.objective = line.removeprefix("objective=").split(" ")[0]
        if signature.probability_output and self.objective not in self.CLASSIFYING:
            raise FailedPrecondition(f"LightGBM objective {self.objective!r} gives no class probabilities",
                                     field="model")
        self.threads = threads or default_torch_threads()
        span = runtime.get("iteration_range")
        self.window = {} if not span else {"start_iteration": int(span[0]), "num_iteration": int(span[1] - span[0])}
        super().__init__(signature, features=self.booster.num_feature(), reason=reason)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, num_threads=self.threads, validate_features=False, **self.window)
