from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from mlmesh.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidationPolicy(_message.Message):
    __slots__ = ("batch_sizes", "tolerance_abs", "tolerance_rel", "warn_only")
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_ABS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_REL_FIELD_NUMBER: _ClassVar[int]
    WARN_ONLY_FIELD_NUMBER: _ClassVar[int]
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    tolerance_abs: float
    tolerance_rel: float
    warn_only: bool
    def __init__(self, batch_sizes: _Optional[_Iterable[int]] = ..., tolerance_abs: _Optional[float] = ..., tolerance_rel: _Optional[float] = ..., warn_only: _Optional[bool] = ...) -> None: ...

class CompileRequest(_message.Message):
    __slots__ = ("artifact", "target", "kwargs", "validation", "max_batch_size")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    artifact: str
    target: str
    kwargs: _struct_pb2.Struct
    validation: ValidationPolicy
    max_batch_size: int
    def __init__(self, artifact: _Optional[str] = ..., target: _Optional[str] = ..., kwargs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., validation: _Optional[_Union[ValidationPolicy, _Mapping]] = ..., max_batch_size: _Optional[int] = ...) -> None: ...

class CompilerParameter(_message.Message):
    __slots__ = ("name", "type", "description", "default_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    default_json: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., default_json: _Optional[str] = ...) -> None: ...

class CompilerInfo(_message.Message):
    __slots__ = ("alias", "targets", "available", "reason", "output_format", "parameters", "tool_versions")
    class ToolVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TOOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    targets: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    reason: str
    output_format: str
    parameters: _containers.RepeatedCompositeFieldContainer[CompilerParameter]
    tool_versions: _containers.ScalarMap[str, str]
    def __init__(self, alias: _Optional[str] = ..., targets: _Optional[_Iterable[str]] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., output_format: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[CompilerParameter, _Mapping]]] = ..., tool_versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListCompilersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCompilersResponse(_message.Message):
    __slots__ = ("compilers",)
    COMPILERS_FIELD_NUMBER: _ClassVar[int]
    compilers: _containers.RepeatedCompositeFieldContainer[CompilerInfo]
    def __init__(self, compilers: _Optional[_Iterable[_Union[CompilerInfo, _Mapping]]] = ...) -> None: ...
