"""Safety checks of a pushed ONNX graph, on its proto read without external data.

`onnx.checker` accepts any op domain, and ONNX Runtime resolves external data of a model loaded from
bytes against the working directory: so the domains are allow-listed here, every external-data
location is proven to be a regular file inside the pushed folder, and the model is only ever loaded
from its file path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from services.core.errors import InvalidArgument
from services.puller.formats.files import field_of
from services.puller.formats.signature import ALLOWED_INPUT_DTYPES

ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
_DTYPE_NAMES = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 8: "string"}


def load_proto(path: Path, rel: str):
    """The ModelProto without its external data; refused when it does not parse as a model with a graph."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning, ValueError...
        raise InvalidArgument(f"{rel} is not a readable ONNX model ({type(exc).__name__}: "
                              f"{str(exc)[:200]})", field=field_of(rel)) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise InvalidArgument(f"{rel} is not an ONNX model: no graph with outputs", field=field_of(rel))
    return model


def check_graph(model, folder: Path, path: Path, rel: str) -> None:
    """Domains, external data, the ONNX checker and input dtypes; raises InvalidArgument naming the culprit."""
    import onnx

    check_domains(model, rel)
    check_external_data(model, folder, path, rel)
    try:
        onnx.checker.check_model(str(path))  # from the path: external data is checked where it lies
    except Exception as exc:  # noqa: BLE001 - ValidationError, and ValueError / OSError on a broken file
        raise InvalidArgument(f"{rel} fails the ONNX checker: {str(exc).splitlines()[0][:300]}",
                              field=field_of(rel)) from None
    check_input_dtypes(model, rel)


def _graphs(graph) -> Iterator:
    """The graph and every subgraph (If / Loop / Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _nodes(model) -> Iterator:
    """Every node: the graph's, its subgraphs', and those of the model's functions (and their subgraphs)."""
    for graph in _graphs(model.graph):
        yield from graph.node
    for function in model.functions:
        for node in function.node:
            yield node
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    for graph in _graphs(sub):
                        yield from graph.node


def check_domains(model, rel: str) -> None:
    local = {(f.domain, f.name) for f in model.functions}  # a model's own functions are checked by their bodies
    for node in _nodes(model):
        if node.domain in ALLOWED_DOMAINS or (node.domain, node.op_type) in local:
            continue
        raise InvalidArgument(f"{rel}: node {node.name or node.op_type!r} ({node.op_type}) uses op domain "
                              f"{node.domain!r}; allowed: {list(ALLOWED_DOMAINS)}", field=field_of(rel))


def _tensors(model) -> Iterator:
    """Every tensor that can keep its data outside the file: initializers and node attributes (functions too)."""
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in _nodes(model):
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def check_external_data(model, folder: Path, path: Path, rel: str) -> None:
    """Every external-data location: relative, no "..", no symlink on the way, a regular file inside the
    folder, and the span it names inside that file."""
    import onnx

    base = path.parent
    for tensor in _tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        field = f"{field_of(rel)}.external_data[{tensor.name}]"
        location = entries.get("location", "")
        where = f"{rel}: tensor {tensor.name!r} keeps its data at {location!r}"
        pure = PurePosixPath(location.replace("\\", "/"))
        if not location or pure.is_absolute() or location.startswith("\\") or ":" in pure.parts[0]:
            raise InvalidArgument(f"{where}: external data must be a relative path inside the model folder",
                                  field=field)
        if ".." in pure.parts:
            raise InvalidArgument(f"{where}: external data may not leave the model folder (..)", field=field)
        target = base
        for part in pure.parts:
            target = target / part
            try:
                mode = target.lstat().st_mode
            except FileNotFoundError:
                raise InvalidArgument(f"{where}: no such file was pushed", field=field) from None
            if stat.S_ISLNK(mode):
                raise InvalidArgument(f"{where}: external data may not be a symbolic link", field=field)
        if not stat.S_ISREG(mode):
            raise InvalidArgument(f"{where}: not a regular file", field=field)
        if os.path.commonpath([os.path.realpath(target), os.path.realpath(folder)]) != os.path.realpath(folder):
            raise InvalidArgument(f"{where}: outside the model folder", field=field)
        _check_span(entries, target.stat().st_size, where, field)


def external_files(model, rel: str) -> set[str]:
    """The folder-relative paths of the external data files (call after `check_external_data`)."""
    import onnx

    base = PurePosixPath(rel).parent
    found = set()
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            found.add((base / PurePosixPath(location.replace("\\", "/"))).as_posix())
    return found


def _check_span(entries: dict[str, str], size: int, where: str, field: str) -> None:
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError:
        raise InvalidArgument(f"{where}: offset and length must be integers", field=field) from None
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidArgument(f"{where}: bytes {offset}..{offset + length} lie outside the {size}-byte file",
                              field=field)


def check_input_dtypes(model, rel: str) -> None:
    import onnx

    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue  # an initializer listed as an input (IR < 4) is a constant with a default, not fed
        if not value.type.HasField("tensor_type"):
            raise InvalidArgument(f"{rel}: input {value.name!r} is not a tensor; serving feeds tensors",
                                  field=field_of(rel))
        elem = value.type.tensor_type.elem_type
        if elem not in _DTYPE_NAMES:
            name = onnx.TensorProto.DataType.Name(elem).lower() if elem in onnx.TensorProto.DataType.values() \
                else str(elem)
            raise InvalidArgument(f"{rel}: input {value.name!r} is {name}; serving feeds "
                                  f"{list(ALLOWED_INPUT_DTYPES)}", field=field_of(rel))
