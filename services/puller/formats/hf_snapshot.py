"""A transformers snapshot push (what `save_pretrained` writes): config.json, tokenizer files, safetensors.

Mirrors what a hub pull stores and what serving accepts: never custom code (a config with `auto_map`,
or .py files, is refused), pickle weights only beside safetensors ones (then removed, as a hub pull
never fetches them), and for a sequence classifier the task and its id2label classes, which serving
checks `class_labels` against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.core.artifacts.safetensors_guard import check_safetensors
from services.core.errors import InvalidArgument
from services.puller.formats.files import CODE_SUFFIXES, field_of, sniff
from services.puller.formats.options import ImportOptions, Progress
from services.puller.weights import is_pickle, is_safetensors

TASK = "text-classification"
INTERFACES = ["classifier", "analyzer"]  # serving's TRANSFORMERS_BACKENDS, classifier first
MAX_HEADER_BYTES = 100 * 1024 * 1024


def import_snapshot(folder: Path, paths: list[str], options: ImportOptions, progress: Progress) -> dict[str, Any]:
    config = _config(folder)
    for opt, value in (("window", options.window), ("feature_names", options.feature_names),
                       ("reference", options.reference)):
        if value:
            raise InvalidArgument("a transformers text model takes no " + opt.replace("_", " "), field=opt)
    code = [p for p in paths if p.lower().endswith(CODE_SUFFIXES)]
    if code:
        raise InvalidArgument(f"{code[0]} is code; serving never runs code shipped with a model, push the snapshot "
                              "without it", field=field_of(code[0]))
    weights = [p for p in paths if is_safetensors(p)]
    pickles = [p for p in paths if is_pickle(p)]
    if pickles and not weights:
        also = " (allow_pickle does not change this for a push)" if options.allow_pickle else ""
        raise InvalidArgument(f"the snapshot has only pickle weights ({', '.join(pickles[:3])}), which can run code "
                              f"when loaded; refused{also}. Save it with save_pretrained(safe_serialization=True)",
                              field=field_of(pickles[0]))
    if not weights:
        raise InvalidArgument("the snapshot has no .safetensors weights", field="files")
    for rel in paths:
        if rel not in pickles and not is_safetensors(rel) and sniff(folder / rel) in ("pickle", "torch-pickle"):
            raise InvalidArgument(f"{rel} is a Python pickle, which can run code when loaded; refused",
                                  field=field_of(rel))
    for rel in weights:
        progress("check", f"checking the safetensors header of {rel}")
        check_safetensors(folder / rel, max_header_bytes=MAX_HEADER_BYTES, label=rel)
    for rel in pickles:  # safetensors win: the pickle copies would never be loaded, so they are not kept
        (folder / rel).unlink()
        progress("check", f"removed {rel}: pickle weights beside safetensors ones are never stored")
    meta: dict[str, Any] = {"source": "push"}
    architectures = config.get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        classes = _id2label(config)
        if options.labels and list(options.labels) != classes:
            raise InvalidArgument(f"labels {list(options.labels)} differ from config.json's id2label {classes}, "
                                  "which serving checks them against; edit id2label instead", field="labels")
        interfaces = INTERFACES
        meta.update({"task": TASK, "class_labels": classes})
    else:
        interfaces = []
        if options.labels:
            raise InvalidArgument("labels apply to a sequence classifier; config.json names "
                                  f"{architectures}", field="labels")
    if options.interface and options.interface not in interfaces:
        raise InvalidArgument(f"a transformers snapshot of {architectures} backs {interfaces}; serving runs "
                              "sequence classifiers (text-classification) only", field="interface")
    if interfaces:
        meta.update({"interfaces": list(interfaces), "interface": options.interface or interfaces[0]})
    return meta


def _config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"config.json is not readable JSON: {str(exc)[:200]}",
                              field=field_of("config.json")) from None
    if not isinstance(config, dict):
        raise InvalidArgument("config.json is not a JSON object", field=field_of("config.json"))
    if "auto_map" in config:
        raise InvalidArgument("config.json names custom code (auto_map); serving never runs code shipped with a "
                              "model (trust_remote_code is never set)", field=field_of("config.json"))
    return config


def _id2label(config: dict[str, Any]) -> list[str]:
    raw = config.get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError):
        id2label = {}
    labels = [id2label[i] for i in sorted(id2label)]
    if not labels or sorted(id2label) != list(range(len(labels))) or len(set(labels)) != len(labels):
        raise InvalidArgument("config.json needs id2label with one unique label per class id 0..n-1",
                              field=field_of("config.json"))
    return labels
