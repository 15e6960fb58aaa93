"""`nnopt compare`: one row per optimizer, valid plots, a self-contained report, reproducible, bad input."""

import csv
import json
import shutil

import pytest

import nnopt
from nnopt.cli import main

OPTIMIZERS = "sgd,momentum,adam"


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "run"
    code = main(["compare", "--data", "digits", "--model", "mlp:32", "--optimizers", OPTIMIZERS, "--lr", "auto",
                 "--epochs", "4", "--seeds", "2", "--target-metric", "val_accuracy=0.8", "--out", str(out)])
    assert code == 0
    return out


def test_results_have_one_row_per_optimizer_and_the_documented_columns(compare_run):
    results = json.loads((compare_run / "results.json").read_text())
    rows = results["optimizers"]
    assert sorted(r["optimizer"] for r in rows) == sorted(OPTIMIZERS.split(","))
    assert [r["rank"] for r in rows] == [1, 2, 3]
    means = [r["test_accuracy_mean"] for r in rows]
    assert means == sorted(means, reverse=True)  # ranked by the test metric
    for row in rows:
        assert row["lr_source"] == "auto" and row["lr"] > 0 and row["seeds"] == 2
        for key in ("train_loss_mean", "val_accuracy_mean", "test_accuracy_std", "test_f1_mean",
                    "test_roc_auc_mean", "epochs_to_target_mean", "time_to_target_s_mean", "steps_per_s_mean"):
            assert key in row
    assert len(results["runs"]) == 6 and {r["seed"] for r in results["runs"]} == {0, 1}
    with open(compare_run / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["seed"] for r in table[:3]] == ["all"] * 3 and len(table) == 3 + 6
    assert {"rank", "optimizer", "lr", "lr_source", "test_accuracy", "test_accuracy_std", "steps_per_s"} <= set(table[0])
    lr_find = json.loads((compare_run / "lr_find.json").read_text())
    assert set(lr_find) == set(OPTIMIZERS.split(","))
    for row in rows:
        assert row["lr"] == lr_find[row["optimizer"]]["suggested"]


def test_plots_are_real_images(compare_run):
    for name in ("curves.png", "lr_find.png"):
        data = (compare_run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_report_is_self_contained_and_rebuilds_identically(compare_run, tmp_path, run_cli):
    html = (compare_run / "report.html").read_text()
    assert "http" not in html
    assert html.count('src="data:image/png;base64,') >= 2
    for name in OPTIMIZERS.split(","):
        assert name in html
    copy = tmp_path / "copy"
    shutil.copytree(compare_run, copy)
    (copy / "report.html").unlink()
    (copy / "curves.png").unlink()
    code, out, err = run_cli("report", copy)
    assert code == 0, err
    assert (copy / "report.html").read_bytes() == (compare_run / "report.html").read_bytes()
    assert (copy / "curves.png").read_bytes() == (compare_run / "curves.png").read_bytes()


def test_same_seeds_same_results():
    kwargs = dict(optimizers="sgd,adam", seeds=2, epochs=3)
    a = nnopt.compare("iris", "mlp:16", **kwargs)
    b = nnopt.compare("iris", "mlp:16", **kwargs)
    assert [r["final"] for r in a.runs] == [r["final"] for r in b.runs]
    assert [r["optimizer"] for r in a.optimizers] == [r["optimizer"] for r in b.optimizers]


def test_workers_give_the_same_results_as_one_process():
    kwargs = dict(optimizers="sgd,adam@0.01", seeds=2, epochs=2)
    one = nnopt.compare("iris", "mlp:16", workers=1, **kwargs)
    two = nnopt.compare("iris", "mlp:16", workers=2, **kwargs)
    assert [r["final"] for r in one.runs] == [r["final"] for r in two.runs]


def test_lr_grid_picks_the_best_validation_score():
    result = nnopt.compare("iris", "mlp:16", optimizers="sgd", lr_grid="1e-3,1e-1", seeds=1, epochs=5)
    scores = result.lr_grid["sgd"]
    best = max(scores, key=lambda k: scores[k])
    assert result.optimizers[0]["lr_source"] == "grid"
    assert result.optimizers[0]["lr"] == float(best)


def test_a_diverging_seed_is_reported_not_fatal(tmp_path):
    result = nnopt.compare("diabetes", "mlp:32", optimizers="sgd@1000,adam", seeds=2, epochs=2, out=tmp_path)
    rows = {r["optimizer"]: r for r in result.optimizers}
    assert rows["sgd"]["diverged"] == 2 and rows["sgd"]["rank"] == 2 and rows["sgd"]["lr"] == 1000
    assert rows["adam"]["diverged"] == 0
    runs = [r for r in result.runs if r["optimizer"] == "sgd"]
    assert all(r["status"] == "diverged" and "diverged at epoch" in r["error"] for r in runs)
    assert "diverged" in (tmp_path / "report.html").read_text()


BAD = [
    (["--optimizers", "sgd,adm"], "unknown optimizer 'adm'; did you mean 'adam'?"),
    (["--optimizers", "sgd,adam,sgd"], "optimizer 'sgd' is listed twice"),
    (["--optimizers", "adam@fast"], "malformed 'adam@fast': expected NAME@LR"),
    (["--optimizers", "adam@-1"], "malformed 'adam@-1': the lr must be > 0"),
    (["--seeds", "0"], "--seeds must be an integer >= 1; got 0"),
    (["--target-metric", "val_r2=0.5"], "--target-metric 'val_r2' does not exist for classification"),
    (["--target-metric", "val_accuracy"], "--target-metric must look like NAME=VALUE"),
    (["--lr", "fast"], "--lr must be 'auto' or a number > 0"),
    (["--lr-grid", "1e-3,x"], "--lr-grid must be comma-separated numbers"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
    (["--lr", "auto", "--lr-grid", "0.1"], "not allowed with argument"),
]


@pytest.mark.parametrize("args, fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(run_cli, tmp_path, args, fragment):
    out = tmp_path / "out"
    code, _, err = run_cli("compare", "--data", "iris", "--epochs", "1", "--seeds", "1", *args, "--out", out)
    assert code == 2 and fragment in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_unwritable_out(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("compare", "--data", "iris", "--optimizers", "sgd", "--out", blocker / "run")
    assert code == 2 and "cannot write to" in err and err.count("\n") == 1


def test_lr_find_command(run_cli, tmp_path):
    code, out, err = run_cli("lr-find", "--data", "digits", "--model", "mlp:32", "--optimizer", "adam", "--json",
                             "--out", tmp_path / "lr")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["optimizer"] == "adam" and 1e-5 < summary["suggested_lr"] < 10
    html = (tmp_path / "lr" / "report.html").read_text()
    assert "http" not in html and 'src="data:image/png;base64,' in html
