"""A split of size 0 (--val-fraction 0, --test-fraction 0) works wherever a split may be empty: training of every
task type, the files and report of the run, compress, evaluate; what needs the empty split says so in one line."""

import json

import pytest

import nnopt
from nnopt.errors import UsageError

DATASETS = {"binary": "breast_cancer", "multiclass": "iris", "regression": "diabetes"}
FRACTIONS = [(0.0, 0.0), (0.0, 0.2), (0.2, 0.0)]


@pytest.mark.parametrize("val, test", FRACTIONS)
@pytest.mark.parametrize("kind", list(DATASETS))
def test_training_with_an_empty_split(kind, val, test, tmp_path):
    data = DATASETS[kind]
    result = nnopt.fit("mlp:16", data, epochs=3, val_fraction=val, test_fraction=test, out=tmp_path / "run")
    rows = json.loads((tmp_path / "run" / "config.json").read_text())["data_info"]
    assert (rows["n_val"] == 0) == (val == 0) and (rows["n_test"] == 0) == (test == 0)
    total = {"breast_cancer": 569, "iris": 150, "diabetes": 442}[data]
    assert rows["n_train"] + rows["n_val"] + rows["n_test"] == total
    metric = "r2" if kind == "regression" else "accuracy"
    for split, fraction in (("val", val), ("test", test)):
        assert (metric in result.metrics[split]) == (fraction > 0), result.metrics
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all(row["train_loss"] is not None for row in history)
    assert all((row.get("val_loss") is None) == (val == 0) for row in history)
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "report.html").is_file()


def test_compress_and_evaluate_a_run_without_val_or_test(run_cli, tmp_path):
    nnopt.fit("mlp:16", "iris", epochs=3, val_fraction=0, test_fraction=0, out=tmp_path / "run")
    code, out, err = run_cli("compress", tmp_path / "run", "--quantize", "int8", "--export", "onnx", "--out",
                             tmp_path / "z")
    assert code == 0, err
    assert "compressed model:" in out
    # no test rows to check the ONNX files on: they are checked against torch on the training rows
    latency = json.loads((tmp_path / "z" / "results.json").read_text())["latency"]
    checked = {row["model"]: row for row in latency if row["runtime"] == "onnxruntime"}
    assert set(checked) == {"original (fp32)", "compressed", "compressed int8 (ORT QDQ)"}
    for name in ("original (fp32)", "compressed"):  # the same network's arithmetic in ONNX Runtime
        assert checked[name]["agreement"] == 1.0 and checked[name]["max_abs_diff"] < 1e-4, checked[name]
    # int8 activations too: 2 of the 150 rows of this 3-epoch network, whose logits are close, change class
    assert checked["compressed int8 (ORT QDQ)"]["agreement"] >= 0.95
    assert (tmp_path / "z" / "model.onnx").is_file() and (tmp_path / "z" / "model.int8.onnx").is_file()
    code, _, err = run_cli("evaluate", tmp_path / "run", "--split", "val", "--out", tmp_path / "ev")
    assert code == 2 and err == "error: the val split of 'iris' has no rows; use --split all\n"
    code, out, err = run_cli("evaluate", tmp_path / "run", "--split", "all", "--out", tmp_path / "ev", "--json")
    assert code == 0 and json.loads(out)["rows"] == 150


@pytest.mark.parametrize("setting", [{"early_stopping": 3}, {"schedule": "reduce-on-plateau"}])
def test_what_watches_the_validation_loss_needs_a_validation_split(setting):
    with pytest.raises(UsageError, match=r"watches the validation loss.*val_fraction= > 0"):
        nnopt.fit("mlp:16", "iris", epochs=3, val_fraction=0, **setting)


def test_tune_on_a_validation_score_needs_a_validation_split(tmp_path):
    spec = {"data": "iris", "model": "mlp:{width}", "train": {"epochs": 2, "val_fraction": 0},
            "space": {"width": {"choices": [8, 16]}}}
    with pytest.raises(UsageError, match="val_accuracy is scored on the validation split, which is empty"):
        nnopt.tune(spec, trials=2, out=tmp_path / "t")
    assert not (tmp_path / "t").exists()
    # a training score needs no validation rows
    result = nnopt.tune({**spec, "objective": "train_accuracy"}, trials=2, out=tmp_path / "t2")
    assert result.best_value is not None
