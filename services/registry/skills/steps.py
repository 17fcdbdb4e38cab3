"""One skill step: its arguments bound from the run's values, its model chosen, its interface called on a
serving session, and the answer shaped into the interface's output fields (interfaces.py), which is what
later steps and the skill's outputs read as `$steps.ID.FIELD`.

A step's arguments are single items, not batches: `features` is one row, so a predictor or a tabular
classifier answers one row; `texts` are many, and a classifier or analyzer over texts answers for them
together: every label's score averaged over the texts, the label the one with the highest mean, the
score (analyzer) the mean of the texts' scores and the probability (classifier) the mean of the label's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.clients.serving import ServingClient
from services.core.errors import FailedPrecondition, InvalidArgument
from services.registry.skills.bindings import Binding, InputRef, try_binding
from services.registry.skills.spec import SkillStep


@dataclass
class RunValues:
    """What references read during a run: the checked inputs and each finished step's output."""

    inputs: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def value(self, binding: Binding) -> Any:
        if isinstance(binding, InputRef):
            return self.inputs[binding.name]
        return self.outputs[binding.step][binding.field]  # the spec was checked: earlier steps, known fields

    def arguments(self, step: SkillStep) -> dict[str, Any]:
        bound = {arg: self.value(ref) for arg, ref in step.bindings().items()}
        return {**step.literals(), **bound}

    def model_ref(self, step: SkillStep) -> str:
        """The model reference as written: the step's own, or the case its selector's value picks."""
        if isinstance(step.model, str):
            return step.model
        chosen = self.value(try_binding(step.model.select))
        ref = step.model.model_for(chosen)
        if ref is None:
            cases = ", ".join(sorted(step.model.cases))
            raise FailedPrecondition(f"{step.model.select} is {chosen!r}, which has no case ({cases}) and the "
                                     "step has no default model", field="model.select")
        return ref


def _is_texts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _mean_scores(items: Sequence[Any]) -> dict[str, float]:
    labels = list(dict.fromkeys(label for item in items for label in item.scores))
    return {label: sum(item.scores.get(label, 0.0) for item in items) / len(items) for label in labels}


def _only(results: Sequence[Any], what: str) -> Any:
    if len(results) != 1:
        raise InvalidArgument(f"serving answered {len(results)} {what} for one row", field="output")
    return results[0]


def _some(results: Sequence[Any]) -> Sequence[Any]:
    if not results:
        raise InvalidArgument("serving answered nothing for the texts", field="output")
    return results


async def call_interface(client: ServingClient, session_id: str, interface: str, args: dict[str, Any]) -> dict:
    """The interface called with `args` on `session_id`, answered as {output field: plain value}."""
    if interface == "predictor":
        prediction = _only(await client.predict(session_id, [args["features"]]), "predictions")
        return {"value": prediction.value, "values": list(prediction.values)}
    if interface == "forecaster":
        return {"forecast": await client.forecast(session_id, args["history"], int(args["horizon"]))}
    if interface == "segmenter":
        result = await client.segment(session_id, args["series"])
        return {"change_points": list(result.change_points),
                "segments": [{"start": s.start, "end": s.end, "mean": s.mean, "stddev": s.stddev}
                             for s in result.segments]}
    if interface == "classifier":
        data = args["data"]
        if not _is_texts(data):
            c = _only(await client.classify(session_id, [data]), "classifications")
            return {"label": c.label, "probability": c.probability, "scores": dict(c.scores)}
        results = _some(await client.classify(session_id, data))
        scores = _mean_scores(results)
        label = max(scores, key=scores.__getitem__)
        return {"label": label, "probability": scores[label], "scores": scores}
    if interface == "analyzer":
        results = _some(await client.analyze(session_id, args["texts"]))
        scores = _mean_scores(results)
        label = max(scores, key=scores.__getitem__) if scores else results[0].label
        return {"label": label, "score": sum(a.score for a in results) / len(results), "scores": scores}
    raise InvalidArgument(f"unknown interface {interface!r}", field="interface")
