"""`Mesh`: one connection to an mlmesh deployment (Envoy's front door, or each service's own address)
for other services' code: push a model, then call it through a typed interface.

    mesh = Mesh("127.0.0.1:8080", token)                  # a token whose audiences are the services called
    artifact = mesh.push("churn.onnx", name="churn", aliases=["prod"], reference="sample.csv")
    mesh.predictor("churn@prod").predict([[0.1, 0.2, 0.3]])

`predictor(ref)` (and the other four) uses a READY session that serves the artifact `ref` names now with
that interface, and deploys one when none does (the token then needs `serving.deploy`); a halted session of
that artifact refuses instead (the kill switch holds). `session=` names a session instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from mlmesh import push as uploads
from mlmesh.calls import DEFAULT_TIMEOUT_S, call
from mlmesh.errors import FailedPrecondition, InvalidArgument, OperationFailed, Unavailable, from_rpc_error
from mlmesh.interfaces import Analyzer, Classifier, Forecaster, Predictor, Segmenter
from mlmesh.results import Artifact
from mlmesh.v1 import (common_pb2, operations_pb2, operations_pb2_grpc, puller_pb2, puller_pb2_grpc, registry_pb2,
                       registry_pb2_grpc, serving_pb2, serving_pb2_grpc)

SERVICES = ("registry", "puller", "compiler", "serving")
_STUBS = {"registry": registry_pb2_grpc.RegistryStub, "puller": puller_pb2_grpc.PullerStub,
          "serving": serving_pb2_grpc.ServingStub, "operations": operations_pb2_grpc.OperationsStub}
_INTERFACE_CLASSES = {"predictor": Predictor, "classifier": Classifier, "forecaster": Forecaster,
                      "segmenter": Segmenter, "analyzer": Analyzer}
_EXECUTORS = {"auto": serving_pb2.EXECUTOR_KIND_UNSPECIFIED, "triton": serving_pb2.EXECUTOR_KIND_TRITON,
              "in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS}
_DONE = {operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED,
         operations_pb2.OPERATION_STATE_CANCELLED}
Token = str | Mapping[str, str] | Callable[[str], str]


class Mesh:
    def __init__(self, address: str | Mapping[str, str] = "127.0.0.1:8080", token: Token = "", *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """`address`: Envoy's (every service behind one door) or {service: address}. `token`: one bearer token
        for every call, {service: token}, or a function of the service's name."""
        self._addresses = dict(address) if isinstance(address, Mapping) else {s: address for s in SERVICES}
        self._token = token
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.Channel] = {}

    # -- plumbing -------------------------------------------------------------------------------------
    def _owner(self, service: str) -> str:
        """Operations are answered by any service that runs long work; through one front door, the registry."""
        if service != "operations":
            return service
        return "registry" if self._addresses.get("puller") == self._addresses.get("registry") else "puller"

    def metadata(self, service: str) -> tuple[tuple[str, str], ...]:
        token = self._token
        if isinstance(token, Mapping):
            token = token.get(self._owner(service), "")
        elif callable(token):
            token = token(self._owner(service))
        return (("authorization", f"Bearer {token}"),) if token else ()

    def stub(self, service: str) -> Any:
        owner = self._owner(service)
        address = self._addresses.get(owner)
        if address is None:
            raise InvalidArgument(f"no address for {owner}", field="address")
        if address not in self._channels:
            self._channels[address] = grpc.insecure_channel(address)
        return _STUBS[service](self._channels[address])

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> "Mesh":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, service: str, method: str, request: Any, *, idempotent: bool, timeout_s: float | None = None):
        return call(getattr(self.stub(service), method), request, metadata=self.metadata(service),
                    timeout_s=timeout_s or self.timeout_s, idempotent=idempotent)

    # -- artifacts ------------------------------------------------------------------------------------
    def push(self, path: str | Path, *, name: str, aliases: Sequence[str] = (), interface: str = "",
             format: str = "auto", feature_names: Sequence[str] = (), labels: Sequence[str] = (), window: int = 0,
             reference: str | Path | None = None, allow_pickle: bool = False,
             progress: uploads.ProgressCallback | None = None, on_operation: Callable[[Any], None] | None = None,
             timeout_s: float = 3600.0) -> Artifact:
        """Upload a model file or folder and wait until it is inspected, signed and registered.
        `progress(stage, done, total)` sees "hash" and "upload" bytes, then the operation's stages (done=0);
        `on_operation(op)` sees every update of the push's operation (for progress bars of your own)."""
        if interface not in uploads.INTERFACES:
            raise InvalidArgument(f"must be one of {sorted(i for i in uploads.INTERFACES if i)}", field="interface")
        report = progress or (lambda stage, done, total: None)
        files = uploads.hash_files(uploads.collect(path), report)
        header = puller_pb2.PushHeader(
            name=name, aliases=list(aliases), interface=uploads.INTERFACES[interface], format=format,
            feature_names=list(feature_names), labels=list(labels), window=window, allow_pickle=allow_pickle,
            files=[f.message() for f in files])
        all_files = list(files)
        if reference is not None:
            (ref_file,) = uploads.hash_files(uploads.collect(reference), report)
            ref_file = uploads.LocalFile(f"reference/{ref_file.path}", ref_file.source, ref_file.size,
                                         ref_file.sha256)
            header.reference.CopyFrom(ref_file.message())
            all_files.append(ref_file)
        deadline = time.monotonic() + timeout_s
        try:
            operation = self.stub("puller").Push(uploads.requests(header, all_files, report), timeout=timeout_s,
                                                 metadata=self.metadata("puller"))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        operation = self.wait(operation, timeout_s=max(deadline - time.monotonic(), 1.0),
                              on_update=on_operation or (lambda op: report(op.progress.stage or "push", 0, 0)))
        artifact = common_pb2.Artifact()
        operation.result.Unpack(artifact)
        return artifact_of(artifact)

    def artifact(self, ref: str) -> Artifact:
        """A registered artifact by "sha256:<hex>", "name@alias" or "name" (= name@latest)."""
        return artifact_of(self._call("registry", "GetArtifact", registry_pb2.GetArtifactRequest(ref=ref),
                                      idempotent=True))

    def wait(self, operation: Any, *, timeout_s: float, on_update: Callable[[Any], None] | None = None) -> Any:
        """Follow an operation to its end; FAILED or CANCELLED raise OperationFailed with its reason."""
        stub, metadata = self.stub("operations"), self.metadata("operations")
        try:
            for update in stub.WatchOperation(operations_pb2.WatchOperationRequest(id=operation.id),
                                              timeout=timeout_s, metadata=metadata):
                operation = update
                if on_update:
                    on_update(update)
                if update.state in _DONE:
                    break
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        if operation.state != operations_pb2.OPERATION_STATE_SUCCEEDED:
            error = operation.error
            code = getattr(grpc.StatusCode, error.code or "UNKNOWN", grpc.StatusCode.UNKNOWN)
            raise OperationFailed(error.message or operations_pb2.OperationState.Name(operation.state), code=code,
                                  field=error.field, operation_id=operation.id)
        return operation

    # -- serving --------------------------------------------------------------------------------------
    def session_for(self, model: str, interface: str, *, executor: str = "auto") -> serving_pb2.ServingSession:
        """A READY session serving what `model` names now as `interface` (an alias is resolved on every call,
        so a moved alias gets its new artifact); deployed, pinned by id, when there is none. A HALTED session
        of that artifact refuses with Unavailable: a halt is the kill switch, never routed around."""
        kind = getattr(common_pb2, f"INTERFACE_KIND_{interface.upper()}")
        if executor not in _EXECUTORS:
            raise InvalidArgument(f"must be one of {sorted(_EXECUTORS)}", field="executor")
        pinned = model if model.startswith(("sha256:", "compiled:")) else self.artifact(model).id
        listed = self._call("serving", "ListSessions", serving_pb2.ListSessionsRequest(), idempotent=True)
        serving_it = [s for s in listed.sessions if pinned in (s.artifact_id, s.model)]
        halted = [s for s in serving_it if s.state == serving_pb2.SESSION_STATE_HALTED]
        if halted:
            raise Unavailable(f"session {halted[0].id} of {model} is halted ({halted[0].halt_reason or 'no reason'});"
                              " resume it to call the model again", field="model")
        ready = [s for s in serving_it if s.interface == kind and s.state == serving_pb2.SESSION_STATE_READY]
        if ready:
            return min(ready, key=lambda s: (s.created_at.seconds, s.created_at.nanos, s.id))   # callers agree
        deployed = self._call("serving", "Deploy", serving_pb2.DeployRequest(
            model=pinned, interface=kind, executor=_EXECUTORS[executor]), idempotent=False, timeout_s=180.0)
        if deployed.state != serving_pb2.SESSION_STATE_READY:
            raise FailedPrecondition(f"session {deployed.id} is {serving_pb2.SessionState.Name(deployed.state)}",
                                     field="model")
        return deployed

    def _bound(self, interface: str, model: str, session: str, executor: str, timeout_s: float | None):
        if not session and not model:
            raise InvalidArgument("give a model reference ('name@alias', 'sha256:...') or session=", field="model")
        found = self.session_for(model, interface, executor=executor) if not session else None
        return _INTERFACE_CLASSES[interface](self, session or found.id, timeout_s or 10.0,
                                             replica=found.replica if found else "")

    def predictor(self, model: str = "", *, session: str = "", executor: str = "auto",
                  timeout_s: float | None = None) -> Predictor:
        return self._bound("predictor", model, session, executor, timeout_s)

    def classifier(self, model: str = "", *, session: str = "", executor: str = "auto",
                   timeout_s: float | None = None) -> Classifier:
        return self._bound("classifier", model, session, executor, timeout_s)

    def forecaster(self, model: str = "", *, session: str = "", executor: str = "auto",
                   timeout_s: float | None = None) -> Forecaster:
        return self._bound("forecaster", model, session, executor, timeout_s)

    def segmenter(self, model: str = "", *, session: str = "", executor: str = "auto",
                  timeout_s: float | None = None) -> Segmenter:
        return self._bound("segmenter", model, session, executor, timeout_s)

    def analyzer(self, model: str = "", *, session: str = "", executor: str = "auto",
                 timeout_s: float | None = None) -> Analyzer:
        return self._bound("analyzer", model, session, executor, timeout_s)


def artifact_of(message: common_pb2.Artifact) -> Artifact:
    metadata = json_format.MessageToDict(message.manifest.metadata)
    return Artifact(id=message.id, name=message.name, aliases=tuple(message.aliases),
                    framework=message.manifest.framework, format=message.manifest.format, size=message.total_size,
                    interfaces=tuple(metadata.get("interfaces") or ()), interface=str(metadata.get("interface", "")),
                    metadata=metadata)
