"""RuleSet: the rules of one session, bound to its model, with trips counted per rule."""

from __future__ import annotations

from services.core.errors import MLMeshError
from services.serving.rules.breaker import CircuitBreaker
from services.serving.rules.guards import InputRule
from services.serving.rules.view import FeatureView


class RuleSet:
    def __init__(self, input_rules: list[InputRule], breaker: CircuitBreaker | None = None, pack: str = "") -> None:
        self.input_rules = input_rules
        self.breaker = breaker
        self.pack = pack
        self.trips: dict[str, int] = {}

    def check(self, view: FeatureView | None) -> None:
        """Runs every input rule in order; the first violation is counted and raised."""
        if view is None:
            return
        rule = None
        try:
            for rule in self.input_rules:
                rule.check(view)
        except MLMeshError:
            self.trips[rule.name] = self.trips.get(rule.name, 0) + 1
            raise

    def admit(self) -> bool:
        """The breaker's admission (True for the half-open probe); a refusal counts as its trip."""
        breaker = self.breaker
        if breaker is None:
            return False
        try:
            return breaker.admit()
        except MLMeshError:
            self.trips[breaker.name] = self.trips.get(breaker.name, 0) + 1
            raise

    def record(self, ok: bool) -> None:
        if self.breaker is not None:
            self.breaker.record(ok)

    @property
    def notes(self) -> tuple[str, ...]:
        """What the rules cannot check for this model (e.g. an OODGuard without statistics)."""
        return tuple(rule.note for rule in self.input_rules if getattr(rule, "note", ""))

    @property
    def breaker_state(self) -> str | None:
        return None if self.breaker is None else self.breaker.state
