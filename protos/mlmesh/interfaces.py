"""The five interfaces over a serving session: `Predictor.predict`, `Classifier.classify`,
`Forecaster.forecast`, `Segmenter.segment`, `Analyzer.analyze`, each returning typed results.

Inference calls are idempotent (they change nothing), so they are retried on UNAVAILABLE within their
deadline; a halted session keeps answering UNAVAILABLE and the call fails with `Unavailable` at its end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlmesh.calls import call
from mlmesh.results import Analysis, Classification, Forecast, Prediction, Segment, Segmentation
from mlmesh.v1 import serving_pb2

if TYPE_CHECKING:
    from mlmesh.mesh import Mesh

INFER_TIMEOUT_S = 10.0


def _rows(rows: Any) -> list[serving_pb2.FeatureRow]:
    """Rows as lists of numbers (in the model's feature order) or mappings of feature name -> value;
    numpy arrays and pandas frames work too (anything with `tolist` / `to_dict("records")`)."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    elif hasattr(rows, "tolist"):
        rows = rows.tolist()
    if isinstance(rows, Mapping) or (isinstance(rows, Sequence) and rows and isinstance(rows[0], (int, float))):
        rows = [rows]  # one row
    out = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(serving_pb2.FeatureRow(named={str(k): float(v) for k, v in row.items()}))
        else:
            out.append(serving_pb2.FeatureRow(values=[float(v) for v in row]))
    return out


# Envoy sends a call carrying this header to the serving replica it names (sessions live on one replica).
REPLICA_HEADER = "x-mlmesh-replica"


class _Session:
    def __init__(self, mesh: "Mesh", session_id: str, timeout_s: float, replica: str = "") -> None:
        self.mesh = mesh
        self.session_id = session_id
        self.timeout_s = timeout_s
        self.replica = replica   # "serving@host:port" when known: calls through Envoy go to that replica
        self._metadata = mesh.metadata("serving") + (((REPLICA_HEADER, replica),) if replica else ())

    def _infer(self, method: str, request: Any, timeout_s: float | None) -> Any:
        stub = self.mesh.stub("serving")
        return call(getattr(stub, method), request, metadata=self._metadata, timeout_s=timeout_s or self.timeout_s,
                    idempotent=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r})"


class Predictor(_Session):
    def predict(self, rows: Any, *, timeout_s: float | None = None) -> list[Prediction]:
        reply = self._infer("Predict", serving_pb2.PredictRequest(session_id=self.session_id, rows=_rows(rows)),
                            timeout_s)
        return [Prediction(tuple(p.values)) for p in reply.predictions]


class Classifier(_Session):
    def classify(self, data: Any, *, timeout_s: float | None = None) -> list[Classification]:
        """Feature rows, or texts (a string or a list of strings) for text classifiers."""
        request = serving_pb2.ClassifyRequest(session_id=self.session_id)
        if isinstance(data, str) or (isinstance(data, Sequence) and data and isinstance(data[0], str)):
            request.texts.extend([data] if isinstance(data, str) else list(data))
        else:
            request.rows.extend(_rows(data))
        reply = self._infer("Classify", request, timeout_s)
        return [Classification(c.label, c.probability, {s.label: s.probability for s in c.scores})
                for c in reply.classifications]


class Forecaster(_Session):
    def forecast(self, history: Sequence[float], horizon: int, *, timeout_s: float | None = None) -> Forecast:
        request = serving_pb2.ForecastRequest(session_id=self.session_id, history=[float(v) for v in history],
                                              horizon=horizon)
        return Forecast(tuple(self._infer("Forecast", request, timeout_s).forecast))


class Segmenter(_Session):
    def segment(self, series: Sequence[float], *, timeout_s: float | None = None) -> Segmentation:
        request = serving_pb2.SegmentRequest(session_id=self.session_id, series=[float(v) for v in series])
        reply = self._infer("Segment", request, timeout_s)
        return Segmentation(tuple(reply.change_points),
                            tuple(Segment(s.start, s.end, s.mean, s.stddev) for s in reply.segments))


class Analyzer(_Session):
    def analyze(self, texts: str | Sequence[str], *, timeout_s: float | None = None) -> list[Analysis]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        reply = self._infer("Analyze", serving_pb2.AnalyzeRequest(session_id=self.session_id, texts=texts), timeout_s)
        return [Analysis(a.label, a.score, dict(a.scores)) for a in reply.analyses]
