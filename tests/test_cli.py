"""The command line: outputs, --json, --config, and every bad input -> exit 2, one line, nothing written."""

import json
import os
import subprocess
import sys

import pytest

import nnopt


def test_version_and_module_entry():
    out = subprocess.run([sys.executable, "-m", "nnopt", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"nnopt {nnopt.__version__}"


def test_train_writes_the_run_directory(run_cli, tmp_path):
    code, out, err = run_cli("train", "--data", "iris", "--model", "mlp:16", "--epochs", "3", "--out", tmp_path / "r")
    assert code == 0, err
    assert "run directory" in out and "accuracy" in out
    run = tmp_path / "r"
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "model.pt", "checkpoint.pt",
                                               "summary.json", "report.html", "curves.png"}
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "mlp:16" and config["optimizer"] == "adam" and config["lr"] == 5e-3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    model, meta = nnopt.load_model(run)
    assert meta["task"] == "classification" and meta["class_names"] == ["setosa", "versicolor", "virginica"]


def test_a_tables_default_target_is_named_in_the_summary(run_cli, tmp_path):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "kind"})
    frame.to_csv(tmp_path / "flowers.csv", index=False)
    code, out, err = run_cli("train", "--data", tmp_path / "flowers.csv", "--epochs", "1", "--out", tmp_path / "a")
    assert code == 0, err
    assert "1 epoch in" in out and "target: kind (classification), the table's last column; --target names another" \
        in " ".join(out.split())
    code, out, err = run_cli("train", "--data", tmp_path / "flowers.csv", "--target", "kind", "--epochs", "2",
                             "--out", tmp_path / "b")
    assert code == 0 and "2 epochs in" in out and "target:" not in out


def test_json_prints_one_object(run_cli, tmp_path):
    code, out, err = run_cli("train", "--data", "wine", "--epochs", "2", "--json", "--out", tmp_path / "r")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert set(summary) == {"metrics", "epochs", "wall_s", "run_dir"}
    assert set(summary["metrics"]) == {"test", "val"} and summary["epochs"] == 2
    assert "accuracy" in summary["metrics"]["test"]


def test_config_file_with_flag_overrides(run_cli, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("data: iris\nmodel: mlp:8\noptimizer: sgd\nlr: 5e-2\nepochs: 4\nbatch_size: full\n"
                   "optimizer_params: {weight_decay: 0.001}\n")
    code, out, err = run_cli("train", "--config", cfg, "--epochs", "2", "--json", "--out", tmp_path / "r")
    assert code == 0, err
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["optimizer"], config["lr"], config["epochs"]) == ("sgd", 0.05, 2)
    assert config["batch_size"] == config["data_info"]["n_train"]
    assert config["optimizer_params"] == {"weight_decay": 0.001}


def test_listings(run_cli):
    code, out, _ = run_cli("datasets", "--json")
    assert code == 0 and {row["name"] for row in json.loads(out)} >= {"digits", "mnist1d", "linear", "diabetes"}
    code, out, _ = run_cli("optimizers", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) >= 16 and all(row["rule"] for row in rows)
    code, out, _ = run_cli("optimizers")
    assert code == 0 and "nesterov" in out


def _csv(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def bad_files(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    return {
        "no_target": _csv(d / "a.csv", "x1,x2,label\n1,2,a\n3,4,b\n"),
        "semicolons": _csv(d / "s.csv", "x1;x2;label\n1;2;a\n3;4;b\n"),
        "text_feature": _csv(d / "b.csv", "x1,color,label\n1,red,0\n2,blue,1\n"),
        "inf_feature": _csv(d / "c.csv", "x1,x2,label\n1,inf,0\n2,3,1\n" + "4,5,0\n" * 10),
        "no_labels": _csv(d / "f.csv", "x1,x2,label\n1,2,\n2,3,\n"),
        "empty": _csv(d / "d.csv", "x1,x2,label\n"),
        "float_labels": _csv(d / "e.csv", "x1,label\n" + "".join(f"{i},{i * 0.37:.2f}\n" for i in range(40))),
        "yaml": _csv(d / "bad.yaml", "data: iris\nepochs: [1, 2\n"),
        "yaml_key": _csv(d / "key.yaml", "data: iris\nepoch: 3\n"),
        "checkpoint_dir": d,
    }


BAD = [
    (["--data", "digts"], "unknown dataset 'digts'; did you mean 'digits'?"),
    (["--data", "iris", "--optimizer", "adm"], "unknown optimizer 'adm'; did you mean 'adam'?"),
    (["--data", "iris", "--model", "mpl:64"], "unknown model 'mpl'; did you mean 'mlp'?"),
    (["--data", "iris", "--schedule", "cosin"], "unknown schedule 'cosin'; did you mean 'cosine'?"),
    (["--data", "missing/file.csv"], "file not found: missing/file.csv"),
    (["--data", "{no_target}", "--target", "y"], "'y'"),
    (["--data", "{semicolons}", "--sep", ",", "--target", "label"],
     "--target 'label' is not a column of {semicolons}, which was read as 1 column ('x1;x2;label') with --sep ','; "
     "give the file's separator with --sep"),
    (["--data", "{text_feature}", "--numeric", "color"], "column 'color' is given to --numeric but holds text"),
    (["--data", "{text_feature}", "--drop", "colour"], "--drop names 'colour', which is not a feature column; "
                                                       "did you mean 'color'?"),
    (["--data", "{inf_feature}"], "column 'x2' has 1 infinite values (first at row 1)"),
    (["--data", "{no_labels}"], "target column 'label' has no values (all 2 cells are missing)"),
    (["--data", "{empty}"], "no rows"),
    (["--data", "{float_labels}", "--task", "classification"], "labels are not class labels"),
    (["--data", "iris", "--lr", "0"], "--lr must be > 0; got 0.0"),
    (["--data", "iris", "--lr", "-0.1"], "--lr must be > 0; got -0.1"),
    (["--data", "iris", "--epochs", "0"], "--epochs must be an integer >= 1; got 0"),
    (["--data", "iris", "--batch-size", "0"], "--batch-size: must be an integer >= 1 or 'full'; got 0"),
    (["--data", "iris", "--batch-size", "many"], "--batch-size: must be an integer >= 1 or 'full'; got 'many'"),
    (["--data", "iris", "--model", "mlp:12x"], "malformed model spec 'mlp:12x'"),
    (["--config", "{yaml}"], "malformed YAML"),
    (["--config", "{yaml_key}"], "unknown key 'epoch'"),
    (["--data", "iris", "--resume"], "--resume needs --out DIR"),
    (["--data", "iris", "--device", "tpu"], "--device must be one of auto, cpu, cuda"),
    (["--data", "iris", "--val-fraction", "1.5"], "--val-fraction must be in [0, 1); got 1.5"),
    (["--data", "iris", "--opt", "momentum=0.9"], "optimizer 'adam' has no option 'momentum'"),
    (["--data", "iris", "--unknown-flag"], "unrecognized arguments: --unknown-flag"),
]


@pytest.mark.parametrize("args, fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(run_cli, bad_files, tmp_path, args, fragment):
    args = [a.format(**bad_files) for a in args]
    fragment = fragment.format(**bad_files)
    out_dir = tmp_path / "out"
    extra = [] if "--resume" in args else ["--out", str(out_dir)]
    exit_code, out, err = run_cli("train", *args, *extra)
    assert exit_code == 2
    assert fragment in err, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out_dir.exists(), "nothing may be written for bad input"


def test_unwritable_out_is_a_usage_error(run_cli, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a directory")
    code, _, err = run_cli("train", "--data", "iris", "--out", blocker / "run")
    assert code == 2 and err.startswith("error: cannot write to run directory") and err.count("\n") == 1


def test_argparse_errors_are_one_line_through_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnopt", "train", "--data", "iris", "--epochs", "x"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: argument --epochs")


def test_resume_with_missing_or_corrupt_checkpoint(run_cli, tmp_path):
    code, _, err = run_cli("train", "--data", "iris", "--out", tmp_path / "none", "--resume")
    assert code == 2 and "no checkpoint to resume" in err and err.count("\n") == 1
    run = tmp_path / "run"
    assert run_cli("train", "--data", "iris", "--epochs", "1", "--out", run)[0] == 0
    (run / "checkpoint.pt").write_bytes(b"truncated")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code, _, err = run_cli("train", "--out", run, "--resume")
    assert code == 2 and "is corrupt" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_divergence_exits_3_with_the_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnopt", "train", "--data", "diabetes", "--model", "mlp:64",
                           "--optimizer", "sgd", "--lr", "10000", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: diverged at epoch 1 step ") and "try a lower --lr" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_debug_shows_the_traceback():
    proc = subprocess.run([sys.executable, "-m", "nnopt", "--debug", "train", "--data", "digts"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_train_says_which_columns_and_rows_a_table_left_out(tmp_path, run_cli):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"customer_id": [f"c{i:04d}" for i in range(n)], "age": rng.normal(40, 10, n),
                          "plan": rng.choice(["a", "b", "c"], n), "notes": [None] * n, "country": ["NZ"] * n,
                          "churn": rng.choice(["yes", "no"], n)})
    frame.loc[:29, "churn"] = None
    frame.to_csv(tmp_path / "customers.csv", index=False)
    code, out, err = run_cli("train", "--data", tmp_path / "customers.csv", "--target", "churn", "--epochs", "1",
                             "--out", tmp_path / "run")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("columns: "))
    features = json.loads((tmp_path / "run" / "config.json").read_text())["data_info"]["n_features"]
    assert line == (f"columns: 2 of 5 read, as {features} input features; left out: customer_id (ID); notes (empty); "
                    "country (constant); 30 rows without a target left out (config.json lists every column)")


def test_train_says_when_integer_targets_became_classes(tmp_path, run_cli):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(50, 10, 300), "visits": rng.poisson(2, 300)})
    frame.to_csv(tmp_path / "visits.csv", index=False)
    classes = frame["visits"].nunique()
    code, out, err = run_cli("train", "--data", tmp_path / "visits.csv", "--epochs", "1", "--out", tmp_path / "a")
    assert code == 0, err
    assert (f"task: classification, {classes} classes from the target's integer values; --task regression reads "
            "them as numbers") in out
    code, out, err = run_cli("train", "--data", tmp_path / "visits.csv", "--epochs", "1", "--task", "regression",
                             "--out", tmp_path / "b")
    assert code == 0 and "task: classification" not in out, err


@pytest.mark.parametrize("args, flag, hint", [
    (["compare", "--data", "iris", "--threads", "1"], "--threads", ""),
    (["tune", "--data", "iris", "--trails", "3"], "--trails", "; did you mean '--trials'?"),
    (["predict", "runs/none", "--data", "iris", "--probas"], "--probas", "; did you mean '--proba'?"),
])
def test_an_unknown_flag_points_to_its_commands_help(run_cli, tmp_path, args, flag, hint):
    """argparse reports a flag no command takes from the top-level parser, whose help lists commands, not flags."""
    code, _, err = run_cli(*args, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: unrecognized arguments: {flag}"), err
    assert hint in err and f"see `nnopt {args[0]} --help`" in err, err
    assert not (tmp_path / "out").exists()


def test_a_metric_column_shares_one_number_format():
    # a regression's MAE in dollars: 9,886.5 on one split and 11,431.4 on another were written 9886.4913 / 11,431.4
    from nnopt.cli._common import column_size, num

    size = column_size([9886.4913, 11431.41, None])
    assert [num(9886.4913, size=size), num(11431.41, size=size), num(None, size=size)] == ["9,886.5", "11,431.4", "-"]
    assert [num(v, size=column_size([0.5, 0.75])) for v in (0.5, 0.75)] == ["0.5000", "0.7500"]
    assert column_size([None, float("nan")]) is None and num(0.25) == "0.2500"
