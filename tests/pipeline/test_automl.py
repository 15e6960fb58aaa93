"""nnopt automl: every stage and output within a small budget (the run's own clock, which the budget is a contract
on), constraints hold on the final model, a killed run continues, bad input exits 2 before anything is written.
(How much of the budget a run uses: benchmarks/automl.py.)"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_wine

import nnopt
from nnopt.pipeline import STAGES, parse_budget

FILES = {"automl.json", "config.json", "summary.json", "report.html", "model.onnx", "model.pt", "compressed.nnz",
         "best.yaml", "screen", "search", "final", "compressed"}


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("5m", 300), ("1h", 3600), ("2m30s", 150), ("45", 45),
                                          (12.5, 12.5)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["ten", "5 minutes", "0", "-3m", "m", "", True])
def test_bad_budget_is_a_usage_error(text):
    with pytest.raises(nnopt.UsageError, match="budget="):
        parse_budget(text)


def test_digits_within_budget_with_every_output(tmp_path, digits_automl, run_cli):
    # the run is made in-process (tests/conftest.py, shared with tests/report/test_browser.py); best.yaml below
    # is trained in a process of its own, as a user runs it later
    run, budget_s, summary = digits_automl
    assert summary["budget_s"] == budget_s
    assert FILES <= {p.name for p in run.iterdir()}
    state = json.loads((run / "automl.json").read_text())
    assert list(state["stages"]) == list(STAGES)
    # The budget is what automl promises: its own clock (every stage and report) stays within it. How much of it a
    # run uses is measured in benchmarks/automl.py (RESULTS.md), not here.
    assert summary["spent_s"] <= budget_s * 1.1, summary["stages"]
    assert summary["test"] >= 0.9 and summary["compressed_test"] >= 0.9
    assert summary["compressed_bytes"] < summary["fp32_bytes"]
    # The setting applied to final/ (no validation rows) was checked on the rows final/ trained on: its figures are
    # nnopt evaluate's on final/ and on compressed.nnz, and it kept within the drop (or gave way, and says so).
    compress = state["stages"]["compress"]
    check = compress["train_rows_check"]
    assert check is not None and check["metric"] == "accuracy"
    assert check["fp32"] == pytest.approx(nnopt.evaluate(run / "final", split="train").metrics["accuracy"])
    assert check["compressed"] == pytest.approx(
        nnopt.evaluate(run / "compressed" / "compressed.nnz", split="train").metrics["accuracy"])
    assert check["drop_pts"] <= state["settings"]["max_accuracy_drop"] + 1e-9
    assert all(r["drop_pts"] > state["settings"]["max_accuracy_drop"] for r in compress["refused"])
    # The screen never computed test metrics: it ranks on validation.
    screen = json.loads((run / "screen" / "results.json").read_text())
    assert all(r.get("test_accuracy_mean") is None for r in screen["optimizers"])
    # best.yaml reproduces the final model exactly.
    code = subprocess.run([sys.executable, "-m", "nnopt", "train", "--config", run / "best.yaml", "--out",
                           tmp_path / "again", "--json"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert code.returncode == 0, code.stderr
    final = json.loads((run / "final" / "summary.json").read_text())["metrics"]["test"]
    again = json.loads(code.stdout)["metrics"]["test"]
    assert again["accuracy"] == pytest.approx(final["accuracy"], abs=1e-9)
    # model.onnx predicts what the compressed nnopt model predicts.
    import onnxruntime as ort

    model = nnopt.load(run / "compressed.nnz")
    X = torch.randn(64, 64)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: X.numpy()})[0]
    with torch.inference_mode():
        torch_out = model(X).numpy()
    assert (onnx_out.argmax(1) == torch_out.argmax(1)).mean() >= 0.99
    assert "Model card" in (run / "report.html").read_text()
    # nnopt evaluate uses the compressed model and re-creates the same test rows.
    code, out, err = run_cli("evaluate", run, "--split", "test", "--out", tmp_path / "ev", "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["accuracy"] == pytest.approx(summary["compressed_test"], abs=1e-9)


def _wine_csv(path):
    wine = load_wine()
    names = np.array(["barolo", "grignolino", "barbera"])[wine.target]
    header = ",".join(wine.feature_names + ["cultivar"])
    rows = [",".join(f"{v:g}" for v in x) + f",{n}" for x, n in zip(wine.data, names)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_with_constraints_holds_them_on_the_final_model(tmp_path, run_cli, monkeypatch):
    _wine_csv(tmp_path / "wine.csv")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "wine"
    code, out, err = run_cli("automl", "--data", "wine.csv", "--target", "cultivar", "--budget", "45s", "--max-params",
                             "3000", "--max-size-kb", "16", "--out", run, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["spent_s"] <= 45 * 1.1
    assert set(summary["constraints"]) == {"max_params", "max_size_kb"}
    assert all(check["ok"] for check in summary["constraints"].values()), summary["constraints"]
    model, meta = nnopt.load_model(run / "final")
    assert sum(p.numel() for p in model.parameters()) <= 3000
    assert meta["class_names"] == ["barbera", "barolo", "grignolino"]
    assert summary["test"] >= 0.85
    # best.yaml names the data by its absolute path, so its own comment's command works from the run directory
    assert yaml.safe_load((run / "best.yaml").read_text())["data"] == str(tmp_path / "wine.csv")
    assert "# reproduce: nnopt train --config best.yaml" in (run / "best.yaml").read_text()
    monkeypatch.chdir(run)
    code, out, err = run_cli("train", "--config", "best.yaml", "--out", tmp_path / "again", "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["test"]["accuracy"] == pytest.approx(summary["test"], abs=1e-9)


def test_a_killed_run_continues_where_it_stopped(tmp_path, run_cli):
    run = tmp_path / "iris"
    args = [sys.executable, "-m", "nnopt", "automl", "--data", "iris", "--budget", "50s", "--out", str(run),
            "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    journal = run / "search" / "study.journal"
    while time.monotonic() < deadline:  # kill it in the middle of the search
        if journal.is_file() and journal.stat().st_size > 20_000:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((run / "automl.json").read_text())
    assert "screen" in state["stages"] and "test" not in state["stages"]
    screen_written = (run / "screen" / "results.json").stat().st_mtime_ns
    trials_before = journal.read_text().count('"op_code": 4')  # trial state changes recorded so far
    code, out, err = run_cli(*args[3:])  # the same command, continued by another process: this one
    assert code == 0, err
    summary = json.loads(out)
    assert (run / "screen" / "results.json").stat().st_mtime_ns == screen_written  # the screen was not redone
    assert journal.read_text().count('"op_code": 4') >= trials_before  # the study continued, nothing lost
    assert summary["spent_s"] >= state["spent_s"]  # the time of the first run counts against the budget
    assert (run / "model.onnx").is_file()


def test_a_budget_too_small_says_so_before_starting(tmp_path, run_cli):
    code, out, err = run_cli("automl", "--data", "digits", "--budget", "5s", "--out", tmp_path / "r")
    assert code == 2 and out == ""
    assert err.startswith("error: a budget of 5 s is too small for digits") and "--budget" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_constraints_no_architecture_meets(tmp_path, run_cli):
    code, _, err = run_cli("automl", "--data", "digits", "--budget", "2m", "--max-params", "10", "--out",
                           tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "over the limit of 10" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,needle", [
    (["--budget", "ten"], "--budget"),
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop"),
    (["--workers", "0"], "--workers"),
    (["--space", "rnn"], "--space"),
    (["--objective", "val_acc"], "val_acc"),
    (["--test-fraction", "-0.1"], "--test-fraction must be in [0, 1); got -0.1"),
    (["--test-fraction", "1"], "--test-fraction must be in [0, 1); got 1.0"),
    (["--test-fraction", "0.95"], "--test-fraction must be < 0.85 (automl validates on 0.15 of the rows); got 0.95"),
    (["--test-fraction", "abc"], "argument --test-fraction: invalid float value: 'abc'"),
])
def test_bad_flags_exit_2(tmp_path, run_cli, args, needle):
    code, _, err = run_cli("automl", "--data", "iris", "--out", tmp_path / "r", *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_test_fraction_0_trains_the_final_model_on_every_row(penguins_automl_all_rows, run_cli, tmp_path):
    """A user who keeps their own test file gives automl every row: no test split, search/best still validates
    on 15 % of the rows (the compression is chosen there), final/ trains on all of them; nothing prints a test
    score, and the run directory predicts, evaluates and exports as any other."""
    import pandas as pd

    run, train_csv, test_csv, summary = penguins_automl_all_rows
    usable = int(pd.read_csv(train_csv)["species"].notna().sum())
    assert usable == 275  # 80 % of palmerpenguins' 344 rows, each with its label
    final = json.loads((run / "final" / "config.json").read_text())
    assert (final["test_fraction"], final["val_fraction"]) == (0.0, 0.0)
    assert final["data_info"]["n_train"] == usable and final["data_info"]["n_test"] == 0
    best = json.loads((run / "search" / "best" / "config.json").read_text())["data_info"]
    assert best["n_val"] > 0 and best["n_test"] == 0 and best["n_train"] + best["n_val"] == usable
    assert yaml.safe_load((run / "best.yaml").read_text())["test_fraction"] == 0.0
    state = json.loads((run / "automl.json").read_text())
    assert state["settings"]["test_fraction"] == 0.0 and list(state["stages"]) == list(STAGES)
    assert state["stages"]["compress"]["train_rows_check"]["metric"] == "accuracy"
    # no test score anywhere, and one line that says why and what to do
    note = (f"no test split (test_fraction 0): score it on your own test file with nnopt evaluate {run} "
            "--data test.csv")
    assert summary["test"] is None and summary["compressed_test"] is None and summary["test_fraction"] == 0.0
    assert summary["no_test"] == note and state["stages"]["test"]["summary"] == note
    report = (run / "report.html").read_text()
    assert "no test split (test_fraction 0)" in report and "reached test" not in report
    # the command's own lines (a re-run of the finished run prints them again, training nothing)
    code, out, err = run_cli("automl", "--data", train_csv, "--target", "species", "--budget", "45s",
                             "--test-fraction", "0", "--out", run)
    assert code == 0, err
    assert note in out and "trained on every row of the data" in out and "test accuracy" not in out
    # a test fraction other than the run's is another run's setting
    code, _, err = run_cli("automl", "--data", train_csv, "--target", "species", "--budget", "45s", "--out", run)
    assert code == 2 and "other settings (test_fraction)" in err
    # the user's own test file: predict and evaluate agree on it; export writes the ONNX file
    test = pd.read_csv(test_csv)
    code, out, err = run_cli("predict", run, "--data", test_csv, "--out", tmp_path / "pred.csv", "--json")
    assert code == 0, err
    predicted = pd.read_csv(tmp_path / "pred.csv")["prediction"].to_numpy()
    accuracy = float(np.mean(predicted == test["species"].to_numpy()))
    assert len(predicted) == len(test) == 69 and accuracy >= 0.9  # a majority guess scores 0.45
    code, out, err = run_cli("evaluate", run, "--data", test_csv, "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["accuracy"] == pytest.approx(accuracy) and json.loads(out)["rows"] == 69
    code, out, err = run_cli("evaluate", run, "--split", "test", "--json")
    assert code == 2 and "the test split" in err and "has no rows; use --split all" in err
    code, out, err = run_cli("export", run, "--format", "onnx", "--out", tmp_path / "model.onnx", "--json")
    assert code == 0, err
    assert (tmp_path / "model.onnx").stat().st_size > 0


def test_a_run_recorded_before_test_fraction_existed_continues_with_the_default(tmp_path):
    from nnopt.pipeline._automl import _load_state

    run = tmp_path / "r"
    run.mkdir()
    (run / "automl.json").write_text(json.dumps({"version": 1, "settings": {"data": "iris"}}))
    assert _load_state(run, {"data": "iris", "test_fraction": 0.15})["settings"] == {"data": "iris"}
    with pytest.raises(nnopt.UsageError, match=r"other settings \(test_fraction\)"):
        _load_state(run, {"data": "iris", "test_fraction": 0.0})


def test_other_settings_in_the_same_directory_are_refused(tmp_path, run_cli):
    run = tmp_path / "r"
    run.mkdir()
    (run / "automl.json").write_text(json.dumps({"version": 1, "settings": {"data": "wine"}}))
    code, _, err = run_cli("automl", "--data", "iris", "--budget", "1m", "--out", run)
    assert code == 2 and "other settings" in err


class _Study:
    def __init__(self, rows):
        self.trials = [{"number": i, "state": "COMPLETE", "values": [v], "user_attrs": {"params": p},
                        "duration_s": 1.0} for i, (v, p) in enumerate(rows)]
        self.best_trials = [max(range(len(rows)), key=lambda i: rows[i][0])]
        self.objectives = [{"metric": "val_accuracy", "direction": "maximize"}]


def test_for_accuracy_the_best_trial_is_kept():
    from nnopt.pipeline._stages import smallest_within_noise

    study = _Study([(0.98, 300_000), (0.975, 20_000), (0.96, 5_000), (0.978, 90_000)])
    kept, tolerance = smallest_within_noise(study, 270)
    assert kept["number"] == 0 and tolerance == 0.0
    study.objectives = [{"metric": "val_loss", "direction": "minimize"}]
    assert smallest_within_noise(study, 270)[0]["number"] == 0


def test_an_r2_within_one_standard_error_of_its_mean_squared_error_keeps_the_smaller_network():
    from nnopt.pipeline._stages import smallest_within_noise

    study = _Study([(0.56, 20_000), (0.51, 3_600), (0.47, 1_500)])
    study.objectives = [{"metric": "val_r2", "direction": "maximize"}]
    kept, tolerance = smallest_within_noise(study, 66)  # diabetes' validation rows
    assert tolerance == pytest.approx(0.44 * (2 / 66) ** 0.5)  # 0.077
    assert kept["number"] == 1  # 0.51 is within 0.077 of 0.56; 0.47 is not
    kept, _ = smallest_within_noise(study, 100_000)  # a huge validation split: no slack, the best is kept
    assert kept["number"] == 0


def test_automl_searches_a_users_factory_and_its_arguments(tmp_path):
    """The user's own network (tests/usermodels.py's make_net, a conv net on the data's (1, 8, 8) images) with its
    width searched beside the optimizer, learning rate and batch size; every stage runs on it."""
    run = tmp_path / "factory"
    space = tmp_path / "space.yaml"  # as `nnopt automl --space space.yaml` reads it
    space.write_text("width: {type: int, low: 4, high: 12, step: 4}\n")
    summary = nnopt.automl("digits", model="usermodels:make_net:width={width}", space=str(space), budget="60s",
                           out=run).summary
    state = json.loads((run / "automl.json").read_text())
    assert state["settings"]["model"] == "usermodels:make_net:width={width}"
    assert state["settings"]["space"] == {"width": {"type": "int", "low": 4, "high": 12, "step": 4}}
    trials = json.loads((run / "search" / "trials.json").read_text())["trials"]
    widths = {t["params"]["width"] for t in trials if "width" in t["params"]}
    assert widths and widths <= {4, 8, 12}
    kept = state["stages"]["search"]["model"]
    assert kept.startswith("usermodels:make_net:") and f"width={state['stages']['search']['best_params']['width']}" in kept
    assert summary["test"] >= 0.8 and summary["compressed_test"] >= 0.8
    model, meta = nnopt.load_model(run / "final")
    assert type(model).__name__ != "MLP" and meta["model_spec"] == kept


def test_automl_model_errors(tmp_path, run_cli):
    code, _, err = run_cli("automl", "--data", "iris", "--model", "usermodels:make_net:width={width}",
                           "--out", tmp_path / "r")
    assert code == 2 and "--space maps each of the template's parameters" in err
    with pytest.raises(nnopt.UsageError, match="model= must be a factory or class recipe"):
        nnopt.automl("iris", model=torch.nn.Linear(4, 3), out=tmp_path / "r2")


def test_the_search_range_holds_each_optimizers_default_lr():
    from nnopt.optim import OPTIMIZERS
    from nnopt.pipeline._stages import search_spec

    settings = {"data": "diabetes", "seed": 0, "model": None, "space": "mlp"}
    # a screen whose finder gave its floor must not confine the search to [2.5e-06, 3e-05]
    space = search_spec(settings, ["adam", "momentum"], {"adam": 1e-5, "momentum": 1e-5}, 3)["space"]["lr"]
    assert space["low"] == pytest.approx(2.5e-6) and space["high"] == OPTIMIZERS.get("momentum").default_lr == 0.05
    space = search_spec(settings, ["adam"], {"adam": 1e-3}, 3)["space"]["lr"]
    assert (space["low"], space["high"]) == (pytest.approx(2.5e-4), pytest.approx(5e-3))


def _continue_piped(run, budget_s):
    """`nnopt automl` on `run` in a subprocess, its output piped as a log would take it."""
    args = [sys.executable, "-m", "nnopt", "automl", "--data", "digits", "--budget", f"{budget_s}s", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_stage_lines_go_to_stderr_when_piped_and_a_finished_run_is_left_as_it_is(tmp_path, digits_automl, run_cli):
    import shutil

    finished, budget_s, _ = digits_automl
    run = tmp_path / "automl"
    shutil.copytree(finished, run)
    state = json.loads((run / "automl.json").read_text())
    del state["stages"]["test"]  # as if the process had been killed after the export
    (run / "automl.json").write_text(json.dumps(state))
    (run / "summary.json").unlink()
    done = _continue_piped(run, budget_s)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[6/6] test · ") and lines[1].startswith("[6/6] test done in ")
    assert "[6/6]" not in done.stdout and f"of a {budget_s} s budget" in done.stdout
    # the run is finished: a larger budget runs nothing and leaves its record as it was
    record = {name: (run / name).read_bytes() for name in ("summary.json", "automl.json", "config.json")}
    code, out, err = run_cli("automl", "--data", "digits", "--budget", f"{budget_s + 30}s", "--out", run, "--json")
    assert code == 0, err
    assert err.strip() == (f"note: {run} finished under a {budget_s} s budget; nothing to do "
                           f"(give another --out to run again with {budget_s + 30} s)")
    assert json.loads(out)["budget_s"] == budget_s
    assert record == {name: (run / name).read_bytes() for name in record}
