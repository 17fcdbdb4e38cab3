"""MLServer runtime for bench/serving.py: the bench's tiny MLP in numpy (weights from an .npz the bench
writes), so MLServer's environment needs no torch. Runs inside .bench-venvs/mlserver, never in .venv.

numpy is at least as fast as torch for a model this small, so any difference measured is MLServer's
request path, not its model.
"""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class NumpyMLP(MLModel):
    async def load(self) -> bool:
        weights = np.load(self.settings.parameters.uri)
        self.mean, self.std = weights["input_mean"], weights["input_std"]
        count = sum(1 for k in weights.files if k.startswith("w"))
        self.layers = [(weights[f"w{i}"].T.copy(), weights[f"b{i}"]) for i in range(count)]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        h = (NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32) - self.mean) / self.std
        for index, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if index < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("output", h.astype(np.float32))])
