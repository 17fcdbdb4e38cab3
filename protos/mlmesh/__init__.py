"""mlmesh: the Python client other services import (and, in `mlmesh.v1`, the generated gRPC stubs).

    import mlmesh
    mesh = mlmesh.Mesh("127.0.0.1:8080", token)
    mesh.push("model.onnx", name="churn", aliases=["prod"])
    mesh.predictor("churn@prod").predict([[0.1, 0.2, 0.3]])

It imports none of the mesh's services: grpc, protobuf and the stubs beside it.
"""

from mlmesh.errors import (AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, MeshError, NotFound,
                           OperationFailed, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable)
from mlmesh.interfaces import Analyzer, Classifier, Forecaster, Predictor, Segmenter
from mlmesh.mesh import Mesh
from mlmesh.results import Analysis, Artifact, Classification, Forecast, Prediction, Segment, Segmentation

__all__ = [
    "AlreadyExists", "Analysis", "Analyzer", "Artifact", "Classification", "Classifier", "DeadlineExceeded",
    "FailedPrecondition", "Forecast", "Forecaster", "InvalidArgument", "Mesh", "MeshError", "NotFound",
    "OperationFailed", "PermissionDenied", "Prediction", "Predictor", "ResourceExhausted", "Segment", "Segmentation",
    "Segmenter", "Unauthenticated", "Unavailable",
]
