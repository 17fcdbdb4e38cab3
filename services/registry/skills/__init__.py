"""Skills: hash-locked MLSkillSpec documents that chain the five agent-facing interfaces.

Pure domain code: parsing, validation, canonical form and model references. Storage lives in catalog.py.
"""

from services.registry.skills.canonical import canonical_data, canonical_json, version_id
from services.registry.skills.references import ModelRef, model_references, parse_model_ref
from services.registry.skills.spec import (
    InputSpec,
    MLSkillSpec,
    ModelSelect,
    SkillOutput,
    SkillStep,
    parse_skill_spec,
    spec_from_data,
)

__all__ = [
    "InputSpec",
    "MLSkillSpec",
    "ModelRef",
    "ModelSelect",
    "SkillOutput",
    "SkillStep",
    "canonical_data",
    "canonical_json",
    "model_references",
    "parse_model_ref",
    "parse_skill_spec",
    "spec_from_data",
    "version_id",
]
