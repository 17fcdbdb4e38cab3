"""Input rules: checks of one request's numeric view before it is queued. Each is one numpy pass; a
violation raises InvalidArgument naming the rule, the feature and the offending value, with the row as
the error's field.

FiniteGuard and TensorShapeGuard always run first (a RuleSet puts them there whatever the pack says),
so NaN, infinities and a wrong width never reach a model, and the later guards see a well-formed matrix.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from pydantic import Field, model_validator

from services.core.errors import InvalidArgument
from services.core.settings import MLSettings
from services.serving.rules.registry import Rule, RuleParams
from services.serving.rules.view import FeatureView, ModelInfo, fmt


class InputRule(Rule):
    def __init__(self, params: RuleParams, info: ModelInfo, settings: MLSettings, path: str = "") -> None:
        super().__init__(params)
        self.info = info
        self.note = ""  # what this rule cannot check for this model (a session reports it), "" when all is well

    @abstractmethod
    def check(self, view: FeatureView) -> None: ...

    @staticmethod
    def _first(mask: np.ndarray) -> tuple[int, int]:
        row, col = np.argwhere(mask)[0]
        return int(row), int(col)


class FiniteGuard(InputRule):
    name = "FiniteGuard"

    def check(self, view: FeatureView) -> None:
        finite = np.isfinite(view.values)
        if not finite.all():
            row, col = self._first(~finite)
            raise InvalidArgument(f"{self.name}: feature {view.name(col)!r} value={fmt(view.values[row, col])} "
                                  "is not finite", field=view.at(row))


class ShapeParams(RuleParams):
    features: int | None = Field(None, ge=1, description="Values per row; default the model's feature count.")
    min_rows: int = Field(1, ge=1, description="Fewest rows (series values) per request.")
    max_rows: int | None = Field(None, ge=1, description="Most rows (series values) per request.")


class TensorShapeGuard(InputRule):
    name = "TensorShapeGuard"
    Params = ShapeParams

    def __init__(self, params: ShapeParams, info: ModelInfo, settings: MLSettings, path: str = "") -> None:
        super().__init__(params, info, settings, path)
        self.features = params.features or info.expected_features or len(info.feature_names) or None

    def check(self, view: FeatureView) -> None:
        rows, width = view.values.shape
        p = self.params
        if self.features is not None and width != self.features:
            raise InvalidArgument(f"{self.name}: expected {self.features} features per row, got {width}",
                                  field=view.field)
        if rows < p.min_rows or (p.max_rows is not None and rows > p.max_rows):
            bound = f"at least {p.min_rows}" if rows < p.min_rows else f"at most {p.max_rows}"
            raise InvalidArgument(f"{self.name}: expected {bound} rows, got {rows}", field=view.field)


class Bounds(RuleParams):
    min: float | None = None
    max: float | None = None


class RangeParams(Bounds):
    features: dict[str, Bounds] = Field(default_factory=dict, description="Per-feature bounds; override min/max.")

    @model_validator(mode="after")
    def _some_bound(self) -> RangeParams:
        if self.min is None and self.max is None and not self.features:
            raise ValueError("give min, max or features")
        return self


class RangeGuard(InputRule):
    """Absolute bounds, for all features (min/max) or per feature."""

    name = "RangeGuard"
    Params = RangeParams

    def __init__(self, params: RangeParams, info: ModelInfo, settings: MLSettings, path: str = "") -> None:
        super().__init__(params, info, settings, path)
        names = list(info.feature_names)
        self.low = np.full(len(names), -np.inf if params.min is None else params.min)
        self.high = np.full(len(names), np.inf if params.max is None else params.max)
        for feature, bounds in params.features.items():
            if feature not in names:
                raise InvalidArgument(f"{path}.params.features.{feature}: not a feature of this model; "
                                      f"known: {names}", field="rule_pack")
            col = names.index(feature)
            self.low[col] = -np.inf if bounds.min is None else bounds.min
            self.high[col] = np.inf if bounds.max is None else bounds.max

    def check(self, view: FeatureView) -> None:
        values = view.values
        outside = (values < self.low) | (values > self.high)
        if outside.any():
            row, col = self._first(outside)
            raise InvalidArgument(f"{self.name}: feature {view.name(col)!r} value={fmt(values[row, col])} outside "
                                  f"[{fmt(self.low[col])}, {fmt(self.high[col])}]", field=view.at(row))


class OODParams(RuleParams):
    threshold: float | None = Field(None, gt=0, description="Largest |z| accepted; default ml_ood_z_threshold.")


class OODGuard(InputRule):
    """Per-feature z-score against the training statistics stored with the artifact (feature_stats).
    Features without statistics are not checked."""

    name = "OODGuard"
    Params = OODParams

    def __init__(self, params: OODParams, info: ModelInfo, settings: MLSettings, path: str = "") -> None:
        super().__init__(params, info, settings, path)
        self.threshold = params.threshold or settings.ml_ood_z_threshold
        stats = [info.feature_stats.get(name) or {} for name in info.feature_names]
        self.mean = np.array([float(s.get("mean", 0.0)) for s in stats])
        std = np.array([float(s.get("std", 0.0)) for s in stats])
        # 1/std, and 0 where a feature has no usable statistics: its z is always 0.
        self.inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
        self.active = bool(self.inv_std.any())
        if not self.active:
            self.note = (f"{self.name}: the model records no training statistics for "
                         f"{list(info.feature_names)}; inputs are not checked for being out of distribution")

    def check(self, view: FeatureView) -> None:
        if not self.active:
            return
        z = np.abs(view.values - self.mean) * self.inv_std
        beyond = z > self.threshold
        if beyond.any():
            row, col = self._first(beyond)
            raise InvalidArgument(f"{self.name}: feature {view.name(col)!r} z={z[row, col]:.1f} exceeds "
                                  f"{float(self.threshold)}", field=view.at(row))
