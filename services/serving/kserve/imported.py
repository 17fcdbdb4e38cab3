"""An imported model's session as a KServe v2 model with the MODEL'S OWN tensors (docs/byom.md signature):
its input by name, datatype and shape, and the outputs its interface answers, in the model's dtypes.

    predictor   <input> [-1, F]                 -> <value_output> as recorded ([-1] or [-1, K])
    classifier  <input> [-1, F] (or string [-1]) -> <probability_output> [-1, C] (+ <label_output>: the
                                                   model's own class values, INT64 or BYTES as recorded)
    analyzer    <input> string                   -> the same as a text classifier
    forecaster  <input> [-1, W] (one window per row) -> <value_output>: the next value of each window

Requests go through the typed path like any other (rules, breaker, scheduler): a tabular or text batch is
ONE call, a forecaster's rows are one one-step forecast each.
"""

from __future__ import annotations

import numpy as np

from services.core.errors import InvalidArgument
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.boosters import label_values
from services.serving.interfaces.backends.imported.signature import TensorInfo
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall, ForecastCall, PredictCall
from services.serving.kserve.signatures import Signature, TensorDef, _get, _matrix, _texts

WIRE = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
        "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
        "uint64": "UINT64", "bool": "BOOL", "string": "BYTES"}


def _definition(tensor: TensorInfo) -> TensorDef:
    return TensorDef(tensor.name, WIRE[tensor.dtype], tensor.shape)


def _shaped(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    rows = len(values)
    return values.reshape(rows) if len(tensor.shape) == 1 else values.reshape(rows, -1)


class ModelTensorSignature(Signature):
    def __init__(self, backend: ImportedBackend) -> None:
        super().__init__(backend)
        signature = backend.signature
        self.model = signature
        self.input = signature.input
        self.inputs = (_definition(self.input),)
        names = list(backend.batch_outputs)
        self.outputs = tuple(_definition(signature.output(name)) for name in names)
        self.interface = backend.interface
        self.labels = tuple(getattr(backend, "labels", ()))
        self.label_values = label_values(signature) if signature.label_output else None

    def _rows(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        array = _get(tensors, self.input.name)
        if array.ndim == 1 and self.input.shape[1] == 1:
            array = array.reshape(-1, 1)
        return _matrix({self.input.name: array}, self.input.name)

    def _calls(self, tensors):
        name = self.input.name
        if self.interface == "analyzer":
            return [AnalyzeCall(_texts(tensors, name))]
        if self.interface == "classifier":
            return [ClassifyCall(_texts(tensors, name) if self.input.is_string else self._rows(tensors), field=name)]
        if self.interface == "forecaster":
            return [ForecastCall(row, 1) for row in self._rows(tensors)]
        if self.interface == "predictor":
            return [PredictCall(self._rows(tensors), field=name)]
        raise InvalidArgument(f"no tensor signature for {self.interface}", field=name)

    def encode(self, results: list) -> dict[str, np.ndarray]:
        model = self.model
        if self.interface == "forecaster":
            tensor = model.output(model.value_output)
            values = np.asarray([r.values[0] for r in results], dtype=tensor.numpy_dtype)
            return {tensor.name: _shaped(values, tensor)}
        items = results[0]
        if self.interface == "predictor":
            tensor = model.output(model.value_output)
            return {tensor.name: _shaped(np.asarray([p.values for p in items], dtype=tensor.numpy_dtype), tensor)}
        tensor = model.output(model.probability_output)
        labels = self.labels
        probabilities = np.asarray([[r.scores.get(label, 0.0) for label in labels] for r in items],
                                   dtype=tensor.numpy_dtype).reshape(len(items), len(labels))
        outputs = {tensor.name: probabilities}
        if self.label_values is not None:
            label = model.output(model.label_output)
            index = {name: i for i, name in enumerate(labels)}
            outputs[label.name] = _shaped(self.label_values[[index[r.label] for r in items]], label)
        return outputs
