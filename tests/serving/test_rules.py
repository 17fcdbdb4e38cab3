"""Rules: finite, shape, range and OOD guards; the circuit breaker; rule packs and their validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from services.serving.rules import (
    CircuitBreaker,
    FeatureView,
    ModelInfo,
    RulePackLoader,
    RuleRegistry,
    parse_rule_pack,
)
from services.serving.rules.breaker import BreakerParams

NAMES = ("return_1d", "momentum", "rsi_14")
STATS = {"return_1d": {"mean": 0.0, "std": 0.01}, "momentum": {"mean": 0.0, "std": 1.0}}
INFO = ModelInfo(NAMES, STATS, 3)
REPO_PACKS = Path(__file__).resolve().parents[2] / "configs" / "rules"


def ruleset(settings, rules: list[dict] | None = None, *, clock=None):
    pack = parse_rule_pack({"rules": rules or []}, "test.yaml")
    return pack.bind(INFO, settings, **({"clock": clock} if clock else {}))


def view(*rows) -> FeatureView:
    return FeatureView(np.asarray(rows, dtype=np.float64), NAMES, "rows")


def test_the_registry_knows_every_rule_by_its_declared_name():
    assert {"FiniteGuard", "TensorShapeGuard", "RangeGuard", "OODGuard", "CircuitBreaker"} <= set(RuleRegistry.names())
    with pytest.raises(NotFound):
        RuleRegistry.get("NoSuchGuard")


def test_ood_guard_names_rule_feature_and_z(settings):
    rules = ruleset(settings, [{"rule": "OODGuard"}])
    rules.check(view([0.01, 2.0, 1e6]))  # rsi_14 has no statistics: not checked
    with pytest.raises(InvalidArgument) as err:
        rules.check(view([0.0, 0.0, 50.0], [0.0, 9.3, 50.0]))
    assert err.value.message == "OODGuard: feature 'momentum' z=9.3 exceeds 6.0"
    assert err.value.field == "rows[1]"
    assert rules.trips == {"OODGuard": 1}
    strict = ruleset(settings, [{"rule": "OODGuard", "params": {"threshold": 2.5}}])
    with pytest.raises(InvalidArgument, match="z=3.0 exceeds 2.5"):
        strict.check(view([0.03, 0.0, 0.0]))


def test_range_guard_for_all_features_and_per_feature(settings):
    rules = ruleset(settings, [{"rule": "RangeGuard",
                                "params": {"min": -10, "max": 10, "features": {"rsi_14": {"min": 0, "max": 100}}}}])
    rules.check(view([1.0, -5.0, 99.0]))
    with pytest.raises(InvalidArgument, match=r"RangeGuard: feature 'rsi_14' value=120 outside \[0, 100\]"):
        rules.check(view([1.0, 1.0, 120.0]))
    with pytest.raises(InvalidArgument, match=r"feature 'momentum' value=-11 outside \[-10, 10\]"):
        rules.check(view([1.0, -11.0, 50.0]))
    with pytest.raises(InvalidArgument, match=r"rules\[0\].params.features.nope: not a feature"):
        ruleset(settings, [{"rule": "RangeGuard", "params": {"features": {"nope": {"max": 1}}}}])


def test_shape_guard_always_runs_and_takes_parameters(settings):
    rules = ruleset(settings)
    with pytest.raises(InvalidArgument, match="TensorShapeGuard: expected 3 features per row, got 2"):
        rules.check(FeatureView(np.zeros((1, 2)), NAMES, "rows"))
    capped = ruleset(settings, [{"rule": "TensorShapeGuard", "params": {"max_rows": 2}}])
    with pytest.raises(InvalidArgument, match="expected at most 2 rows, got 3"):
        capped.check(view([0, 0, 0], [0, 0, 0], [0, 0, 0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_first_whatever_the_pack(settings, bad):
    rules = ruleset(settings, [{"rule": "RangeGuard", "params": {"min": -1e300}}])
    with pytest.raises(InvalidArgument, match=f"FiniteGuard: feature 'momentum' value={bad} is not finite"):
        rules.check(view([0.0, 0.0, 0.0], [0.0, bad, 0.0]))
    assert rules.trips == {"FiniteGuard": 1}
    assert [r.name for r in rules.input_rules][:2] == ["FiniteGuard", "TensorShapeGuard"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_breaker_trips_half_opens_one_probe_closes_and_reopens():
    clock = Clock()
    breaker = CircuitBreaker(BreakerParams(max_failures=3, window_seconds=10, cooldown_seconds=5), clock=clock)
    for _ in range(2):
        breaker.record(False)
    clock.now += 11  # those two fall out of the window
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == "closed" and breaker.admit() is False
    breaker.record(False)
    assert breaker.state == "open"
    with pytest.raises(FailedPrecondition, match="CircuitBreaker: open after 3 executor failures in 10s"):
        breaker.admit()
    clock.now += 5
    assert breaker.state == "half_open"
    assert breaker.admit() is True  # the one probe
    with pytest.raises(FailedPrecondition, match="probe"):
        breaker.admit()
    breaker.record(False)  # the probe failed: open again, for a fresh cool-down
    assert breaker.state == "open"
    clock.now += 5
    assert breaker.admit() is True
    breaker.record(True)
    assert breaker.state == "closed" and breaker.admit() is False
    for _ in range(3):
        breaker.record(False)
    assert breaker.state == "open"
    breaker.reset()
    assert breaker.state == "closed"


def test_breaker_probe_that_never_ran_is_released():
    clock = Clock()
    breaker = CircuitBreaker(BreakerParams(max_failures=1, cooldown_seconds=1), clock=clock)
    breaker.record(False)
    clock.now += 1
    assert breaker.admit() is True
    breaker.release_probe()  # e.g. the probe was refused by a full queue
    assert breaker.admit() is True


def test_breaker_refusals_count_as_its_trips(settings):
    clock = Clock()
    rules = ruleset(settings, [{"rule": "CircuitBreaker", "params": {"max_failures": 1}}], clock=clock)
    rules.record(False)
    with pytest.raises(FailedPrecondition):
        rules.admit()
    assert rules.trips == {"CircuitBreaker": 1} and rules.breaker_state == "open"


def test_the_default_pack_loads_and_binds(settings):
    pack = RulePackLoader(REPO_PACKS).load()
    assert pack.name == "ood_default"
    rules = pack.bind(INFO, settings)
    assert [r.name for r in rules.input_rules] == ["FiniteGuard", "TensorShapeGuard", "OODGuard"]
    assert rules.breaker is not None and rules.breaker.params.max_failures == 5


@pytest.mark.parametrize("document, path", [
    ({"rules": [{"rule": "OODGuard"}, {"rule": "MagicGuard"}]}, r"rules\[1\].rule: unknown rule 'MagicGuard'"),
    ({"rules": [{"rule": "OODGuard", "params": {"treshold": 3}}]}, r"rules\[0\].params.treshold: unknown parameter"),
    ({"rules": [{"rule": "CircuitBreaker", "params": {"max_failures": 0}}]}, r"rules\[0\].params.max_failures"),
    ({"rules": [{"rule": "OODGuard", "when": "always"}]}, r"rules\[0\].when: unknown key"),
    ({"rules": [{"rule": "OODGuard"}, {"rule": "OODGuard"}]}, r"rules\[1\].rule: OODGuard is listed twice"),
    ({"rulez": []}, r"rulez: unknown key"),
    ({"rules": [{"rule": "RangeGuard"}]}, r"rules\[0\].params: .*give min, max or features"),
])
def test_packs_are_validated_strictly_naming_the_path(tmp_path, document, path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(InvalidArgument, match=f"bad.yaml: {path}") as err:
        RulePackLoader(tmp_path).load("bad")
    assert err.value.field == "rule_pack"


def test_pack_names_stay_inside_the_folder(tmp_path):
    with pytest.raises(InvalidArgument):
        RulePackLoader(tmp_path).load("../secrets")
    with pytest.raises(NotFound):
        RulePackLoader(tmp_path).load("absent")
