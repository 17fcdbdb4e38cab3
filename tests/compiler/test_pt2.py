"""The current TorchScript successor: torch.export + AOTInductor -> model.pt2 (one build: 5-25 s on CPU)."""

from __future__ import annotations

import numpy as np
import torch

from services.compiler.signature import sample_inputs
from services.compiler.triton_config import check_entry, parse_config


def test_pt2_aoti_package_loads_back_with_dynamic_batch(models, compile_model):
    m = models["mlp"]
    compiled = compile_model(m, "pt2")
    assert compiled.metrics["passed"] and compiled.metrics["max_abs_error"] <= 1e-4

    package = torch._inductor.aoti_load_package(str(compiled.entry / "1" / "model.pt2"))
    for batch in (3, 64):  # any batch in the exported range runs
        x = sample_inputs(m.signature, batch, seed=batch)
        with torch.no_grad():
            got = package(torch.from_numpy(x))
            want = m.module(torch.from_numpy(x))
        got = got[0] if isinstance(got, (list, tuple)) else got
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, rtol=1e-4)

    config = parse_config((compiled.entry / "config.pbtxt").read_text())
    assert (config.platform, config.backend) == ("torch_aoti", "pytorch")
    assert check_entry(compiled.entry) == []
