"""What a push asks of the inspector (`ImportOptions`) and what it answers (`ImportedModel`).

Both cross a process boundary (the inspector runs in a throw-away subprocess), so each has a plain-JSON
form here, in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from services.core.errors import InvalidArgument

FORMATS = ("auto", "onnx", "xgboost", "lightgbm", "safetensors", "hf")
INTERFACES = ("", "predictor", "classifier", "forecaster", "segmenter", "analyzer")

Progress = Callable[[str, str], None]


def no_progress(stage: str, message: str) -> None:
    """The default progress sink: nothing is reported."""


@dataclass(frozen=True)
class ImportOptions:
    format: str = "auto"              # auto|onnx|xgboost|lightgbm|safetensors|hf
    interface: str = ""               # "" = decided from the signature
    feature_names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    window: int = 0
    allow_pickle: bool = False
    reference: str = ""               # absolute path of a .csv / .parquet sample; "" = none

    def __post_init__(self) -> None:
        # Tuples whatever the caller passed (lists from JSON), so the options stay hashable and frozen.
        object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))
        object.__setattr__(self, "labels", tuple(str(n) for n in self.labels))

    def check(self) -> None:
        """Refuse options that are wrong whatever the model is."""
        if self.format not in FORMATS:
            raise InvalidArgument(f"unknown format {self.format!r}; one of {list(FORMATS)}", field="format")
        if self.interface not in INTERFACES:
            raise InvalidArgument(f"unknown interface {self.interface!r}; one of {list(INTERFACES[1:])}",
                                  field="interface")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 0:
            raise InvalidArgument("must be a positive number of values (0: from the model)", field="window")
        for what, names in (("feature_names", self.feature_names), ("labels", self.labels)):
            if any(not n for n in names):
                raise InvalidArgument("names must not be empty", field=what)
            if len(set(names)) != len(names):
                raise InvalidArgument("names must be unique", field=what)
        if self.reference and not self.reference.startswith("/"):
            raise InvalidArgument("must be an absolute path", field="reference")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ImportOptions":
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"options are not valid: {exc}", field="options") from None


@dataclass(frozen=True)
class ImportedModel:
    framework: str        # manifest framework: onnx | xgboost | lightgbm | torch | transformers
    format: str           # manifest format: onnx | xgboost-ubj | xgboost-json | lightgbm-text | safetensors
    metadata: dict[str, Any] = field(default_factory=dict)  # the docs/byom.md metadata

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "format": self.format, "metadata": self.metadata}
