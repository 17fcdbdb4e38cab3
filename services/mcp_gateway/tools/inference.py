"""The five typed interfaces: data.ml.predict / forecast / classify / segment / analyze -> Serving RPCs."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth import policy
from services.mcp_gateway import convert
from services.mcp_gateway.catalog import PREFIX, READ_ONLY, Args, Result, ToolCall, ToolSpec

_MAX_ROWS = 10_000
SessionId = Annotated[str, Field(min_length=1, max_length=200, description="A READY serving session (data.ml.serve).")]
Row = list[float] | dict[str, float]
Rows = Annotated[list[Row], Field(max_length=_MAX_ROWS, description=(
    "Feature rows: each a list in the model's feature order, or an object of feature name -> value."))]
Priority = Annotated[int, Field(0, ge=-1000, le=1000, description="Higher runs first; 0 is normal.")]


class Meta(Result):
    session_id: str
    artifact_id: str
    batch_size: int = Field(description="Size of the batch this request ran in.")
    queue_ms: float
    compute_ms: float


def _rows(rows: list[Row]) -> list[serving_pb2.FeatureRow]:
    return [serving_pb2.FeatureRow(named=r) if isinstance(r, dict) else serving_pb2.FeatureRow(values=r) for r in rows]


def _options(priority: int) -> serving_pb2.RequestOptions:
    return serving_pb2.RequestOptions(priority=priority)


class PredictArgs(Args):
    session_id: SessionId
    rows: Annotated[Rows, Field(min_length=1)]
    priority: Priority = 0


class PredictResult(Result):
    predictions: list[list[float]] = Field(description="One list of outputs per row, in row order.")
    meta: Meta


async def predict(call: ToolCall, a: PredictArgs) -> dict:
    stub = call.stub(serving_pb2_grpc.ServingStub)
    reply = await call.unary(stub.Predict, serving_pb2.PredictRequest(
        session_id=a.session_id, rows=_rows(a.rows), options=_options(a.priority)))
    return {"predictions": [list(p.values) for p in reply.predictions], "meta": convert.meta(reply.meta)}


class ForecastArgs(Args):
    session_id: SessionId
    history: Annotated[list[float], Field(min_length=1, max_length=1_000_000, description="Oldest first.")]
    horizon: Annotated[int, Field(ge=1, le=100_000, description="Steps to forecast.")]
    priority: Priority = 0


class ForecastResult(Result):
    forecast: list[float]
    meta: Meta


async def forecast(call: ToolCall, a: ForecastArgs) -> dict:
    stub = call.stub(serving_pb2_grpc.ServingStub)
    reply = await call.unary(stub.Forecast, serving_pb2.ForecastRequest(
        session_id=a.session_id, history=a.history, horizon=a.horizon, options=_options(a.priority)))
    return {"forecast": list(reply.forecast), "meta": convert.meta(reply.meta)}


class ClassifyArgs(Args):
    session_id: SessionId
    rows: Rows = []
    texts: Annotated[list[str], Field(max_length=_MAX_ROWS, description="Texts, for text classifiers.")] = []
    priority: Priority = 0

    @model_validator(mode="after")
    def _one_input(self) -> "ClassifyArgs":
        if bool(self.rows) == bool(self.texts):
            raise ValueError("give either rows or texts (one of them, not empty)")
        return self


class ClassScore(Result):
    label: str
    probability: float


class Classification(Result):
    label: str
    probability: float
    scores: list[ClassScore]


class ClassifyResult(Result):
    classifications: list[Classification]
    meta: Meta


async def classify(call: ToolCall, a: ClassifyArgs) -> dict:
    stub = call.stub(serving_pb2_grpc.ServingStub)
    reply = await call.unary(stub.Classify, serving_pb2.ClassifyRequest(
        session_id=a.session_id, rows=_rows(a.rows), texts=a.texts, options=_options(a.priority)))
    return {"classifications": [
        {"label": c.label, "probability": c.probability,
         "scores": [{"label": s.label, "probability": s.probability} for s in c.scores]}
        for c in reply.classifications], "meta": convert.meta(reply.meta)}


class SegmentArgs(Args):
    session_id: SessionId
    series: Annotated[list[float], Field(min_length=2, max_length=1_000_000)]
    priority: Priority = 0


class Segment(Result):
    start: int = Field(description="Inclusive index.")
    end: int = Field(description="Exclusive index.")
    mean: float
    stddev: float


class SegmentResult(Result):
    change_points: list[int]
    segments: list[Segment]
    meta: Meta


async def segment(call: ToolCall, a: SegmentArgs) -> dict:
    stub = call.stub(serving_pb2_grpc.ServingStub)
    reply = await call.unary(stub.Segment, serving_pb2.SegmentRequest(
        session_id=a.session_id, series=a.series, options=_options(a.priority)))
    return {"change_points": [int(c) for c in reply.change_points],
            "segments": [{"start": int(s.start), "end": int(s.end), "mean": s.mean, "stddev": s.stddev}
                         for s in reply.segments], "meta": convert.meta(reply.meta)}


class AnalyzeArgs(Args):
    session_id: SessionId
    texts: Annotated[list[str], Field(min_length=1, max_length=_MAX_ROWS)]
    priority: Priority = 0


class Analysis(Result):
    label: str
    score: float = Field(description="Signed sentiment in [-1, 1], or the label's probability.")
    scores: dict[str, float]


class AnalyzeResult(Result):
    analyses: list[Analysis]
    meta: Meta


async def analyze(call: ToolCall, a: AnalyzeArgs) -> dict:
    stub = call.stub(serving_pb2_grpc.ServingStub)
    reply = await call.unary(stub.Analyze, serving_pb2.AnalyzeRequest(
        session_id=a.session_id, texts=a.texts, options=_options(a.priority)))
    return {"analyses": [{"label": x.label, "score": x.score, "scores": dict(x.scores)} for x in reply.analyses],
            "meta": convert.meta(reply.meta)}


def _spec(verb: str, title: str, description: str, args: type[Args], result: type[Result], run) -> ToolSpec:
    # Inference changes nothing the agent can observe (beyond counters), so it is read-only and idempotent.
    return ToolSpec(name=PREFIX + verb, title=title, description=description, scope=policy.SERVING_INFER,
                    service="serving", backend_scopes=(policy.SERVING_INFER,), args=args, result=result,
                    annotations=READ_ONLY, run=run)


TOOLS = [
    _spec("predict", "Predict", "Run a predictor session on feature rows; one output list per row.",
          PredictArgs, PredictResult, predict),
    _spec("forecast", "Forecast", "Forecast `horizon` steps of a series with a forecaster session.",
          ForecastArgs, ForecastResult, forecast),
    _spec("classify", "Classify", "Classify feature rows or texts with a classifier session.",
          ClassifyArgs, ClassifyResult, classify),
    _spec("segment", "Segment", "Find change points and regimes in a series with a segmenter session.",
          SegmentArgs, SegmentResult, segment),
    _spec("analyze", "Analyze", "Analyze texts (e.g. sentiment) with an analyzer session.",
          AnalyzeArgs, AnalyzeResult, analyze),
]
