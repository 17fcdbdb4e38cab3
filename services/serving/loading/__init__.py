"""Turning a model reference into a served session: parse the reference (`refs`), resolve and verify it
through the registry and the artifact toolkit (`resolver`), read its metadata (`metadata`), choose and
build the executor, in-process or Triton (`placement`, `triton_entry`), and deploy it (`deployer`).
`snapshot_artifact` saves a transformers snapshot folder as a signed artifact that serving can deploy."""

from services.serving.loading.deployer import BatchingRequest, Deployer, DeploySpec, build_backend
from services.serving.loading.placement import ExecutorMode, ExecutorPlacement, TritonTarget
from services.serving.loading.refs import BUILTINS, CHANGEPOINT, ModelRef, parse_model_ref
from services.serving.loading.resolver import ModelResolver, ResolvedModel
from services.serving.loading.snapshot_artifact import SnapshotSaver

__all__ = [
    "BUILTINS", "CHANGEPOINT", "BatchingRequest", "DeploySpec", "Deployer", "ExecutorMode", "ExecutorPlacement",
    "ModelRef", "ModelResolver", "ResolvedModel", "SnapshotSaver", "TritonTarget", "build_backend",
    "parse_model_ref",
]
