"""KServe v2 / Open Inference Protocol on the serving port: `servicer` (inference.GRPCInferenceService),
`inference` (sessions as models: lookup, tensor inference), `signatures` (a session's tensors per
interface), `tensors` (wire <-> numpy), `describe` (model metadata, config, statistics, index)."""

from services.serving.kserve.servicer import SERVICE_NAME, InferenceServicer

__all__ = ["SERVICE_NAME", "InferenceServicer"]
