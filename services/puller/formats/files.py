"""The pushed folder's files, and what each one is by its content (a suffix proves nothing).

Only bytes are read here, never a loader: a pickle or a torch.export archive is recognised by its
opcodes or zip entries and refused before any library that could run it sees the file.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

from services.core.errors import InvalidArgument

# Content kinds `sniff` answers, and the format option each belongs to.
FORMAT_OF_KIND = {
    "onnx": "onnx", "xgboost-json": "xgboost", "xgboost-ubj": "xgboost", "lightgbm-text": "lightgbm",
    "safetensors": "safetensors",
}
KIND_WORDS = {
    "onnx": "an ONNX model", "xgboost-json": "an XGBoost JSON model", "xgboost-ubj": "an XGBoost UBJSON model",
    "lightgbm-text": "a LightGBM text model", "safetensors": "a safetensors file", "pickle": "a Python pickle",
    "torch-pickle": "a torch pickle checkpoint", "pt2": "a torch.export program (.pt2)", "zip": "a zip archive",
    "unknown": "no format this mesh imports",
}
CODE_SUFFIXES = (".py", ".pyc", ".so")  # serving never runs code shipped with a model
_HEAD = 64 * 1024
_PICKLE_PROTOCOLS = range(2, 6)  # b"\x80" + protocol byte: what pickle.dumps/joblib/torch.save write


def field_of(rel: str) -> str:
    return f"files[{rel}]"


def list_files(folder: Path, *, exclude: Path | None = None) -> list[str]:
    """Every regular file under `folder` (relative, forward slashes, sorted), minus `exclude`.

    A symlink anywhere is refused: a later reader would follow it out of the folder."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise InvalidArgument(f"{rel} is a symbolic link; push regular files only", field=field_of(rel))
            if name in files and not stat.S_ISREG(mode):
                raise InvalidArgument(f"{rel} is not a regular file", field=field_of(rel))
            if name in files and (exclude is None or path != exclude):
                found.append(rel)
    return sorted(found)


def sniff(path: Path) -> str:
    """What the file is by content: one of KIND_WORDS' keys, or "empty"."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS:
        return "pickle"
    if head[:4] == b"PK\x03\x04":
        return _zip_kind(path)
    if _is_safetensors(head, size):
        return "safetensors"
    text = head.lstrip()
    if text[:1] == b"{":
        if b"learner" in head[:256] and text[1:2] not in (b'"', b"\n", b" ", b"\r", b"\t"):
            return "xgboost-ubj"  # UBJSON: "{" then a length marker, then the key
        if _json_has_learner(path):
            return "xgboost-json"
    if head.startswith(b"tree\n") or b"\nversion=v" in head[:512]:
        return "lightgbm-text"
    if _parses_as_onnx(path):
        return "onnx"
    return "unknown"


def pickle_flavour(path: Path) -> str:
    """Whose pickle it is, from the module names near its start: "sklearn", "torch" or ""."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if b"sklearn" in head or b"joblib" in head or b"xgboost.sklearn" in head or b"lightgbm.sklearn" in head:
        return "sklearn"
    if b"torch" in head:
        return "torch"
    return ""


def refuse_code_carrier(kind: str, rel: str, path: Path, allow_pickle: bool) -> None:
    """Pickles and torch.export archives run code when loaded: refused with how to convert them."""
    field = field_of(rel)
    if kind == "pt2":
        raise InvalidArgument(f"{rel} is a torch.export program (.pt2); torch.export programs can run code when "
                              "loaded; export to ONNX with torch.onnx.export", field=field)
    if kind not in ("pickle", "torch-pickle"):
        return
    flavour = "torch" if kind == "torch-pickle" else pickle_flavour(path)
    if flavour == "sklearn":
        raise InvalidArgument(
            f"{rel} is a Python pickle (scikit-learn/joblib), which can run code when loaded; refused. Convert it "
            "to ONNX with skl2onnx: skl2onnx.to_onnx(model, X[:1].astype('float32'), options={'zipmap': False}) "
            "and push the .onnx file", field=field)
    if flavour == "torch":
        also = (" allow_pickle does not change this for a push: serving never loads a pickle." if allow_pickle
                else "")
        raise InvalidArgument(
            f"{rel} is a torch pickle checkpoint (torch.save), which can run code when loaded; refused.{also} "
            "Export it with torch.onnx.export (or push a safetensors state dict with an architecture)",
            field=field)
    raise InvalidArgument(f"{rel} is a Python pickle, which can run code when loaded; refused. Push ONNX, "
                          "XGBoost JSON/UBJ, LightGBM text or safetensors", field=field)


def refuse_extra_file(folder: Path, rel: str, allow_pickle: bool) -> None:
    """A file pushed beside a model (not its graph, not its external data): code and pickles are refused."""
    if rel.lower().endswith(CODE_SUFFIXES):
        raise InvalidArgument(f"{rel} is code; serving never runs code shipped with a model, push without it",
                              field=field_of(rel))
    path = folder / rel
    with open(path, "rb") as fh:
        head = fh.read(2)
    kind = "pickle" if head[:1] == b"\x80" and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS else (
        _zip_kind(path) if head == b"PK" else "")
    refuse_code_carrier(kind, rel, path, allow_pickle)


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()  # the central directory only; no member is extracted
    except (zipfile.BadZipFile, OSError, ValueError):
        return "unknown"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch-pickle"
    if any(n.endswith(("/archive_format", "/serialized_exported_program.json")) or "/models/" in n for n in names):
        return "pt2"
    if any(n.endswith(".pkl") for n in names):
        return "torch-pickle"
    return "zip"


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _json_has_learner(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return False
    return isinstance(data, dict) and isinstance(data.get("learner"), dict)


def _parses_as_onnx(path: Path) -> bool:
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf raises several kinds on garbage; any means "not ONNX"
        return False
    return model.ir_version > 0 and model.HasField("graph") and len(model.graph.output) > 0
