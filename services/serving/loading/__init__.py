"""Turning a model reference into a served session: parse the reference (`refs`), resolve and verify it
through the registry and the artifact toolkit (`resolver`), read its metadata (`metadata`), choose and
build the executor, in-process or Triton (`placement`, `triton_entry`), and deploy it (`deployer`)."""

from services.serving.loading.deployer import BatchingRequest, Deployer, DeploySpec, build_backend
from services.serving.loading.placement import ExecutorMode, ExecutorPlacement, TritonTarget
from services.serving.loading.refs import BUILTINS, CHANGEPOINT, ModelRef, parse_model_ref
from services.serving.loading.resolver import ModelResolver, ResolvedModel

__all__ = [
    "BUILTINS", "CHANGEPOINT", "BatchingRequest", "DeploySpec", "Deployer", "ExecutorMode", "ExecutorPlacement",
    "ModelRef", "ModelResolver", "ResolvedModel", "TritonTarget", "build_backend", "parse_model_ref",
]
