from google.api import annotations_pb2 as _annotations_pb2
from mlmesh.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

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
