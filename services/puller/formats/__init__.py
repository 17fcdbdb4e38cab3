"""Inspecting, checking and converting a user's pushed model files (docs/byom.md).

`inspect_model` (blocking) decides what a pushed folder holds and answers the manifest's framework,
format and metadata, or refuses naming the field at fault; `run_isolated` runs it in a throw-away
subprocess with memory and CPU limits, which is how the puller calls it. Heavy libraries (onnx,
onnxruntime, xgboost, lightgbm, torch) are imported only when a model needs them.
"""

from services.puller.formats.inspector import inspect_model
from services.puller.formats.isolated import run_isolated
from services.puller.formats.options import ImportedModel, ImportOptions

__all__ = ["ImportOptions", "ImportedModel", "inspect_model", "run_isolated"]
