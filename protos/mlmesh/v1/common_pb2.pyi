import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InterfaceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERFACE_KIND_UNSPECIFIED: _ClassVar[InterfaceKind]
    INTERFACE_KIND_PREDICTOR: _ClassVar[InterfaceKind]
    INTERFACE_KIND_FORECASTER: _ClassVar[InterfaceKind]
    INTERFACE_KIND_CLASSIFIER: _ClassVar[InterfaceKind]
    INTERFACE_KIND_SEGMENTER: _ClassVar[InterfaceKind]
    INTERFACE_KIND_ANALYZER: _ClassVar[InterfaceKind]
INTERFACE_KIND_UNSPECIFIED: InterfaceKind
INTERFACE_KIND_PREDICTOR: InterfaceKind
INTERFACE_KIND_FORECASTER: InterfaceKind
INTERFACE_KIND_CLASSIFIER: InterfaceKind
INTERFACE_KIND_SEGMENTER: InterfaceKind
INTERFACE_KIND_ANALYZER: InterfaceKind

class ArtifactFile(_message.Message):
    __slots__ = ("path", "sha256", "size", "media_type")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    media_type: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("files", "framework", "format", "metadata")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[ArtifactFile]
    framework: str
    format: str
    metadata: _struct_pb2.Struct
    def __init__(self, files: _Optional[_Iterable[_Union[ArtifactFile, _Mapping]]] = ..., framework: _Optional[str] = ..., format: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("media_type", "bundle", "key_id")
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    media_type: str
    bundle: bytes
    key_id: str
    def __init__(self, media_type: _Optional[str] = ..., bundle: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("id", "manifest", "name", "aliases", "total_size", "labels", "source_uri", "signature", "created_by", "created_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    manifest: Manifest
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    total_size: int
    labels: _containers.ScalarMap[str, str]
    source_uri: str
    signature: Signature
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., manifest: _Optional[_Union[Manifest, _Mapping]] = ..., name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., total_size: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., source_uri: _Optional[str] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ValidationMetrics(_message.Message):
    __slots__ = ("batch_sizes", "max_abs_error", "max_rel_error", "tolerance_abs", "tolerance_rel", "passed", "warned", "accuracy_delta", "size_ratio")
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_ABS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_REL_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    WARNED_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_DELTA_FIELD_NUMBER: _ClassVar[int]
    SIZE_RATIO_FIELD_NUMBER: _ClassVar[int]
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    max_abs_error: float
    max_rel_error: float
    tolerance_abs: float
    tolerance_rel: float
    passed: bool
    warned: bool
    accuracy_delta: float
    size_ratio: float
    def __init__(self, batch_sizes: _Optional[_Iterable[int]] = ..., max_abs_error: _Optional[float] = ..., max_rel_error: _Optional[float] = ..., tolerance_abs: _Optional[float] = ..., tolerance_rel: _Optional[float] = ..., passed: _Optional[bool] = ..., warned: _Optional[bool] = ..., accuracy_delta: _Optional[float] = ..., size_ratio: _Optional[float] = ...) -> None: ...

class CompiledArtifact(_message.Message):
    __slots__ = ("id", "source_artifact_id", "compiler", "target", "files", "sha256", "size", "kwargs", "tool_versions", "validation", "triton_platform", "created_by", "created_at", "signature")
    class ToolVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPILER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    TOOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    TRITON_PLATFORM_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_artifact_id: str
    compiler: str
    target: str
    files: _containers.RepeatedCompositeFieldContainer[ArtifactFile]
    sha256: str
    size: int
    kwargs: _struct_pb2.Struct
    tool_versions: _containers.ScalarMap[str, str]
    validation: ValidationMetrics
    triton_platform: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    signature: Signature
    def __init__(self, id: _Optional[str] = ..., source_artifact_id: _Optional[str] = ..., compiler: _Optional[str] = ..., target: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ArtifactFile, _Mapping]]] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., kwargs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tool_versions: _Optional[_Mapping[str, str]] = ..., validation: _Optional[_Union[ValidationMetrics, _Mapping]] = ..., triton_platform: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
