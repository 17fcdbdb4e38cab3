"""Requests refused before any work: unknown targets, kwargs the compiler does not take, bad policies,
and artifacts a compiler cannot handle, each with its status and the field at fault."""

from __future__ import annotations

import pytest

from services.compiler.signature import signature_for
from services.compiler.validation import ValidationPolicy
from services.core.errors import FailedPrecondition, InvalidArgument


@pytest.mark.parametrize(("name", "alias", "target"), [
    ("onnx", "onnx", "onnx"), ("torchscript", "torchscript", "pt"), ("pt", "torchscript", "pt"),
    ("pt2", "torchscript", "pt2"), ("quantization", "quantization", "int8"), ("INT8", "quantization", "int8"),
    ("fp16", "quantization", "fp16"), ("bf16", "quantization", "bf16"), ("tensorrt", "tensorrt", "plan"),
])
def test_targets_resolve(catalog, name, alias, target):
    resolved = catalog.resolve(name)
    assert (resolved.compiler.alias, resolved.target) == (alias, target)


def test_unknown_target_lists_the_known_ones(catalog):
    with pytest.raises(InvalidArgument) as err:
        catalog.resolve("tflite")
    assert err.value.field == "target"
    assert "'tflite'" in err.value.message and "onnx" in err.value.message and "int8" in err.value.message


@pytest.mark.parametrize(("target", "kwargs", "field", "text"), [
    ("onnx", {"opset_version": 20}, "kwargs.opset_version", "not a parameter of the onnx compiler"),
    ("onnx", {"opset": "20"}, "kwargs.opset", "must be of type int"),
    ("onnx", {"opset": 20.5}, "kwargs.opset", "must be of type int"),
    ("onnx", {"opset": 12}, "kwargs.opset", "must be >= 18"),
    ("onnx", {"external_data": "sometimes"}, "kwargs.external_data", "must be one of"),
    ("pt2", {"method": "script"}, "kwargs.method", "applies to target(s) ['pt'] only"),
    ("fp16", {"per_channel": True}, "kwargs.per_channel", "applies to target(s) ['int8'] only"),
    ("bf16", {"format": "onnx"}, "kwargs.format", "no ONNX Runtime CPU kernels"),
    ("int8", {"format": "pt", "opset": 20}, "kwargs.opset", "applies to format 'onnx' only"),
    ("pt", {"dynamic_batching": "yes"}, "kwargs.dynamic_batching", "must be of type bool"),
])
def test_bad_kwargs_are_named(catalog, target, kwargs, field, text):
    resolved = catalog.resolve(target)
    with pytest.raises(InvalidArgument) as err:
        resolved.compiler.check(resolved.target, kwargs, None)
    assert err.value.field == field
    assert text in err.value.message


def test_struct_numbers_and_defaults(catalog):
    resolved = catalog.resolve("onnx")
    effective = resolved.compiler.check("onnx", {"opset": 18.0}, None)  # a Struct carries doubles
    assert effective == {"opset": 18, "external_data": "auto", "optimize": True, "dynamic_batching": False,
                         "max_queue_delay_us": 100}


@pytest.mark.parametrize(("policy", "field"), [
    (ValidationPolicy(batch_sizes=(1, 65)), "validation.batch_sizes[1]"),
    (ValidationPolicy(batch_sizes=(0,)), "validation.batch_sizes[0]"),
    (ValidationPolicy(tolerance_abs=-1.0), "validation.tolerance_abs"),
    (ValidationPolicy(tolerance_rel=float("nan")), "validation.tolerance_rel"),
])
def test_bad_policies_are_named(policy, field):
    with pytest.raises(InvalidArgument) as err:
        policy.checked(64)
    assert err.value.field == field


def test_default_policy_is_1_7_and_max():
    assert ValidationPolicy().checked(64).batch_sizes == (1, 7, 64)
    assert ValidationPolicy().checked(4).batch_sizes == (1, 4)


@pytest.mark.parametrize(("metadata", "field", "text"), [
    ({"framework": "transformers"}, "artifact", "has no metadata.architecture"),
    ({"architecture": {"type": "resnet_custom"}}, "metadata.architecture.type", "no input signature"),
    ({"architecture": {"type": "lstm_forecaster", "hidden_size": 8}}, "metadata.architecture.window", "window"),
])
def test_artifacts_without_a_usable_architecture(metadata, field, text):
    with pytest.raises(FailedPrecondition) as err:
        signature_for(metadata)
    assert err.value.field == field and text in err.value.message


@pytest.mark.parametrize("target", ["onnx", "pt", "int8", "pt2"])
def test_text_models_are_refused_with_the_reason(catalog, target):
    signature = signature_for({"architecture": {"type": "hashed_bow_linear", "buckets": 64, "classes": 3}})
    resolved = catalog.resolve(target)
    with pytest.raises(FailedPrecondition) as err:
        resolved.compiler.check(resolved.target, {}, signature)
    assert err.value.field == "artifact"
    assert "input is text" in err.value.message and "crc32" in err.value.message
