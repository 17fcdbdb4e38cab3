"""What a compile that goes wrong says: the exporter's reason (not its stack trace), and validation
failing over tolerance, or warning when asked to."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from services.compiler.signature import signature_for
from services.compiler.validation import ValidationPolicy
from services.core.errors import FailedPrecondition
from tests.compiler.conftest import DataDependent


def centred(model):
    """The model with inputs drawn around 0 (no training stats), so batches fall on both branches."""
    return dataclasses.replace(model, signature=signature_for({"architecture": model.architecture}))


@pytest.mark.parametrize("target", ["onnx", "int8"])
def test_failed_export_gives_the_exporters_reason(models, compile_model, target):
    with pytest.raises(FailedPrecondition) as err:
        compile_model(models["mlp"], target, module=DataDependent().eval())
    message = err.value.message
    assert "export failed: GuardOnDataDependentSymNode" in message
    assert "`if x.sum() > 0:`" in message  # the model line it stopped at
    assert "Traceback" not in message and "File \"" not in message and len(message) < 800
    assert err.value.field == "artifact"


def test_validation_catches_what_a_trace_froze(models, compile_model):
    """torch.jit.trace records one branch without complaint; parity at 1, 7 and 64 rows shows it."""
    with pytest.raises(FailedPrecondition) as err:
        compile_model(centred(models["mlp"]), "pt", module=DataDependent().eval())
    assert err.value.field == "validation"
    assert "max_abs_error" in err.value.message and "> tolerance_abs 1e-05" in err.value.message
    assert "max_rel_error" in err.value.message


def test_warn_only_records_instead_of_failing(models, compile_model):
    compiled = compile_model(centred(models["mlp"]), "pt", module=DataDependent().eval(),
                             policy=ValidationPolicy(warn_only=True))
    assert compiled.metrics["warned"] and not compiled.metrics["passed"]
    assert compiled.metrics["max_abs_error"] > 1e-5


def test_tolerances_are_per_call(models, compile_model):
    tight = ValidationPolicy(tolerance_abs=1e-9, tolerance_rel=1e-9)
    with pytest.raises(FailedPrecondition) as err:
        compile_model(models["mlp"], "int8", {"format": "pt"}, policy=tight)
    assert "tolerance_abs 1e-09" in err.value.message
    loose = compile_model(models["mlp"], "int8", {"format": "pt"}, policy=ValidationPolicy(tolerance_rel=0.5))
    assert loose.metrics["tolerance_rel"] == 0.5 and loose.metrics["tolerance_abs"] == 5e-2


def test_exports_leave_torch_settings_as_they_were(models, compile_model):
    before = torch.backends.mha.get_fastpath_enabled()
    compile_model(models["transformer"], "pt")
    assert torch.backends.mha.get_fastpath_enabled() == before
