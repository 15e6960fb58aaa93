"""tune reports from run directories written like `nnopt tune` writes them, from a real in-memory Optuna study."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess
import sys

import optuna
import pytest

from nnopt.errors import UsageError
from nnopt.report import RUN_KINDS, build_report
from nnopt.report._format import fmt_lr
from nnopt.report._load import load_run
from nnopt.report._tune import intermediate_figure, load_tune, pruning_savings
from nnopt.report._tune_verdict import tune_verdict

EPOCHS = 10
REASON = "diverged at epoch 2 step 3 (loss=nan); try a lower --lr"
SPACE = {"lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
         "optimizer": {"choices": ["sgd", "adam"]},
         "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd"]}},
         "hidden": {"type": "int", "low": 16, "high": 256, "log": True}}
SINGLE_PLOTS = ("optimization_history.png", "intermediate_values.png", "param_importances.png",
                "parallel_coordinate.png", "slice.png")
IMG = '<img src="data:image/png;base64,'


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def config(n_trials: int, multi: bool) -> dict:
    objectives = [{"metric": "val_accuracy", "direction": "maximize"}]
    if multi:
        objectives.append({"metric": "params", "direction": "minimize"})
    return {"command": "tune", "data": "digits", "model": "mlp:{hidden}", "objectives": objectives,
            "sampler": "tpe", "pruner": "median", "trials": n_trials, "timeout": None, "workers": 2,
            "storage": "postgresql://nnopt:***@db.example.org/tune" if multi else "journal:study.journal",
            "study_name": "nnopt-tune", "seed": 0, "space": SPACE, "train": {"epochs": EPOCHS},
            "data_info": {"name": "digits", "task": "classification", "n_train": 1258, "n_val": 269, "n_test": 270,
                          "n_features": 64, "n_classes": 10, "input_shape": [1, 8, 8], "source": "builtin"},
            "environment": {"python": "3.11", "nnopt": "0.1.0"}, "created": "2026-11-22T12:00:00"}


def run_study(n_trials: int, multi: bool = False, running: int = 0):
    """A real study driven by ask/tell like the engine's workers: a synthetic accuracy curve per epoch,
    median pruning (single objective), lr > 0.3 diverges (FAIL with fail_reason), `running` trials left open."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(
            directions=["maximize", "minimize"] if multi else ["maximize"],
            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=6),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
        for number in range(n_trials):
            trial = study.ask()
            lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
            opt = trial.suggest_categorical("optimizer", ["sgd", "adam"])
            if opt == "sgd":
                trial.suggest_float("momentum", 0.5, 0.99)
            hidden = trial.suggest_int("hidden", 16, 256, log=True)
            if lr > 0.5:
                trial.set_user_attr("epochs_run", 2)
                trial.set_user_attr("fail_reason", REASON)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            peak = 0.97 - 0.04 * abs(math.log10(lr) - (-3.0 if opt == "adam" else -2.0)) ** 1.5 - 12 / hidden / 100
            pruned = False
            for epoch in range(1, EPOCHS + 1):
                acc = 0.1 + (peak - 0.1) * (1 - math.exp(-epoch * (0.5 + 0.05 * (number % 5))))
                trial.set_user_attr("epochs_run", epoch)
                if not multi:
                    trial.report(acc, epoch)
                    if trial.should_prune():
                        pruned = True
                        break
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, [acc, hidden * 66 + hidden * 10 + 10] if multi else acc)
        for _ in range(running):
            study.ask().suggest_float("lr", 1e-5, 1.0, log=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study


def dump_trials(study, names: list[str]) -> dict:
    """trials.json exactly as the engine writes it."""
    from optuna.distributions import distribution_to_json

    def iso(d):
        return d.isoformat() if d else None

    trials = [{"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
               "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
               "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
               "duration_s": t.duration.total_seconds() if t.duration else None,
               "datetime_start": iso(t.datetime_start), "datetime_complete": iso(t.datetime_complete),
               "user_attrs": t.user_attrs} for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    return {"study_name": "nnopt-tune", "directions": [d.name.lower() for d in study.directions],
            "objective_names": names, "best_trials": [t.number for t in study.best_trials] if complete else [],
            "trials": trials}


def make_tune_dir(path, n_trials: int = 25, multi: bool = False, running: int = 0):
    path.mkdir(parents=True, exist_ok=True)
    study = run_study(n_trials, multi, running)
    names = ["val_accuracy", "params"] if multi else ["val_accuracy"]
    (path / "config.json").write_text(json.dumps(config(n_trials + running, multi), indent=2))
    (path / "trials.json").write_text(json.dumps(dump_trials(study, names), indent=2))
    for name in ("trials.csv", "best.yaml", "model.pt", "study.journal"):  # present, never read
        (path / name).write_text("not for the report")
    return path, study


@pytest.fixture(scope="module")
def tune_run(tmp_path_factory):
    path, study = make_tune_dir(tmp_path_factory.mktemp("tune") / "run", running=1)
    build_report(path)
    return path, study


def test_tune_report(tune_run):
    path, study = tune_run
    states = [t.state.name for t in study.trials]
    assert {"COMPLETE", "PRUNED", "FAIL", "RUNNING"} <= set(states)  # the fixture covers every case
    for name in SINGLE_PLOTS:
        png = (path / name).read_bytes()
        assert png_size(png)[0] >= 700 and len(png) > 10_000, name
    assert png_size((path / "optimization_history.png").read_bytes()) == (800, 480)
    assert not (path / "pareto_front.png").exists()
    page = (path / "report.html").read_text()
    assert page.count(IMG) == len(SINGLE_PLOTS) and "http" not in page.lower()
    best = study.best_trial
    assert f"<td class=l>lr</td><td>{fmt_lr(best.params['lr'])}</td>" in page
    assert f"<td class=l>optimizer</td><td>{best.params['optimizer']}</td>" in page
    assert f"(trial {best.number}) reached {100 * best.value:.1f} % val accuracy" in page
    assert "nnopt train --config best.yaml" in page and "Which hyperparameters make this network best" in page
    assert f"Top {min(10, states.count('COMPLETE'))} complete trials" in page
    assert f"<tr><td>1</td><td>{best.number}</td>" in page
    n_failed = states.count("FAIL")
    assert f"Failed trials ({n_failed})" in page and page.count(REASON) == 2 * n_failed  # + the every-trial table
    assert f"{n_failed} trials failed — all diverged at lr" in page
    n_pruned = states.count("PRUNED")
    assert re.search(rf"{n_pruned} trials were pruned early, saving \d+ of \d+ epochs", page)
    assert re.search(r"\w+ mattered most \(importance 0\.\d\d\)", page)
    assert "1 trial had not finished" in page and "1 unfinished" in page
    assert "26 asked: " in page and "optimizer = sgd" in page and "1e-5 to 1" in page
    for absent in ("not for the report", "study.journal"):  # built from config.json and trials.json only
        assert absent not in page.replace("journal:study.journal", "")


def test_plot_data_marks_pruned_trials(tune_run):
    path, study = tune_run
    data = load_tune(load_run(path))
    figure = intermediate_figure(data)
    (panel,) = figure.panels
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert len(panel.points) == len(pruned) and all(p.marker == "x" for p in panel.points)
    assert {line.label for line in panel.lines} == {"complete", "pruned", f"best (trial {study.best_trial.number})",
                                                     None}
    saved, total = pruning_savings(data)
    assert saved == sum(EPOCHS - t.user_attrs["epochs_run"] for t in pruned)
    assert total == EPOCHS * (len(pruned) + len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))))


def test_rebuild_is_byte_identical_and_leaves_global_state_alone(tune_run, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    path, _ = tune_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "trials.json"):
        shutil.copy(path / name, copy / name)
    before = dict(matplotlib.rcParams)
    verbosity, interactive, figures = optuna.logging.get_verbosity(), plt.isinteractive(), plt.get_fignums()
    build_report(copy)  # the second build in this process
    for name in SINGLE_PLOTS + ("report.html",):
        assert (copy / name).read_bytes() == (path / name).read_bytes(), name
    assert b"matplotlib" not in (path / "slice.png").read_bytes()
    assert dict(matplotlib.rcParams) == before  # Optuna's plt.style.use("ggplot") does not leak
    assert optuna.logging.get_verbosity() == verbosity and plt.isinteractive() == interactive
    assert plt.get_fignums() == figures  # every figure closed


def test_multi_objective_report(tmp_path):
    path, study = make_tune_dir(tmp_path / "run", n_trials=16, multi=True)
    page = build_report(path).read_text()
    png = (path / "pareto_front.png").read_bytes()
    assert png_size(png) == (750, 520) and len(png) > 10_000
    front = sorted(t.number for t in study.best_trials)
    assert len(front) >= 2
    pareto = page[page.index("<h2>Pareto trials</h2>"):page.index("<h2>Top ")]
    assert sorted(int(n) for n in re.findall(r"<tr><td>(\d+)</td>", pareto)) == front
    assert f"{len(front)} of 16 trials form the Pareto front of val accuracy (maximize) and params (minimize)" in page
    assert "postgresql://nnopt:***@db.example.org/tune" in page and "http" not in page.lower()
    assert not (path / "intermediate_values.png").exists() and "no intermediate-values plot" in page
    assert page.count(IMG) == 5  # history, importances, parallel, slice, Pareto front


def test_one_complete_trial_has_no_importance_plot(tmp_path):
    path, study = make_tune_dir(tmp_path / "run", n_trials=1)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    page = build_report(path).read_text()
    assert not (path / "param_importances.png").exists()
    assert "importances need at least 2 complete trials" in page and "mattered most" not in page
    assert "The only trial (trial 0) reached" in page and page.count(IMG) == 2
    for name in ("optimization_history.png", "intermediate_values.png"):
        assert len((path / name).read_bytes()) > 10_000, name


def test_no_complete_trial(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config(2, False)))
    failed = {"state": "FAIL", "values": None, "params": {}, "distributions": {}, "intermediate_values": {},
              "duration_s": 0.1, "user_attrs": {"fail_reason": "out of memory"}}
    (path / "trials.json").write_text(json.dumps({"directions": ["maximize"], "objective_names": ["val_accuracy"],
                                                  "best_trials": [], "trials": [dict(failed, number=0),
                                                                                dict(failed, number=1)]}))
    page = build_report(path).read_text()
    assert "No trial completed (of 2 trials)" in page and "out of memory" in page and IMG not in page


def _trial(number, state, value, lr, epochs_run=None, **extra):
    dist = optuna.distributions.distribution_to_json(optuna.distributions.FloatDistribution(1e-5, 1.0, log=True))
    return {"number": number, "state": state, "values": None if value is None else [value], "params": {"lr": lr},
            "distributions": {"lr": dist}, "intermediate_values": {}, "duration_s": 1.0,
            "user_attrs": dict({"epochs_run": epochs_run} if epochs_run else {}, **extra)}


def test_verdict_from_plain_numbers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(config(5, False)))
    trials = [_trial(0, "COMPLETE", 0.90, 1e-3, 10), _trial(1, "COMPLETE", 0.95, 0.97, 10),
              _trial(2, "PRUNED", 0.5, 1e-4, 3), _trial(3, "PRUNED", 0.4, 1e-5, 2),
              _trial(4, "FAIL", None, 1e-2, 1, fail_reason="out of memory")]
    (tmp_path / "trials.json").write_text(json.dumps({"directions": ["maximize"], "objective_names": ["val_accuracy"],
                                                      "best_trials": [1], "trials": trials}))
    data = load_tune(load_run(tmp_path))
    assert tune_verdict(data, config(5, False), {"lr": 0.71, "hidden": 0.29}) == [
        "The best of 5 trials (trial 1) reached 95.0 % val accuracy with lr 0.97; "
        "reproduce it with nnopt train --config best.yaml.",
        "The best lr (0.97) lies at the upper end of its range (1e-5 to 1): the optimum may lie beyond it, "
        "so widen the range.",
        "2 trials were pruned early, saving 15 of 40 epochs (38 %).",
        "1 trial failed; the reasons are listed below.",
        "lr mattered most (importance 0.71), then hidden (0.29).",
    ]


def test_bad_tune_directories(tmp_path):
    assert "tune" in RUN_KINDS
    (tmp_path / "config.json").write_text(json.dumps({"command": "tune"}))
    with pytest.raises(UsageError, match="trials.json is missing"):
        build_report(tmp_path)
    (tmp_path / "trials.json").write_text(json.dumps({"trials": [{"number": 0, "state": "DONE"}]}))
    with pytest.raises(UsageError, match="state 'DONE'; expected one of COMPLETE"):
        build_report(tmp_path)
    (tmp_path / "trials.json").write_text(json.dumps([]))
    with pytest.raises(UsageError, match="holds no 'trials' list"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_tune_report_never_imports_torch(tune_run, tmp_path):
    path, _ = tune_run
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    code = ("import sys; import nnopt.report; print('torch' in sys.modules, 'optuna' in sys.modules); "
            "nnopt.report.build_report(sys.argv[1]); print('torch' in sys.modules, 'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "True"]
    assert out.stderr == ""  # no Optuna log line, no ExperimentalWarning
