"""The reference sample a push may carry (CSV with a header row, or Parquet): per-feature statistics for the
serving rules, `reference.npy` beside the model, and the rows that prove a booster's conversion.

Columns are matched to the feature names by name when the header names them all (extra columns such as
a target are ignored), else by position when the widths match. Every used cell must be a finite number.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument

REFERENCE_FILE = "reference.npy"
SAMPLE_ROWS = 1024
FIELD = "reference"


@dataclass(frozen=True)
class Reference:
    values: np.ndarray   # float64 [rows, columns], columns in feature order
    sha256: str
    columns: tuple[str, ...] = ()   # the header's names of those columns


def feature_names_from(reference: Reference, names: list[str], *, given: bool) -> list[str]:
    """The model's feature names, or the reference header's when the model has none of its own (f0..fN, as a
    graph exported from a bare array has) and none were given: a sample names its columns, a user calls
    the model by those names."""
    columns = list(reference.columns)
    generated = names == [f"f{i}" for i in range(len(names))]
    usable = len(columns) == len(names) and len(set(columns)) == len(columns) and all(columns)
    return columns if generated and usable and not given else names


def read_reference(path_text: str, feature_names: list[str], *, series_window: int | None = None) -> Reference:
    """`series_window`: a forecaster's reference is one column of values, or rows of `series_window` values."""
    path = Path(path_text)
    if not path.is_file():
        raise InvalidArgument(f"{path.name}: no such file", field=FIELD)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, read = _csv(path)
    elif suffix in (".parquet", ".pq"):
        header, read = _parquet(path)
    else:
        raise InvalidArgument(f"{path.name}: a reference sample is a .csv or a .parquet file", field=FIELD)
    indices = _match(header, feature_names, series_window)
    values = read(indices)
    if values.shape[0] == 0:
        raise InvalidArgument(f"{path.name} has no rows", field=FIELD)
    return Reference(values, _sha256(path), tuple(header[i] for i in indices))


def _match(header: list[str], names: list[str], series_window: int | None) -> list[int]:
    if series_window is not None:
        if names[0] in header:
            return [header.index(names[0])]
        if len(header) in (1, series_window):
            return list(range(len(header)))
        raise InvalidArgument(f"the reference has {len(header)} columns ({header[:8]}); a forecaster's reference is "
                              f"one column {names[0]!r} of values or {series_window} columns (one window a row)",
                              field=FIELD)
    if all(n in header for n in names):
        return [header.index(n) for n in names]
    if len(header) == len(names):
        return list(range(len(names)))
    missing = [n for n in names if n not in header][:5]
    raise InvalidArgument(f"the reference's {len(header)} columns neither name every feature (missing {missing}) nor "
                          f"match the model's {len(names)} features by position", field=FIELD)


def _csv(path: Path):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise InvalidArgument(f"{path.name} is empty; a CSV reference needs a header row", field=FIELD)
    header = [h.strip() for h in rows[0]]

    def read(indices: list[int]) -> np.ndarray:
        out = np.empty((len(rows) - 1, len(indices)), dtype=np.float64)
        for r, row in enumerate(rows[1:]):
            if len(row) != len(header):
                raise InvalidArgument(f"row {r + 1} (line {r + 2}) has {len(row)} cells, the header {len(header)}",
                                      field=FIELD)
            for c, index in enumerate(indices):
                out[r, c] = _number(row[index], r + 1, header[index])
        return out

    return header, read


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise InvalidArgument(f"row {row}, column {column!r}: {cell[:40]!r} is not a number", field=FIELD) from None
    if not np.isfinite(value):
        raise InvalidArgument(f"row {row}, column {column!r}: {cell.strip()!r} is not a finite number", field=FIELD)
    return value


def _parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable Parquet file: {str(exc)[:200]}", field=FIELD) from None
    header = list(table.column_names)

    def read(indices: list[int]) -> np.ndarray:
        out = np.empty((table.num_rows, len(indices)), dtype=np.float64)
        for c, index in enumerate(indices):
            column, name = table.column(index), header[index]
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise InvalidArgument(f"column {name!r} is {column.type}, not a number", field=FIELD)
            mask = np.asarray(column.is_null())
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            bad = mask | ~np.isfinite(np.where(mask, 0.0, values))
            if bad.any():
                row = int(np.argmax(bad))
                what = "empty" if mask[row] else f"{values[row]!r}, not a finite number"
                raise InvalidArgument(f"row {row + 1}, column {name!r}: {what}", field=FIELD)
            out[:, c] = values
        return out

    return header, read


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_metadata(path: str, names: list[str], folder: Path, *, series_window: int | None,
                    given_names: bool) -> tuple[dict[str, Any], Reference]:
    """What a reference sample adds to a push's metadata: training_stats, reference, and (a table's header
    naming the columns of a model that names none) feature_names; writes reference.npy into `folder`."""
    reference = read_reference(path, names, series_window=series_window)
    stats, summary = summarise(reference, folder, series=series_window is not None)
    meta: dict[str, Any] = {"training_stats": stats, "reference": summary}
    if series_window is None:
        meta["feature_names"] = feature_names_from(reference, names, given=given_names)
    return meta, reference


def summarise(reference: Reference, folder: Path, *, series: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training_stats, reference metadata); writes `reference.npy` into `folder`.

    A series' statistics are over every value (one feature: the series). std is the sample standard
    deviation (ddof=1, as the demo's models record it); 0 for one row or a constant column."""
    values = reference.values
    columns = values.reshape(-1, 1) if series else values
    ddof = 1 if columns.shape[0] > 1 else 0
    stats = {"mean": _floats(columns.mean(axis=0)), "std": _floats(columns.std(axis=0, ddof=ddof))}
    sample = np.ascontiguousarray(values[:SAMPLE_ROWS], dtype=np.float64)
    target = folder / REFERENCE_FILE
    if target.exists():
        raise InvalidArgument(f"{REFERENCE_FILE} was pushed, but that name is where the reference sample goes; "
                              "rename it", field=f"files[{REFERENCE_FILE}]")
    with open(target, "wb") as fh:
        np.save(fh, sample, allow_pickle=False)
    meta = {"rows": int(values.shape[0]), "sample_rows": int(sample.shape[0]), "file": REFERENCE_FILE,
            "sha256": reference.sha256, "min": _floats(columns.min(axis=0)), "max": _floats(columns.max(axis=0))}
    return stats, meta


def _floats(array: np.ndarray) -> list[float]:
    return [float(v) if np.isfinite(v) else 0.0 for v in array]
