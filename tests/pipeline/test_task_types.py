"""Every task type through every command: regression (a built-in set and a CSV), binary and multi-class
classification through automl, evaluate, predict and export; and, on a regression and a binary table, every other
command (train, compare, tune, search, compress) from the CLI, each on its own run directory."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine, make_friedman1
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, r2_score

import nnopt
from nnopt.inference import load_predictor

# automl's budget per case (the plan is priced pessimistically: the runs end 10-20 s before it). Friedman's
# regression needs 60 s: with less (40 s; 45 s on busy cores) its trials fell to a few epochs each and the network
# missed its margin over the line. The others reached theirs at 45 s on busy cores, as at 60 s.
BUDGETS = {"regression-builtin": "45s", "regression-csv": "60s", "binary-csv": "45s", "multiclass-csv": "45s"}


def _write_csv(path, names, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(rows)
    return path


def friedman_csv(path):
    """Friedman's regression problem #1: y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + noise; x5..x9
    are noise features. Non-linear, so a network beats a linear model by a wide margin."""
    X, y = make_friedman1(n_samples=800, n_features=10, noise=1.0, random_state=0)
    return _write_csv(path, [f"x{i}" for i in range(10)] + ["y"], [[*map(float, x), float(t)] for x, t in zip(X, y)])


def breast_cancer_csv(path):
    """Binary, with the labels as text (as a user's table has them)."""
    data = load_breast_cancer()
    names = np.array(["malignant", "benign"])[data.target]
    columns = [n.replace(" ", "_") for n in data.feature_names] + ["diagnosis"]
    return _write_csv(path, columns, [[*map(float, x), n] for x, n in zip(data.data, names)])


def wine_csv(path):
    data = load_wine()
    names = np.array(["barolo", "grignolino", "barbera"])[data.target]
    rows = [[*map(float, x), n] for x, n in zip(data.data, names)]
    return _write_csv(path, list(data.feature_names) + ["cultivar"], rows)


# name -> (data writer or built-in name, target column, task, metric, margin over a linear model's test score)
CASES = {
    # diabetes' test split is 66 rows, on which R^2 varies by about 0.1 between equally good models
    "regression-builtin": ("diabetes", None, "regression", "r2", -0.1),
    "regression-csv": (friedman_csv, "y", "regression", "r2", +0.05),  # non-linear: a network must beat the line
    "binary-csv": (breast_cancer_csv, "diagnosis", "classification", "accuracy", -0.03),
    # wine's test split is 27 rows: one row is 3.7 points
    "multiclass-csv": (wine_csv, "cultivar", "classification", "accuracy", -0.04),
}


def cli_json(*args):
    """`nnopt ARGS --json` in-process (nnopt.cli.main, as run_cli runs it; for the module's fixture)."""
    from nnopt.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*map(str, args), "--json"])
    assert code == 0, f"nnopt {' '.join(map(str, args[:3]))}: {err.getvalue()}"
    return json.loads(out.getvalue())


def source_of(case, tmp):
    writer, target = CASES[case][:2]
    data = writer if isinstance(writer, str) else writer(tmp / f"{case}.csv")
    return data, target


def target_flags(target):
    return ["--target", target] if target else []


def reference_score(data, target, task):
    """A linear model (least squares / logistic regression) fitted on nnopt's own train + val rows (the same
    split, scaled on train), scored on its test rows: the floor a network of any size should reach."""
    split = nnopt.load_data(data, target=target, seed=0)
    X = np.concatenate([split.train.X.numpy(), split.val.X.numpy()])
    y = np.concatenate([split.train.y.numpy(), split.val.y.numpy()])
    if task == "regression":
        model = LinearRegression().fit(X, y)
        return r2_score(split.test.y.numpy(), model.predict(split.test.X.numpy()))
    model = LogisticRegression(max_iter=5000).fit(X, y)
    return accuracy_score(split.test.y.numpy(), model.predict(split.test.X.numpy()))


@pytest.fixture(scope="module")
def automl_runs(tmp_path_factory):
    """One automl run per case, made on first use and shared by the tests below; in-process, as every command
    of this module runs (automl and evaluate in two processes: tests/pipeline/test_raw_tables.py, test_automl.py)."""
    made = {}

    def get(case):
        if case not in made:
            tmp = tmp_path_factory.mktemp(case)
            data, target = source_of(case, tmp)
            summary = cli_json("automl", "--data", data, *target_flags(target), "--budget", BUDGETS[case], "--out",
                               tmp / "run")
            made[case] = (tmp, data, target, summary)
        return made[case]

    return get


def rows_of(data, target, feature_names):
    """The raw feature rows of a CSV in the model's feature order, and the raw rows' count."""
    if not str(data).endswith(".csv"):
        split = nnopt.load_data(data, scale="none", val_fraction=0, test_fraction=0)
        return split.train.X.numpy()
    with open(data, newline="") as f:
        table = list(csv.DictReader(f))
    return np.array([[float(row[name]) for name in feature_names] for row in table], dtype=np.float32)


@pytest.mark.parametrize("case", list(CASES))
def test_automl_evaluate_predict_export(case, automl_runs, run_cli):
    tmp, data, target, summary = automl_runs(case)
    task, metric, margin = CASES[case][2:]
    run = tmp / "run"
    assert summary["metric"] == metric
    linear = reference_score(data, target, task)  # on the same test rows
    assert summary["test"] >= linear + margin, (summary["test"], linear)
    assert summary["compressed_bytes"] < summary["fp32_bytes"]

    # evaluate re-creates the test rows and scores the model automl kept (the compressed one) as automl did
    # (regression: evaluate scores in target units, automl in standardized ones; equal to float32 rounding)
    code, out, err = run_cli("evaluate", run, "--split", "test", "--out", tmp / "ev", "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["metrics"][metric] == pytest.approx(summary["compressed_test"], abs=1e-6)

    # predict: one row per input row, labels as the file wrote them
    predictions_csv = tmp / "predictions.csv"
    assert run_cli("predict", run, "--data", data, *target_flags(target), "--out", predictions_csv)[0] == 0
    with predictions_csv.open(newline="") as f:
        predicted = [row["prediction"] for row in csv.DictReader(f)]
    predictor = load_predictor(run)
    X = rows_of(data, target, predictor.feature_names)
    assert len(predicted) == len(X)

    # export: the ONNX file takes the raw rows and gives what predict gave
    import onnxruntime as ort

    onnx_file = tmp / "model.onnx"
    assert run_cli("export", run, "--format", "onnx", "--out", onnx_file)[0] == 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: X})[0]
    if task == "regression":
        values = np.array(predicted, dtype=np.float64)
        np.testing.assert_allclose(logits.reshape(-1), values, rtol=1e-4, atol=1e-4 * np.abs(values).mean())
    else:
        names = predictor.class_names
        codes = (logits[:, 0] >= 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)
        assert set(predicted) <= set(names) and len(set(predicted)) == len(names)
        assert np.mean(np.array(names)[codes] == np.array(predicted)) >= 0.999


@pytest.mark.parametrize("case", ["regression-csv", "binary-csv"])
def test_every_command_on_the_task(case, automl_runs, run_cli, tmp_path):
    """train, compare, tune, search, compress, evaluate, predict, export (automl above) on one table; each
    writes its run directory and reports the task's metric. In-process: `nnopt.cli.main`, as the command runs."""
    tmp, data, target, _ = automl_runs(case)
    task, metric = CASES[case][2:4]
    flags = target_flags(target)

    def run(*args):
        code, out, err = run_cli(*args, "--json")
        assert code == 0, f"nnopt {' '.join(map(str, args[:3]))}: {err}"
        return json.loads(out)

    train = run("train", "--data", data, *flags, "--model", "mlp:32", "--epochs", "20", "--out", tmp_path / "t")
    assert {"val", "test"} <= set(train["metrics"]) and metric in train["metrics"]["test"]
    if task == "classification":
        assert "roc_auc" in train["metrics"]["test"]  # binary: one logit, scored as a probability

    compared = run("compare", "--data", data, *flags, "--model", "mlp:32", "--optimizers", "adam,sgd",
                   "--epochs", "5", "--seeds", "1", "--out", tmp_path / "c")
    assert [r["optimizer"] for r in compared["optimizers"]] and all(
        r.get(f"val_{metric}_mean") is not None for r in compared["optimizers"])

    spec = tmp_path / "tune.yaml"
    spec.write_text(f"data: {data}\n" + (f"target: {target}\n" if target else "") +
                    "model: mlp:{width}\ntrain: {epochs: 5}\n"
                    "space:\n  width: {choices: [16, 32]}\n  lr: {type: float, low: 0.001, high: 0.03, log: true}\n")
    tuned = run("tune", spec, "--trials", "3", "--sampler", "random", "--seed", "0", "--out", tmp_path / "u")
    assert tuned["objectives"][0]["metric"] == f"val_{metric}" and tuned["trials"]["complete"] >= 1

    searched = run("search", "--data", data, *flags, "--space", "mlp", "--trials", "3", "--epochs", "5",
                   "--seed", "0", "--out", tmp_path / "s")
    assert searched["trials"]["complete"] >= 1

    compressed = run("compress", tmp_path / "t", "--data", data, *flags, "--prune", "0.5", "--quantize", "int8",
                     "--finetune-epochs", "2", "--out", tmp_path / "z")
    assert compressed["metric"] == metric and compressed["variants"][-1]["file_bytes"] < \
        compressed["variants"][0]["file_bytes"]

    for made in (tmp_path / "t", tmp_path / "u", tmp_path / "s", tmp_path / "z", tmp_path / "c"):
        evaluated = run("evaluate", made, "--data", data, *flags, "--split", "test", "--out", made / "ev")
        assert metric in evaluated["metrics"] and evaluated["rows"] > 0
        run("predict", made, "--data", data, *flags, "--out", made / "predictions.csv")
        assert (made / "predictions.csv").read_text().count("\n") == evaluated_rows(data)
        exported = run("export", made, "--format", "onnx", "--out", made / "m.onnx")
        if task == "classification":
            assert exported["agreement"] is not None and exported["agreement"] >= 0.999, exported
        else:
            assert exported["max_abs_diff"] is not None, exported


def evaluated_rows(data):
    """Rows a predictions.csv over the whole source has: one per data row, plus the header."""
    with open(data, newline="") as f:
        return sum(1 for _ in f)
