from google.api import annotations_pb2 as _annotations_pb2
from mlmesh.v1 import common_pb2 as _common_pb2
from mlmesh.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequest(_message.Message):
    __slots__ = ("source", "allow_patterns", "name", "aliases", "allow_pickle")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PICKLE_FIELD_NUMBER: _ClassVar[int]
    source: str
    allow_patterns: _containers.RepeatedScalarFieldContainer[str]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    allow_pickle: bool
    def __init__(self, source: _Optional[str] = ..., allow_patterns: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., allow_pickle: _Optional[bool] = ...) -> None: ...

class PushFile(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class PushHeader(_message.Message):
    __slots__ = ("name", "aliases", "interface", "format", "feature_names", "labels", "window", "files", "reference", "allow_pickle")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PICKLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    interface: _common_pb2.InterfaceKind
    format: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    window: int
    files: _containers.RepeatedCompositeFieldContainer[PushFile]
    reference: PushFile
    allow_pickle: bool
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., interface: _Optional[_Union[_common_pb2.InterfaceKind, str]] = ..., format: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., window: _Optional[int] = ..., files: _Optional[_Iterable[_Union[PushFile, _Mapping]]] = ..., reference: _Optional[_Union[PushFile, _Mapping]] = ..., allow_pickle: _Optional[bool] = ...) -> None: ...

class PushChunk(_message.Message):
    __slots__ = ("path", "offset", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    offset: int
    data: bytes
    def __init__(self, path: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PushHeader
    chunk: PushChunk
    def __init__(self, header: _Optional[_Union[PushHeader, _Mapping]] = ..., chunk: _Optional[_Union[PushChunk, _Mapping]] = ...) -> None: ...
