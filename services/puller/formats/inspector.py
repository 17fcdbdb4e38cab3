"""`inspect_model`: a pushed folder -> (framework, format, docs/byom.md metadata), or a refusal naming the
field at fault. Blocking, and meant to run in a throw-away subprocess (see `isolated.py`): parsers of
hostile files may crash, and only the subprocess should go down with them.

Which file is the model: a transformers snapshot has config.json; a folder with one .onnx graph is that
graph (the other files are its external data); otherwise the push must be a single file. What the file
is comes from its content (`files.sniff`); an explicit format that disagrees is refused.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from services.core.canonical import find_non_finite
from services.core.errors import FailedPrecondition, InvalidArgument
from services.puller.formats.binding import bind, binding_metadata, signature
from services.puller.formats.booster import import_booster
from services.puller.formats.files import (
    FORMAT_OF_KIND, KIND_WORDS, field_of, list_files, refuse_code_carrier, refuse_extra_file, sniff,
)
from services.puller.formats.hf_snapshot import import_snapshot
from services.puller.formats.onnx_checks import load_proto
from services.puller.formats.onnx_model import inspect_onnx
from services.puller.formats.options import ImportedModel, ImportOptions, Progress, no_progress
from services.puller.formats.pickled import convert_allowed_pickle
from services.puller.formats.reference import sample_metadata
from services.puller.formats.torch_weights import import_safetensors

_IMPORTED = "ONNX, XGBoost JSON/UBJ, LightGBM text, safetensors with an architecture, a transformers snapshot"


def inspect_model(folder: Path, options: ImportOptions, progress: Progress = no_progress) -> ImportedModel:
    options.check()
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise InvalidArgument("the pushed files are not a folder", field="files")
    paths = list_files(folder, exclude=Path(options.reference) if options.reference else None)
    if not paths:
        raise InvalidArgument("no model file was pushed", field="files")
    progress("detect", f"{len(paths)} file(s)")
    if options.format == "hf" or (options.format == "auto" and "config.json" in paths):
        if "config.json" not in paths:
            raise InvalidArgument("a transformers snapshot needs config.json at the top of the folder",
                                  field="format")
        progress("detect", "a transformers snapshot")
        return _finish(ImportedModel("transformers", "safetensors", import_snapshot(folder, paths, options,
                                                                                    progress)))
    rel = _model_file(paths)
    if options.allow_pickle and sniff(folder / rel) == "torch-pickle":
        progress("convert", f"{rel}: an allowed torch checkpoint, read weights-only into safetensors")
        rel = convert_allowed_pickle(folder, rel)
    kind = _kind(folder, rel, options)
    progress("detect", f"{rel}: {KIND_WORDS.get(kind, kind)}")
    if kind == "onnx":
        return _finish(ImportedModel("onnx", "onnx", _import_onnx(folder, rel, paths, options, progress)))
    if kind == "safetensors":
        return _finish(ImportedModel("torch", "safetensors", import_safetensors(folder, rel, options, progress)))
    if kind.startswith("xgboost"):
        from services.puller.formats.xgboost_model import load_xgboost

        booster = load_xgboost(folder, rel, kind)
    else:
        from services.puller.formats.lightgbm_model import load_lightgbm

        booster = load_lightgbm(folder, rel)
    return _finish(ImportedModel(booster.framework, booster.format,
                                 import_booster(folder, booster, options, progress)))


def _model_file(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0]
    graphs = [p for p in paths if p.lower().endswith(".onnx")]
    if len(graphs) == 1:
        return graphs[0]
    if graphs:
        raise InvalidArgument(f"the folder holds {len(graphs)} ONNX graphs ({', '.join(graphs[:4])}); push one "
                              "model at a time", field="files")
    raise InvalidArgument(f"{len(paths)} files and neither config.json (a transformers snapshot) nor one .onnx "
                          "graph; push a single model file", field="files")


def _kind(folder: Path, rel: str, options: ImportOptions) -> str:
    path = folder / rel
    kind = sniff(path)
    if kind == "empty":
        raise InvalidArgument(f"{rel} is empty", field=field_of(rel))
    refuse_code_carrier(kind, rel, path, options.allow_pickle)
    wanted = options.format
    if kind in FORMAT_OF_KIND:
        if wanted not in ("auto", FORMAT_OF_KIND[kind]):
            raise InvalidArgument(f"{rel} is {KIND_WORDS[kind]}, not {wanted}", field="format")
        return kind
    if wanted == "onnx" or (wanted == "auto" and PurePosixPath(rel).suffix.lower() == ".onnx"):
        load_proto(path, rel)  # raises with the parser's own words
    if wanted != "auto":
        raise InvalidArgument(f"{rel} is {KIND_WORDS.get(kind, kind)}, not {wanted}", field="format")
    raise InvalidArgument(f"{rel} is {KIND_WORDS.get(kind, kind)}; this mesh imports {_IMPORTED}",
                          field=field_of(rel))


def _import_onnx(folder: Path, rel: str, paths: list[str], options: ImportOptions, progress) -> dict[str, Any]:
    graph = inspect_onnx(folder, rel, progress)
    for other in paths:
        if other != rel and other not in graph.data_files:
            refuse_extra_file(folder, other, options.allow_pickle)
    binding = bind(graph.facts, options)
    progress("bind", f"{binding.kind}: interfaces {binding.interfaces}")
    meta: dict[str, Any] = {"source": "push", "runtime": {"kind": "onnxruntime", "file": graph.runtime_file},
                            "signature": signature(graph.facts, binding), **binding_metadata(binding)}
    if options.reference:
        if binding.kind == "text":
            raise InvalidArgument("a text model takes no numeric reference sample", field="reference")
        progress("reference", "reading the reference sample")
        sample, _ = sample_metadata(options.reference, binding.feature_names, folder,
                                    series_window=binding.window if binding.kind == "series" else None,
                                    given_names=bool(options.feature_names))
        meta.update(sample)
    return meta


def _finish(model: ImportedModel) -> ImportedModel:
    """Metadata is stored as canonical JSON: plain values and finite numbers only."""
    bad = find_non_finite(model.metadata, "metadata")
    if bad:
        raise FailedPrecondition(f"inspecting the model gave a non-finite number at {bad}", field="files")
    json.dumps(model.metadata, allow_nan=False)
    return model
