"""MLSkillSpec: a named chain of interface calls whose content hash is its version.

    name: regime_aware_alpha
    description: Classify the regime, then predict alpha with that regime's predictor.
    inputs:
      market_features: {type: features, description: ...}
    steps:
      - id: regime
        interface: classifier
        model: regime_classifier@prod          # sha256:<hex> | name@alias | name (= name@latest)
        inputs: {data: $inputs.market_features}
      - id: alpha
        interface: predictor
        model: {select: $steps.regime.label, cases: {bull: alpha_bull@prod}, default: alpha_sideways@prod}
        inputs: {features: $inputs.alpha_features}
    outputs:
      alpha: $steps.alpha.value                # or {ref: $steps.alpha.value, description: ...}

Models are strict (no coercion) and refuse unknown keys; defaults are materialised, so the canonical form
(see canonical.py) never depends on whether an author spelled a default out. A spec that validates is
fully wired: checks.py runs inside validation, so no MLSkillSpec instance exists with a dangling reference.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from services.core.errors import InvalidArgument
from services.registry.skills import checks
from services.registry.skills.bindings import IDENTIFIER, SKILL_NAME, Binding, StepRef, try_binding
from services.registry.skills.document import DOCUMENT_FIELD, load_document, plain_data
from services.registry.skills.interfaces import InputType, InterfaceKind
from services.registry.skills.invalid import to_invalid_argument
from services.registry.skills.references import normalize_model_ref

MAX_SPEC_BYTES = 64 * 1024

Name = Annotated[str, StringConstraints(pattern=f"^{SKILL_NAME}$")]
Identifier = Annotated[str, StringConstraints(pattern=f"^{IDENTIFIER}$")]
# Stripped, so a folded block (`>`) and a quoted string with the same words are the same content.
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
CaseLabel = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ModelRefText = Annotated[str, AfterValidator(normalize_model_ref)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputSpec(_Strict):
    type: InputType
    description: Description = ""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}  # `prices: series`
        if not isinstance(data, dict | cls):
            raise ValueError("expected an input type (e.g. series) or a mapping {type, description}")
        return data


class ModelSelect(_Strict):
    """Chooses a step's model by the value of a string reference (a classifier's label, a string input)."""

    select: str
    cases: dict[CaseLabel, ModelRefText] = Field(min_length=1)
    default: ModelRefText | None = None  # None: a value with no case fails the run

    def model_for(self, value: str) -> str | None:
        return self.cases.get(value, self.default)


def _model_form(value: Any) -> str:
    return "select" if isinstance(value, dict | ModelSelect) else "ref"


class SkillStep(_Strict):
    id: Identifier
    interface: InterfaceKind
    description: Description = ""
    model: Annotated[
        Annotated[ModelRefText, Tag("ref")] | Annotated[ModelSelect, Tag("select")], Discriminator(_model_form)
    ]
    # Argument name -> reference string or literal; checks.py validates both and canonicalises literals.
    inputs: dict[str, Any] = {}

    def bindings(self) -> dict[str, Binding]:
        """Argument name -> the reference it takes its value from (literal arguments are left out)."""
        return {arg: b for arg, value in self.inputs.items() if (b := try_binding(value)) is not None}

    def literals(self) -> dict[str, Any]:
        return {arg: value for arg, value in self.inputs.items() if try_binding(value) is None}

    def dependencies(self) -> list[str]:
        """Ids of the steps this one reads from, the model selector included, in order of first use."""
        refs = list(self.bindings().values())
        if isinstance(self.model, ModelSelect):
            refs.insert(0, try_binding(self.model.select))
        return list(dict.fromkeys(r.step for r in refs if isinstance(r, StepRef)))


class SkillOutput(_Strict):
    ref: str
    description: Description = ""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"ref": data}
        if not isinstance(data, dict | cls):
            raise ValueError("expected a reference like '$steps.ID.FIELD' or a mapping {ref, description}")
        return data

    @property
    def binding(self) -> Binding | None:
        return try_binding(self.ref)


class MLSkillSpec(_Strict):
    name: Name
    description: Description = ""
    inputs: dict[Identifier, InputSpec] = {}
    steps: list[SkillStep] = Field(min_length=1)
    outputs: dict[Identifier, SkillOutput] = Field(min_length=1)

    @model_validator(mode="after")
    def _wired(self) -> MLSkillSpec:
        checks.check_spec(self)  # raises InvalidArgument with the exact path
        return self

    def step(self, step_id: str) -> SkillStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def dependency_levels(self) -> list[list[str]]:
        """Step ids in waves: each step's dependencies all lie in earlier waves, so a wave may run concurrently."""
        level: dict[str, int] = {}
        for step in self.steps:  # steps only read earlier steps (checked), so one pass in order suffices
            level[step.id] = 1 + max((level[d] for d in step.dependencies()), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for step in self.steps:
            waves[level[step.id]].append(step.id)
        return waves


_MODELS_AT = {(): MLSkillSpec, ("inputs", "*"): InputSpec, ("steps", "#"): SkillStep}
_MODELS_AT |= {("steps", "#", "model"): ModelSelect, ("outputs", "*"): SkillOutput}


def _fields_at(loc: tuple) -> list[str]:
    shape = tuple("#" if isinstance(p, int) else "*" if i == 1 and loc[0] != "steps" else p for i, p in enumerate(loc))
    model = _MODELS_AT.get(shape)
    return list(model.model_fields) if model else []


def spec_from_data(data: Any) -> MLSkillSpec:
    """An MLSkillSpec from already parsed data (a dict); InvalidArgument naming the field at fault."""
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise InvalidArgument(f"a skill spec is a mapping (name, steps, outputs, ...), got {kind}", field=DOCUMENT_FIELD)
    data = plain_data(data)  # data that did not come through load_document gets the same checks
    try:
        return MLSkillSpec.model_validate(data)
    except ValidationError as exc:
        raise to_invalid_argument(exc, _fields_at) from None


def parse_skill_spec(text: str, *, max_bytes: int = MAX_SPEC_BYTES) -> MLSkillSpec:
    """Parses and validates a skill spec written as YAML or JSON; every problem is an InvalidArgument."""
    return spec_from_data(load_document(text, max_bytes=max_bytes))
