"""AgentSpec: an agent's description, its instructions for a language model, the exact data.ml.* tools it
may call, the scopes its token needs, and a scripted plan that plays it without a model.

The tool list is the agent's whole world: a runtime (the player here, a model-driven one elsewhere)
refuses any call outside it. Loading checks what can be checked without a gateway: names, the plan's
shape and every template reference; that the tools exist is checked against a live tools/list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from services.core.auth.policy import ALL_SCOPES
from services.core.errors import InvalidArgument
from services.mesh.agent import templates

DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "configs" / "agents" / "mlops_assistant.yaml"
TOOL_PREFIX = "data.ml."

ToolName = Annotated[str, StringConstraints(pattern=r"^data\.ml\.[a-z][a-z0-9_]*$")]
StepId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanInput(_Strict):
    """A value the plan takes from whoever plays it (`--input`, `--source`); no default means required."""

    description: str = ""
    default: Any = None


class PlanStep(_Strict):
    id: StepId
    tool: str = Field(description="A tool name; refused when it is not in the spec's `tools`.")
    description: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict, description="May hold ${...} references.")


class AgentSpec(_Strict):
    name: StepId
    description: Text
    instructions: Text = Field(description="The system prompt a model-driven runtime gives the model.")
    tools: list[ToolName] = Field(min_length=1, description="Exactly the data.ml.* tools it may call.")
    scopes: list[str] = Field(default_factory=list, description="What its token must carry for those tools.")
    inputs: dict[StepId, PlanInput] = Field(default_factory=dict)
    plan: list[PlanStep] = Field(default_factory=list)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[str]) -> list[str]:
        repeated = sorted({t for t in tools if tools.count(t) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        return tools

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(ALL_SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_SCOPES))}")
        return scopes

    @model_validator(mode="after")
    def _plan_references(self) -> AgentSpec:
        # Templates are checked here, in order, so a reference to a later (or missing) step never loads.
        # Tools are not: refusing an unlisted tool is the runtime's rule, enforced before any call.
        earlier: set[str] = set()
        for index, step in enumerate(self.plan):
            if step.id in earlier:
                raise ValueError(f"plan[{index}]: step id {step.id!r} is used twice")
            templates.check(step.arguments, f"plan.{step.id}.arguments", inputs=set(self.inputs), earlier=earlier)
            earlier.add(step.id)
        return self

    def allows(self, tool: str) -> bool:
        return tool in self.tools

    def forbidden_steps(self) -> list[PlanStep]:
        return [step for step in self.plan if not self.allows(step.tool)]

    def plan_inputs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The defaults overlaid with `given`; InvalidArgument for an unknown or a missing input."""
        unknown = sorted(set(given) - set(self.inputs))
        if unknown:
            raise InvalidArgument(f"the plan takes no input {unknown[0]!r} (inputs: {', '.join(sorted(self.inputs))})",
                                  field=f"inputs.{unknown[0]}")
        values = {name: spec.default for name, spec in self.inputs.items()} | dict(given)
        missing = sorted(name for name, value in values.items() if value is None)
        if missing:
            raise InvalidArgument(f"is required: {self.inputs[missing[0]].description or 'no default'}",
                                  field=f"inputs.{missing[0]}")
        return values


def parse_spec(data: Any, origin: str = "spec") -> AgentSpec:
    """An AgentSpec from parsed YAML/JSON; InvalidArgument naming the first problem and where it is."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{origin}: an agent spec is a mapping, not {type(data).__name__}", field="spec")
    try:
        return AgentSpec.model_validate(data)
    except templates.TemplateError as exc:   # not a ValueError: pydantic lets it through as raised
        raise templates.TemplateError(f"{origin}: {exc.message}", field=exc.field) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "spec"
        raise InvalidArgument(f"{origin}: {error['msg']}", field=where) from None


def load_spec(path: Path | str = DEFAULT_SPEC) -> AgentSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}", field="spec") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path} is not valid YAML: {exc}", field="spec") from None
    return parse_spec(data, str(path))
