"""The wiring checks of a skill spec: what pydantic's per-field validation cannot see.

Each problem is raised as InvalidArgument with the path of the exact value at fault. Steps are checked in
document order and may read only earlier steps, so the order written is a valid execution order and a
cycle can only show up as a reference forward (the message then spells the cycle out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.core.errors import InvalidArgument
from services.registry.skills.bindings import InputRef, StepRef, is_reference, parse_binding, try_binding
from services.registry.skills.interfaces import INTERFACES, coerce_literal, describe
from services.registry.skills.invalid import join

if TYPE_CHECKING:
    from services.registry.skills.spec import MLSkillSpec, SkillStep


class _Wiring:
    def __init__(self, spec: MLSkillSpec) -> None:
        self.spec = spec
        self.position: dict[str, int] = {}
        self.used_inputs: set[str] = set()
        for i, step in enumerate(spec.steps):
            if step.id in self.position:
                first = self.position[step.id]
                raise InvalidArgument(
                    f"duplicate step id {step.id!r} (also steps[{first}].id)", field=f"steps[{i}].id"
                )
            self.position[step.id] = i

    def value_type(self, text: str, at: int, path: str) -> str:
        """The value type `text` refers to, read from position `at` (len(steps) for outputs)."""
        try:
            ref = parse_binding(text)
        except ValueError as exc:
            raise InvalidArgument(str(exc), field=path) from None
        if isinstance(ref, InputRef):
            if ref.name not in self.spec.inputs:
                declared = ", ".join(self.spec.inputs) or "none are declared"
                raise InvalidArgument(f"unknown input {ref.name!r}; inputs: {declared}", field=path)
            self.used_inputs.add(ref.name)
            return self.spec.inputs[ref.name].type
        return self._step_output(ref, at, path)

    def _step_output(self, ref: StepRef, at: int, path: str) -> str:
        target = self.position.get(ref.step)
        if target is None:
            raise InvalidArgument(f"unknown step {ref.step!r}; steps: {', '.join(self.position)}", field=path)
        if target == at:
            raise InvalidArgument(f"step {ref.step!r} cannot use its own output", field=path)
        if target > at:
            cycle = self._cycle(ref.step, self.spec.steps[at].id)
            why = f"; this forms a cycle: {' -> '.join(cycle)}" if cycle else ""
            raise InvalidArgument(
                f"step {ref.step!r} comes later (steps[{target}]); a step may use only earlier steps' outputs{why}",
                field=path,
            )
        kind = self.spec.steps[target].interface
        outputs = INTERFACES[kind].outputs
        if ref.field not in outputs:
            raise InvalidArgument(
                f"step {ref.step!r} is a {kind}, which has no output {ref.field!r}; its outputs: {', '.join(outputs)}",
                field=path,
            )
        return outputs[ref.field]

    def _cycle(self, start: str, back_to: str) -> list[str] | None:
        """A chain back_to -> start -> ... -> back_to through the steps' references, if there is one."""
        reads = {s.id: _reads(s) for s in self.spec.steps}
        trail: dict[str, str | None] = {start: None}
        queue = [start]
        while queue:
            current = queue.pop(0)
            for dep in reads.get(current, ()):
                if dep == back_to:
                    chain = [current]
                    while (prev := trail[chain[-1]]) is not None:
                        chain.append(prev)
                    return [back_to, *reversed(chain), back_to]
                if dep not in trail:
                    trail[dep] = current
                    queue.append(dep)
        return None


def _reads(step: SkillStep) -> list[str]:
    """Step ids a step refers to, malformed references ignored (they are reported where they stand)."""
    values = list(step.inputs.values())
    if not isinstance(step.model, str):
        values.append(step.model.select)
    return [b.step for v in values if isinstance(b := try_binding(v), StepRef)]


def check_spec(spec: MLSkillSpec) -> None:
    """Raises InvalidArgument at the first wiring problem; canonicalises literal arguments in place."""
    wiring = _Wiring(spec)
    for i, step in enumerate(spec.steps):
        base = f"steps[{i}]"
        shape = INTERFACES[step.interface]
        if not isinstance(step.model, str):
            path = f"{base}.model.select"
            if not is_reference(step.model.select):
                raise InvalidArgument("must be a reference like '$steps.ID.label' or '$inputs.NAME'", field=path)
            got = wiring.value_type(step.model.select, i, path)
            if got != "string":
                raise InvalidArgument(f"a model is selected by a string, but this is {describe(got)}", field=path)
        for arg, value in step.inputs.items():
            path = join(f"{base}.inputs", arg)
            argument = shape.arguments.get(arg)
            if argument is None:
                valid = ", ".join(shape.arguments)
                raise InvalidArgument(f"unknown argument {arg!r} for a {step.interface}; its arguments: {valid}", field=path)
            if is_reference(value):
                got = wiring.value_type(value, i, path)
                if got not in argument.accepts:
                    raise InvalidArgument(
                        f"{arg!r} takes {describe(argument.accepts)}, but {value} is {describe(got)}", field=path
                    )
                continue
            try:
                step.inputs[arg] = coerce_literal(value, argument)  # the dict is ours: pydantic copied it
            except ValueError as exc:
                raise InvalidArgument(str(exc), field=path) from None
        for arg in shape.arguments:
            if arg not in step.inputs:
                raise InvalidArgument(f"a {step.interface} needs the argument {arg!r}", field=join(f"{base}.inputs", arg))
    for name, output in spec.outputs.items():
        wiring.value_type(output.ref, len(spec.steps), join("outputs", name))
    for name in spec.inputs:
        if name not in wiring.used_inputs:
            raise InvalidArgument(f"input {name!r} is declared but nothing uses it", field=join("inputs", name))
