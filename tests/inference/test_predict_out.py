"""What `predict --out` writes: CSV, Parquet for a .parquet name (the same columns and values, numbers kept as
numbers), and an error for a name of another format it does not write (it wrote CSV text under that name)."""

import csv

import pandas as pd
import pytest

import nnopt


def test_parquet_out_holds_the_csv_columns(run_cli, iris_csv, iris_run, tmp_path):
    code, _, err = run_cli("predict", iris_run, "--data", iris_csv, "--proba", "--out", tmp_path / "p.csv")
    assert code == 0, err
    code, _, err = run_cli("predict", iris_run, "--data", iris_csv, "--proba", "--out", tmp_path / "p.parquet")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "p.parquet")
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert list(table.columns) == rows[0]
    assert table["prediction"].tolist() == [r[0] for r in rows[1:]]
    assert table["proba_setosa"].dtype.kind == "f"
    assert table["proba_setosa"].tolist() == pytest.approx([float(r[1]) for r in rows[1:]], rel=1e-5)


def test_regression_values_to_parquet(tmp_path):
    fit = nnopt.fit("linear", "linear", epochs=1)
    expected = nnopt.predict(fit, "linear").predictions
    result = nnopt.predict(fit, "linear", out=tmp_path / "p.parquet")
    assert result.path == tmp_path / "p.parquet"
    assert pd.read_parquet(tmp_path / "p.parquet")["prediction"].tolist() == pytest.approx(expected.tolist())


@pytest.mark.parametrize("name", ["p.json", "p.npy", "p.xlsx", "P.TSV"])
def test_a_format_predict_does_not_write_is_refused(run_cli, iris_csv, iris_run, tmp_path, name):
    code, _, err = run_cli("predict", iris_run, "--data", iris_csv, "--out", tmp_path / name)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"--out names a {name[1:].lower()} file; predictions are written as CSV" in err
    assert not (tmp_path / name).exists()
    with pytest.raises(nnopt.UsageError, match=r"out= names a .* file; .* give e.g. out='.*[pP]\.csv'"):
        nnopt.predict(iris_run, iris_csv, out=tmp_path / name)
