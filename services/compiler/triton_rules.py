"""Triton's rules for a model's config and files, checked on a parsed ModelConfig (see triton_config).

Config: a known platform (with its backend) or a known backend; max_batch_size >= 0; inputs and
outputs named, unique, typed, with dims of -1 or positive sizes; PyTorch models name tensors
`<name>__<index>` (Triton's NAMED_INDEX convention; mlmesh writes INPUT__0 / OUTPUT__0 for what it
exports, an imported ONNX graph keeps its own names); a tensor's `reshape` is what the graph sees;
dynamic batching only with max_batch_size > 0 and preferred sizes within it; TensorRT plans on GPU
instances only. Files: numeric version folders, each holding the model file; an ONNX graph's inputs
and outputs (names, types, batch dimension, dims) must agree with the config, and its external data
must sit beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

PLATFORMS = {  # platform -> (backend, default model file): Triton core's constants
    "onnxruntime_onnx": ("onnxruntime", "model.onnx"),
    "pytorch_libtorch": ("pytorch", "model.pt"),
    "torch_aoti": ("pytorch", "model.pt2"),
    "tensorrt_plan": ("tensorrt", "model.plan"),
}
BACKEND_FILES = {"onnxruntime": "model.onnx", "pytorch": "model.pt", "tensorrt": "model.plan", "python": "model.py"}
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64", 3: "TYPE_INT8", 5: "TYPE_INT16",
              6: "TYPE_INT32", 7: "TYPE_INT64", 2: "TYPE_UINT8", 9: "TYPE_BOOL", 8: "TYPE_STRING"}
NAMED_INDEX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*__(\d+)$")


def model_file(config) -> str:
    if config.default_model_filename:
        return config.default_model_filename
    if config.platform in PLATFORMS:
        return PLATFORMS[config.platform][1]
    return BACKEND_FILES.get(config.backend, "")


def check_config(config) -> list[str]:
    from tritonclient.grpc import model_config_pb2 as mc

    problems = []
    if config.platform:
        if config.platform not in PLATFORMS:
            problems.append(f"platform {config.platform!r} is not one of {sorted(PLATFORMS)}")
        elif config.backend and config.backend != PLATFORMS[config.platform][0]:
            problems.append(f"platform {config.platform!r} runs on backend {PLATFORMS[config.platform][0]!r}, "
                            f"not {config.backend!r}")
    elif not config.backend:
        problems.append("neither platform nor backend is set")
    elif config.backend not in BACKEND_FILES:
        problems.append(f"backend {config.backend!r} is not one of {sorted(BACKEND_FILES)}")
    if config.max_batch_size < 0:
        problems.append("max_batch_size must be >= 0")
    pytorch = config.platform in ("pytorch_libtorch", "torch_aoti") or (config.backend == "pytorch" and not config.platform)
    for role, tensors in (("input", config.input), ("output", config.output)):
        if not tensors and config.backend != "python":
            problems.append(f"no {role}s")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            problems.append(f"{role} names are not unique: {names}")
        for i, t in enumerate(tensors):
            where = f"{role}[{i}] {t.name!r}"
            if not t.name:
                problems.append(f"{role}[{i}] has no name")
            if t.data_type == mc.TYPE_INVALID:
                problems.append(f"{where} has no data_type")
            if not t.dims and not t.HasField("reshape"):
                problems.append(f"{where} has no dims")
            if any(d == 0 or d < -1 for d in t.dims):
                problems.append(f"{where} dims {list(t.dims)} must be -1 or positive")
        if pytorch:
            indices = [NAMED_INDEX.match(n) for n in names]
            if not all(indices) or sorted(int(m.group(1)) for m in indices) != list(range(len(names))):
                problems.append(f"PyTorch {role}s must be named <name>__<index> with indices 0..{len(names) - 1}: {names}")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        bad = [s for s in config.dynamic_batching.preferred_batch_size if not 1 <= s <= config.max_batch_size]
        if bad:
            problems.append(f"preferred_batch_size {bad} outside 1..max_batch_size")
    for i, group in enumerate(config.instance_group):
        if config.platform == "tensorrt_plan" and group.kind == mc.ModelInstanceGroup.KIND_CPU:
            problems.append(f"instance_group[{i}]: a TensorRT plan runs on GPU instances only")
        if group.count < 0:
            problems.append(f"instance_group[{i}]: count must be >= 0")
    return problems


def check_files(folder: Path, config) -> list[str]:
    name = model_file(config)
    versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        return ["no numeric version folder (<model>/<version>/" + (name or "model.<ext>") + ")"]
    problems = []
    for version in versions:
        if int(version.name) < 1:
            problems.append(f"version folder {version.name!r}: versions start at 1")
        path = version / name
        if not name or not path.exists():
            problems.append(f"version {version.name}: no {name or 'model file'}")
        elif name.endswith(".onnx"):
            problems += check_onnx(path, config)
    return problems


def check_onnx(path: Path, config) -> list[str]:
    """What Triton's onnxruntime backend checks when it loads the graph against the config."""
    import onnx
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a damaged file: say so, not a parser trace
        return [f"{path.parent.name}/{path.name} is not an ONNX model: {type(exc).__name__}"]
    problems = []
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and not (path.parent / entry.value).is_file():
                problems.append(f"external data file {entry.value!r} is missing beside {path.name}")
    initializers = {t.name for t in model.graph.initializer}
    for role, graph_values, tensors in (("input", model.graph.input, config.input),
                                        ("output", model.graph.output, config.output)):
        graph = {v.name: v for v in graph_values if v.name not in initializers}
        if set(graph) != {t.name for t in tensors}:
            problems.append(f"graph {role}s {sorted(graph)} differ from the config's {sorted(t.name for t in tensors)}")
            continue
        for t in tensors:
            value = graph[t.name].type.tensor_type
            if ONNX_TYPES.get(value.elem_type) != mc.DataType.Name(t.data_type):
                problems.append(f"{role} {t.name!r}: graph type {ONNX_TYPES.get(value.elem_type, value.elem_type)} "
                                f"but config {mc.DataType.Name(t.data_type)}")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.shape.dim]
            if config.max_batch_size > 0:
                if not dims or dims[0] != -1:
                    problems.append(f"{role} {t.name!r}: max_batch_size > 0 needs a dynamic first (batch) "
                                    f"dimension, the graph has {dims}")
                    continue
                dims = dims[1:]
            want = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)  # what the graph sees
            if len(dims) != len(want) or any(c != -1 and g != c for g, c in zip(dims, want)):
                problems.append(f"{role} {t.name!r}: graph dims {dims} do not fit config dims {want}")
    return problems
