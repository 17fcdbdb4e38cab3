"""KServe v2 tensors <-> numpy: inputs from `raw_input_contents` or typed contents, outputs always as
`raw_output_contents` (what tritonclient reads first). BYTES elements travel as a 4-byte little-endian
length followed by the bytes, element after element in row-major order.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from tritonclient.grpc import service_pb2

from services.core.errors import InvalidArgument

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_TYPED = {  # datatype -> the InferTensorContents field that carries it
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
_WIRE = {np.dtype(v).str: k for k, v in DTYPES.items() if k != "BYTES"}
_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == object:
        return "BYTES"
    datatype = _WIRE.get(array.dtype.str)  # little-endian only, as the wire is
    if datatype is None:
        raise TypeError(f"no KServe datatype for {array.dtype}")
    return datatype


def deserialize_bytes(data: bytes, count: int, name: str) -> np.ndarray:
    items, offset, end = [], 0, len(data)
    view = memoryview(data)
    while offset < end:
        if offset + 4 > end:
            raise InvalidArgument("truncated BYTES element length", field=name)
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument("a BYTES element runs past the end of its content", field=name)
        items.append(bytes(view[offset:offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidArgument(f"{len(items)} BYTES elements for a shape of {count}", field=name)
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def serialize_bytes(values) -> bytes:
    parts = []
    for value in values:
        data = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _from_raw(data: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return deserialize_bytes(data, count, name).reshape(shape)
    dtype = DTYPES[datatype]
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(f"{len(data)} bytes do not hold shape {list(shape)} of {datatype}", field=name)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _from_contents(contents: service_pb2.InferTensorContents, datatype: str, shape: tuple[int, ...],
                   name: str) -> np.ndarray:
    field = _TYPED.get(datatype)
    if field is None:
        raise InvalidArgument(f"{datatype} travels in raw_input_contents only", field=name)
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidArgument(f"{len(values)} values for shape {list(shape)}", field=name)
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return np.asarray(values, dtype=DTYPES[datatype]).reshape(shape)


def decode_inputs(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    """The request's input tensors by name."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"{len(raw)} raw contents for {len(request.inputs)} inputs", field="raw_input_contents")
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in tensors:
            raise InvalidArgument("appears twice", field=name)
        if tensor.datatype not in DTYPES:
            raise InvalidArgument(f"unknown datatype {tensor.datatype!r}; known: {sorted(DTYPES)}", field=name)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidArgument(f"shape {list(shape)} has a negative size", field=name)
        tensors[name] = (_from_raw(raw[index], tensor.datatype, shape, name) if raw
                         else _from_contents(tensor.contents, tensor.datatype, shape, name))
    return tensors


def encode_outputs(response: service_pb2.ModelInferResponse, outputs: dict[str, np.ndarray]) -> None:
    """Appends each output as a tensor description plus its raw contents (in the same order)."""
    for name, array in outputs.items():
        datatype = datatype_of(array)
        data = serialize_bytes(array.ravel()) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(data)
