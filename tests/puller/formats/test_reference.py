"""Reference samples: CSV and Parquet, matched by name or position, every bad cell refused with its row and
column, statistics in feature order and reference.npy beside the model."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.errors import InvalidArgument
from services.puller.formats import ImportOptions, inspect_model
from tests.puller.formats.conftest import FEATURES, check_contract, push, write_csv


def test_csv_matched_by_name_with_extra_columns(tmp_path, data, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    columns = ["target", "volume", "low", "high", "open"]
    rows = np.hstack([data.y_reg[:, None], data.x[:, ::-1]])
    reference = write_csv(tmp_path / "sample.csv", columns, rows)
    meta = inspect_model(folder, ImportOptions(feature_names=tuple(FEATURES), reference=reference)).metadata
    check_contract(meta, folder)
    x = data.x.astype(np.float64)
    np.testing.assert_allclose(meta["training_stats"]["mean"], x.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(meta["training_stats"]["std"], x.std(axis=0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(meta["reference"]["min"], x.min(axis=0))
    np.testing.assert_allclose(meta["reference"]["max"], x.max(axis=0))
    assert meta["reference"]["rows"] == meta["reference"]["sample_rows"] == 200
    assert meta["reference"]["file"] == "reference.npy" and len(meta["reference"]["sha256"]) == 64
    np.testing.assert_array_equal(np.load(folder / "reference.npy", allow_pickle=False), x)


def test_csv_matched_by_position_and_sample_capped(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    rows = np.tile(np.array([[1.0, 2.0, 3.0, 5.0], [1.0, 4.0, 5.0, 7.0]]), (700, 1))
    reference = write_csv(tmp_path / "sample.csv", ["a", "b", "c", "d"], rows)
    meta = inspect_model(folder, ImportOptions(reference=reference)).metadata
    assert meta["reference"]["rows"] == 1400 and meta["reference"]["sample_rows"] == 1024
    assert meta["training_stats"]["std"][0] == 0.0  # a constant column
    assert meta["training_stats"]["mean"] == [1.0, 3.0, 4.0, 6.0]
    assert np.load(folder / "reference.npy", allow_pickle=False).shape == (1024, 4)
    # the model names no features of its own: the sample's header names them, and calls use those names
    assert meta["feature_names"] == ["a", "b", "c", "d"]


def test_given_feature_names_win_over_the_reference_header(tmp_path, sk_regressor):
    rows = np.tile(np.array([[1.0, 2.0, 3.0, 5.0], [1.0, 4.0, 5.0, 7.0]]), (10, 1))
    reference = write_csv(tmp_path / "sample.csv", ["a", "b", "c", "d"], rows)
    meta = inspect_model(push(tmp_path, sk_regressor.files),
                         ImportOptions(feature_names=("w", "x", "y", "z"), reference=reference)).metadata
    assert meta["feature_names"] == ["w", "x", "y", "z"]


def test_parquet_reference(tmp_path, data, sk_regressor):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = push(tmp_path, sk_regressor.files)
    table = pa.table({name: data.x[:, i] for i, name in enumerate(FEATURES)} | {"id": np.arange(200)})
    pq.write_table(table, tmp_path / "sample.parquet")
    meta = inspect_model(folder, ImportOptions(feature_names=tuple(FEATURES),
                                               reference=str(tmp_path / "sample.parquet"))).metadata
    np.testing.assert_allclose(meta["training_stats"]["mean"], data.x.astype(np.float64).mean(axis=0), rtol=1e-9)

    bad = pa.table({name: pa.array([1.0, None, 3.0]) if name == "low" else pa.array([1.0, 2.0, 3.0])
                    for name in FEATURES})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "again", sk_regressor.files),
                      ImportOptions(feature_names=tuple(FEATURES), reference=str(tmp_path / "bad.parquet")))
    assert refused.value.field == "reference" and "row 2, column 'low'" in refused.value.message


@pytest.mark.parametrize("cell,expected", [("abc", "'abc' is not a number"), ("nan", "not a finite number"),
                                           ("", "is not a number")])
def test_bad_cell_is_refused_with_row_and_column(tmp_path, sk_regressor, cell, expected):
    path = tmp_path / "sample.csv"
    path.write_text(f"open,high,low,volume\n1,2,3,4\n5,6,{cell},8\n")
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, sk_regressor.files),
                      ImportOptions(feature_names=tuple(FEATURES), reference=str(path)))
    assert refused.value.field == "reference"
    assert "row 2, column 'low'" in refused.value.message and expected in refused.value.message


def test_columns_that_fit_neither_way_are_refused(tmp_path, sk_regressor):
    path = tmp_path / "sample.csv"
    path.write_text("open,high,close\n1,2,3\n")
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, sk_regressor.files),
                      ImportOptions(feature_names=tuple(FEATURES), reference=str(path)))
    assert refused.value.field == "reference" and "missing ['low', 'volume']" in refused.value.message
    path.write_text("open,high,low,volume\n")
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", sk_regressor.files), ImportOptions(reference=str(path)))
    assert refused.value.field == "reference" and "no rows" in refused.value.message
    (tmp_path / "sample.xlsx").write_bytes(b"PK")
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", sk_regressor.files), ImportOptions(reference=str(tmp_path / "sample.xlsx")))
    assert refused.value.field == "reference"


def test_series_reference_is_one_column_of_values(tmp_path, torch_models):
    series = np.arange(100, dtype=np.float64)
    reference = write_csv(tmp_path / "series.csv", ["value"], series[:, None])
    folder = push(tmp_path, torch_models["conv"].files)
    meta = inspect_model(folder, ImportOptions(interface="forecaster", reference=reference)).metadata
    assert meta["training_stats"] == {"mean": [49.5], "std": [float(series.std(ddof=1))]}
    assert meta["reference"]["min"] == [0.0] and meta["reference"]["max"] == [99.0]
