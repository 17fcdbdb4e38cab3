"""Modules rebuilt from an artifact's architecture spec: weights must fit exactly, unknown specs refused."""

import pytest
import torch

from services.core.errors import InvalidArgument
from services.core.models.architectures import build_module, hash_texts, load_module

SPECS = [
    ({"type": "mlp", "layers": [4, 8, 3]}, torch.randn(5, 4)),
    ({"type": "mlp", "layers": [4.0, 8.0, 1.0]}, torch.randn(2, 4)),  # sizes that crossed a protobuf Struct
    ({"type": "lstm_forecaster", "hidden_size": 6}, torch.randn(3, 10)),
    ({"type": "hashed_bow_linear", "buckets": 16, "classes": 3}, hash_texts(["up big", "down"], 16)),
    ({"type": "transformer_encoder", "seq_len": 8, "d_model": 8, "nhead": 2}, torch.randn(3, 8)),
]


@pytest.mark.parametrize("spec,example", SPECS, ids=[s["type"] for s, _ in SPECS])
def test_a_trained_module_round_trips_through_its_spec(spec, example):
    trained = build_module(spec)
    rebuilt = load_module(spec, trained.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(example), trained.eval()(example))


def test_weights_that_do_not_fit_are_refused():
    weights = build_module({"type": "mlp", "layers": [4, 8, 3]}).state_dict()
    with pytest.raises(InvalidArgument) as caught:
        load_module({"type": "mlp", "layers": [4, 9, 3]}, weights)
    assert caught.value.field == "metadata.architecture"


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"type": "resnet"}, "metadata.architecture.type"),
        ({"layers": [1, 2]}, "metadata.architecture.type"),
        ({"type": "mlp", "layers": [4]}, "metadata.architecture.layers"),
        ({"type": "mlp", "layers": [4, -1]}, "metadata.architecture.layers[1]"),
        ({"type": "lstm_forecaster", "hidden_size": 0}, "metadata.architecture.hidden_size"),
    ],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(InvalidArgument) as caught:
        build_module(spec)
    assert caught.value.field == field


def test_hashing_is_stable_and_l1_normalised():
    bags = hash_texts(["Rates up, stocks up", ""], 64)
    assert torch.allclose(bags[0].sum(), torch.tensor(1.0)) and bags[1].sum() == 0
    assert torch.equal(bags, hash_texts(["rates UP, stocks up", ""], 64))
