"""Every kind of run directory nnopt writes, and a bare model file, is accepted where a model is expected."""

import json
import shutil

import numpy as np
import pytest
import yaml
from gpu import same_metrics
from use_helpers import cli

import nnopt


def _same_predictions(a, b, data):
    return list(nnopt.predict(a, data).predictions) == list(nnopt.predict(b, data).predictions)


def _evaluate_test(run_cli, source, data, out):
    code, stdout, err = run_cli("evaluate", source, "--data", data, "--split", "test", "--json", "--out", out)
    assert code == 0, err
    return json.loads(stdout)


@pytest.fixture(scope="module")
def tune_run(iris_csv, tmp_path_factory):
    base = tmp_path_factory.mktemp("tune")
    spec = {"data": str(iris_csv), "target": "species", "model": "mlp:{hidden}",
            "train": {"epochs": 2, "batch_size": 32},
            "space": {"hidden": {"type": "int", "low": 4, "high": 8}, "lr": {"type": "float", "low": 1e-3,
                                                                          "high": 1e-2, "log": True}}}
    (base / "spec.yaml").write_text(yaml.safe_dump(spec))
    code, _, err = cli("tune", base / "spec.yaml", "--trials", "2", "--seed", "3", "--out", base / "run", "--json")
    assert code == 0, err
    return base / "run"


def test_tune_run_and_its_best_dir(run_cli, iris_csv, tune_run, tmp_path):
    summary = json.loads((tune_run / "best" / "summary.json").read_text())
    for source in (tune_run, tune_run / "best"):  # the split comes from the tune's config (seed 3)
        result = _evaluate_test(run_cli, source, iris_csv, tmp_path / f"ev-{source.name}")
        assert same_metrics(result["metrics"], summary["metrics"]["test"])
        assert "best" in result["model"]


def test_search_run(run_cli, iris_csv, tmp_path):
    out = tmp_path / "search"
    code, _, err = run_cli("search", "--data", iris_csv, "--target", "species", "--trials", "2", "--epochs", "1",
                           "--seed", "0", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads((out / "best" / "summary.json").read_text())
    result = _evaluate_test(run_cli, out, iris_csv, tmp_path / "ev")
    assert same_metrics(result["metrics"], summary["metrics"]["test"])


def test_compress_run_and_its_nnz_file(run_cli, iris_csv, iris_run, tmp_path):
    out = tmp_path / "compress"
    code, _, err = run_cli("compress", iris_run, "--quantize", "int8", "--out", out, "--json")
    assert code == 0, err
    chosen = json.loads((out / "results.json").read_text())["chosen"]
    row = next(r for r in json.loads((out / "results.json").read_text())["variants"] if r["name"] == chosen)
    for source in (out, out / "compressed.nnz"):  # the header keeps the preprocessing and class names
        result = _evaluate_test(run_cli, source, iris_csv, tmp_path / f"ev-{source.name}")
        assert result["metrics"]["accuracy"] == pytest.approx(row["test"], abs=1e-12)
        assert set(nnopt.predict(source, iris_csv).predictions) <= {"setosa", "versicolor", "virginica"}


def test_compare_run_trains_its_best_run_again(run_cli, iris_csv, tmp_path):
    out = tmp_path / "compare"
    code, _, err = run_cli("compare", "--data", iris_csv, "--target", "species", "--model", "mlp:8", "--optimizers",
                           "adam,sgd", "--seeds", "2", "--epochs", "3", "--out", out, "--json")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    winner = min(results["optimizers"], key=lambda r: r["rank"])["optimizer"]
    runs = [r for r in results["runs"] if r["optimizer"] == winner]
    best = max(runs, key=lambda r: r["final"]["val_accuracy"])  # the first seed on ties, as documented
    result = _evaluate_test(run_cli, out, iris_csv, tmp_path / "ev")
    assert result["metrics"]["accuracy"] == best["final"]["test_accuracy"]
    assert same_metrics(result["metrics"]["loss"], best["final"]["test_loss"])
    assert (out / "best" / "model.pt").is_file()  # kept: the next use loads it
    assert _evaluate_test(run_cli, out, iris_csv, tmp_path / "again")["metrics"] == result["metrics"]


def test_model_file_and_automl_layout(iris_csv, iris_run, tmp_path):
    assert _same_predictions(iris_run, iris_run / "model.pt", iris_csv)
    automl = tmp_path / "automl"
    shutil.copytree(iris_run, automl / "final")
    (automl / "config.json").write_text(json.dumps({"command": "automl"}))
    predictor = nnopt.inference.load_predictor(automl)
    assert predictor.path == automl / "final" / "model.pt" and predictor.settings["target"] == "species"
    assert _same_predictions(iris_run, automl, iris_csv)
    nnopt.compress.save_compressed(automl / "compressed.nnz", predictor.model, predictor.meta)
    assert nnopt.inference.load_predictor(automl).path == automl / "compressed.nnz"  # preferred when present
    assert _same_predictions(iris_run, automl, iris_csv)


def test_compare_run_on_a_csv_whose_target_is_not_the_last_column(run_cli, iris_csv, tmp_path):
    lines = iris_csv.read_text().splitlines()
    moved = tmp_path / "first.csv"
    moved.write_text("\n".join(",".join([row.split(",")[-1], *row.split(",")[:-1]]) for row in lines) + "\n")
    out = tmp_path / "compare"
    code, _, err = run_cli("compare", "--data", moved, "--target", "species", "--model", "mlp:8", "--optimizers",
                           "adam", "--seeds", "1", "--epochs", "2", "--out", out, "--json")
    assert code == 0, err
    best = json.loads((out / "results.json").read_text())["runs"][0]
    result = _evaluate_test(run_cli, out, moved, tmp_path / "ev")
    assert result["metrics"]["accuracy"] == best["final"]["test_accuracy"]


def test_a_fit_result_predicts_with_its_preprocessing_with_or_without_a_run_directory(tmp_path):
    # nnopt.predict(result, X) right after nnopt.fit: the data's scaling and class names apply, as from the run
    # directory (result.model alone is a bare network, given rows unscaled)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    kept = nnopt.fit("mlp:32", (X, y), epochs=3, seed=0, out=tmp_path / "run")
    memory = nnopt.fit("mlp:32", (X, y), epochs=3, seed=0)
    assert memory.run_dir is None
    from_dir = nnopt.predict(tmp_path / "run", X, proba=True)
    for result in (kept, memory):
        got = nnopt.predict(result, X, proba=True)
        assert np.array_equal(got.predictions, from_dir.predictions)
        assert np.allclose(got.probabilities, from_dir.probabilities, atol=1e-6)
    scored = nnopt.evaluate(memory, (X, y)).metrics
    assert scored["accuracy"] == nnopt.evaluate(tmp_path / "run", (X, y)).metrics["accuracy"] > 0.9
    assert nnopt.export(memory, "onnx", tmp_path / "m.onnx").agreement >= 0.999
