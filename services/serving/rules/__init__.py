"""Inference-time rules: input guards (finite, shape, range, OOD z-score), the circuit breaker, and packs."""

from services.serving.rules.breaker import CLOSED, HALF_OPEN, OPEN, BreakerParams, CircuitBreaker
from services.serving.rules.guards import FiniteGuard, InputRule, OODGuard, RangeGuard, TensorShapeGuard
from services.serving.rules.pack import DEFAULT_PACK, RulePack, RulePackLoader, parse_rule_pack
from services.serving.rules.registry import Rule, RuleParams, RuleRegistry
from services.serving.rules.ruleset import RuleSet
from services.serving.rules.view import FeatureView, ModelInfo

__all__ = [
    "CLOSED", "DEFAULT_PACK", "HALF_OPEN", "OPEN", "BreakerParams", "CircuitBreaker", "FeatureView", "FiniteGuard",
    "InputRule", "ModelInfo", "OODGuard", "RangeGuard", "Rule", "RuleParams", "RulePack", "RulePackLoader",
    "RuleRegistry", "RuleSet", "TensorShapeGuard", "parse_rule_pack",
]
