"""The compile core, blocking and free of I/O beyond its folder: an eager module in, a validated Triton
entry folder out (config.pbtxt + 1/<model files>) with its metrics. Runs in the compile lane; tests
drive it with in-memory modules."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.compiler.compilers.base import CompileJob, CompileOutput, Compiler
from services.compiler.signature import OUTPUT_NAME, ModelSignature, TensorSig, sample_inputs
from services.compiler.triton_config import CONFIG_FILE, config_text, validate_entry
from services.compiler.validation import ValidationPolicy, validate
from services.core.errors import FailedPrecondition

VERSION = "1"
EXAMPLE_SEED = 12345
MEDIA_TYPES = {".onnx": "application/onnx", ".pt": "application/x-torchscript", ".pt2": "application/zip",
               ".plan": "application/octet-stream", ".data": "application/octet-stream", ".pbtxt": "text/plain"}


@dataclass(frozen=True)
class EntryFile:
    path: str  # relative to the entry folder: "config.pbtxt", "1/model.onnx"
    sha256: str
    size: int
    media_type: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "media_type": self.media_type}


@dataclass(frozen=True)
class Compiled:
    """A validated compile: its Triton entry folder, every file hashed, and what was measured."""

    entry: Path
    output: CompileOutput
    signature: ModelSignature
    files: tuple[EntryFile, ...]
    primary: EntryFile
    metrics: dict[str, Any]

    @property
    def model_size(self) -> int:
        return sum(f.size for f in self.files if f.path != CONFIG_FILE)

    @property
    def digest(self) -> str:
        """Content hash of the whole entry (every file's path and digest): names it in a repository."""
        return hashlib.sha256("\n".join(f"{f.path} {f.sha256}" for f in self.files).encode()).hexdigest()


def output_signature(module: Any, signature: ModelSignature, example: Any) -> ModelSignature:
    import torch

    with torch.no_grad():
        result = module(example)
    if not isinstance(result, torch.Tensor):
        raise FailedPrecondition(f"the model returns {type(result).__name__}; compiled outputs need one tensor",
                                 field="artifact")
    return signature.with_outputs((TensorSig(OUTPUT_NAME, tuple(result.shape[1:]) or (1,)),))


def hash_file(path: Path, relative: str) -> EntryFile:
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        size = fh.tell()
    return EntryFile(relative, digest, size, MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


def compile_output(compiler: Compiler, target: str, kwargs: Mapping[str, Any], module: Any,
                   signature: ModelSignature, max_batch_size: int, entry: Path,
                   scratch: Path | None = None) -> tuple[CompileOutput, ModelSignature]:
    """Compile `module` into `entry`/1; returns the output and the signature with its outputs filled in.
    `scratch` (default: beside `entry`) holds intermediate files; the caller removes both folders."""
    import torch

    example = torch.from_numpy(sample_inputs(signature, 2, EXAMPLE_SEED))
    signature = output_signature(module, signature, example)
    scratch = scratch or entry.with_name(entry.name + ".scratch")
    job = CompileJob(module, signature, example, max_batch_size, target, kwargs, entry / VERSION, scratch)
    return compiler.compile(job), signature


def validate_and_describe(compiler: Compiler, target: str, kwargs: Mapping[str, Any], module: Any,
                          signature: ModelSignature, output: CompileOutput, max_batch_size: int,
                          policy: ValidationPolicy, entry: Path) -> Compiled:
    """Validate the output against `module`, write config.pbtxt, check the entry, hash every file."""
    metrics = validate(compiler, output, module, signature, policy, policy.tolerance(compiler.tolerance(target, kwargs)))
    return describe(output, signature, kwargs, max_batch_size, entry, metrics)


def describe(output: CompileOutput, signature: ModelSignature, kwargs: Mapping[str, Any], max_batch_size: int,
             entry: Path, metrics: dict[str, Any]) -> Compiled:
    """A validated output's entry: config.pbtxt written, the entry checked against Triton's rules, every
    file hashed."""
    (entry / CONFIG_FILE).write_text(config_text(
        output.triton_platform, signature.inputs, signature.outputs, max_batch_size,
        dynamic_batching=bool(kwargs.get("dynamic_batching")), max_queue_delay_us=int(kwargs.get("max_queue_delay_us", 0)),
        instance_kind=output.instance_kind,
    ))
    validate_entry(entry)  # what we hand to Triton must pass Triton's rules
    files = [hash_file(entry / CONFIG_FILE, CONFIG_FILE)]
    files += [hash_file(output.folder / name, f"{VERSION}/{name}") for name in output.files]
    primary = next(f for f in files if f.path == f"{VERSION}/{output.primary}")
    return Compiled(entry, output, signature, tuple(sorted(files, key=lambda f: f.path)), primary, metrics)


def compile_and_validate(compiler: Compiler, target: str, kwargs: Mapping[str, Any], module: Any,
                         signature: ModelSignature, max_batch_size: int, policy: ValidationPolicy,
                         entry: Path, scratch: Path | None = None) -> Compiled:
    """Both steps at once (the service runs them as two progress stages)."""
    output, signature = compile_output(compiler, target, kwargs, module, signature, max_batch_size, entry, scratch)
    return validate_and_describe(compiler, target, kwargs, module, signature, output, max_batch_size, policy, entry)
