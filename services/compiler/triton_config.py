"""Triton model repository entries: `config.pbtxt` written for a compiled output, and a checker of the
rules Triton applies when it loads one (until a real Triton with every backend checks them for us).

Layout: <model>/config.pbtxt and <model>/<version>/model.<ext>. Platform names, backends and default
file names are Triton core's own constants (onnxruntime_onnx/model.onnx, pytorch_libtorch/model.pt,
torch_aoti/model.pt2 with backend "pytorch", tensorrt_plan/model.plan, python/model.py). The config is
parsed with Triton's ModelConfig schema (tritonclient's model_config_pb2), so a field Triton does not
know is refused too. mlmesh writes no `name`: Triton takes it from the folder, so one entry can be
placed under any model name.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import text_format

from services.compiler.signature import TensorSig
from services.compiler.triton_rules import PLATFORMS, check_config, check_files
from services.core.errors import InvalidArgument

CONFIG_FILE = "config.pbtxt"
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
              "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
              "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL", "string": "TYPE_STRING"}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _tensor(t: TensorSig) -> str:
    # One value per row (a graph tensor [batch]): Triton wants dims [ 1 ] reshaped to the graph's [ ].
    dims = ", ".join(str(d) for d in t.dims) if t.dims else "1"
    reshape = "" if t.dims else "\n    reshape: { shape: [ ] }"
    return (f'  {{\n    name: "{t.name}"\n    data_type: {DATA_TYPES[t.dtype]}\n'
            f'    dims: [ {dims} ]{reshape}\n  }}')


def config_text(platform: str, inputs: Sequence[TensorSig], outputs: Sequence[TensorSig], max_batch_size: int, *,
                dynamic_batching: bool = False, max_queue_delay_us: int = 100, instance_kind: str = "") -> str:
    """config.pbtxt for a compiled output; `platform` may also be "python" (a python-backend model)."""
    head = ['backend: "python"'] if platform == "python" else [
        f'platform: "{platform}"', f'backend: "{PLATFORMS[platform][0]}"']
    lines = [
        "# Written by the mlmesh compiler. No name: Triton names the model after its folder.",
        *head,
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor(t) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor(t) for t in outputs) + "\n]",
    ]
    if instance_kind:
        lines.append(f"instance_group [ {{ kind: {instance_kind} count: 1 }} ]")
    if dynamic_batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {int(max_queue_delay_us)} }}")
    return "\n".join(lines) + "\n"


def parse_config(text: str):
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidArgument(f"not a Triton ModelConfig: {exc}", field=CONFIG_FILE) from None
    return config


def check_entry(folder: Path) -> list[str]:
    """Every rule the entry breaks, as readable problems (empty: Triton would accept its layout and config)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        return [f"{folder.name}: no {CONFIG_FILE}"]
    try:
        config = parse_config((folder / CONFIG_FILE).read_text())
    except InvalidArgument as exc:
        return [str(exc)]
    problems = [] if MODEL_NAME.match(folder.name) else [f"model name {folder.name!r} is not a plain folder name"]
    if config.name and config.name != folder.name:
        problems.append(f"name {config.name!r} differs from the folder name {folder.name!r}")
    problems += check_config(config)
    problems += check_files(folder, config)
    return problems


def validate_entry(folder: Path):
    """The parsed ModelConfig of a valid entry; InvalidArgument listing every problem otherwise."""
    problems = check_entry(folder)
    if problems:
        raise InvalidArgument("; ".join(problems), field="triton_entry")
    return parse_config((Path(folder) / CONFIG_FILE).read_text())


def write_entry(root: Path, name: str, config: str, files: dict[str, Path], *, version: int = 1) -> Path:
    """Lays out <root>/<name>/config.pbtxt and <root>/<name>/<version>/<file> (copies), staged and
    renamed into place so Triton never sees half an entry. An existing entry of that name is kept:
    mlmesh names entries after the compiled artifact's content id, so it already holds these bytes."""
    if not MODEL_NAME.match(name):
        raise InvalidArgument(f"model name {name!r} is not allowed", field="triton_model_name")
    final = Path(root) / name
    if final.exists():
        return final
    staging = Path(root) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=staging))
    try:
        (tmp / CONFIG_FILE).write_text(config)
        (tmp / str(version)).mkdir()
        for target, source in files.items():
            shutil.copyfile(source, tmp / str(version) / target)
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
