"""`nnopt tune`: samplers, pruners, conditional spaces, workers, resume after kill -9, PostgreSQL, outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

import nnopt
from nnopt.search import SAMPLERS, PRUNERS, tune
from pg import postgres_url  # noqa: F401

SPACE = {"x": {"type": "float", "low": -2.0, "high": 2.0, "step": 0.5}, "kind": {"choices": ["a", "b"]}}


def bowl(params):
    return (params["x"] - 1.0) ** 2 + (0.0 if params["kind"] == "a" else 0.5)


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s != "nsga2"])
def test_every_sampler_runs(sampler):
    result = tune(bowl, space=SPACE, directions="minimize", sampler=sampler, trials=6, seed=0)
    assert result.counts()["complete"] == 6
    assert result.best_value == min(t["values"][0] for t in result.trials if t["state"] == "COMPLETE")


def test_nsga2_returns_a_pareto_front():
    result = tune(lambda p: (bowl(p), abs(p["x"])), space=SPACE, directions=["minimize", "minimize"],
                  sampler="nsga2", trials=12, seed=0)
    front = [t for t in result.trials if t["number"] in result.best_trials]
    assert front and all(t["state"] == "COMPLETE" for t in front)
    values = [t["values"] for t in front]
    for a in values:  # no point of the front dominates another
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in values)


def test_same_seed_same_trials_in_the_same_order():
    runs = [tune(bowl, space=SPACE, directions="minimize", sampler="tpe", trials=8, seed=3) for _ in range(2)]
    assert [t["params"] for t in runs[0].trials] == [t["params"] for t in runs[1].trials]


def test_a_failing_trial_is_recorded_and_the_study_goes_on():
    def fragile(params):
        if params["x"] > 1.0:
            raise FloatingPointError("loss became nan")
        return params["x"]

    result = tune(fragile, space=SPACE, sampler="grid", trials=20, seed=0)
    failed = [t for t in result.trials if t["state"] == "FAIL"]
    assert len(failed) == 4 and all("FloatingPointError: loss became nan" in t["user_attrs"]["fail_reason"]
                                    for t in failed)
    assert result.counts()["complete"] == 14  # the 9 x 2 grid, all of it


def _spec(tmp_path, **extra):
    spec = {
        "data": "iris", "model": "mlp:{hidden}", "train": {"epochs": 8, "batch_size": 16},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "space": {"optimizer": {"choices": ["sgd", "momentum", "adam"]},
                  "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
                  "momentum": {"type": "float", "low": 0.5, "high": 0.95, "when": {"optimizer": ["momentum"]}},
                  "hidden": {"type": "int", "low": 4, "high": 64, "log": True}},
        **extra,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("pruner", PRUNERS)
def test_every_pruner_runs(tmp_path, pruner):
    result = tune(_spec(tmp_path), pruner=pruner, sampler="random", trials=8, seed=0, out=tmp_path / "run")
    counts = result.counts()
    assert counts["complete"] + counts["pruned"] == 8
    if pruner == "none":
        assert counts["pruned"] == 0


def test_pruning_spends_fewer_epochs(tmp_path):
    def epochs(pruner):
        result = tune(_spec(tmp_path), pruner=pruner, sampler="random", trials=16, seed=1,
                      out=tmp_path / pruner)
        return sum(t["user_attrs"]["epochs_run"] for t in result.trials), result.counts()["pruned"]

    full, _ = epochs("none")
    pruned_epochs, n_pruned = epochs("median")
    assert full == 16 * 8
    assert n_pruned > 0 and pruned_epochs < full


def test_outputs_conditional_params_and_best_yaml_reproduces(tmp_path, run_cli):
    out = tmp_path / "run"
    code, stdout, err = run_cli("tune", _spec(tmp_path), "--trials", "10", "--sampler", "random", "--seed", "0",
                                "--pruner", "none", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 10 and summary["trials"]["complete"] == 10
    for t in trials:  # momentum exists only where its condition holds
        assert ("momentum" in t["params"]) == (t["params"]["optimizer"] == "momentum")
    assert (out / "trials.csv").read_text().count("\n") == 11
    assert (out / "best" / "model.pt").is_file() and "http" not in (out / "report.html").read_text()
    code, stdout, err = run_cli("train", "--config", out / "best.yaml", "--out", tmp_path / "again", "--json")
    assert code == 0, err
    reproduced = json.loads(stdout)["metrics"]["val"]["accuracy"]
    assert reproduced == pytest.approx(summary["best_value"], abs=1e-9)


@pytest.mark.parametrize("data, metric", [("iris", "val_accuracy"), ("diabetes", "val_r2")])
def test_without_a_spec_data_tunes_the_default_space(tmp_path, run_cli, data, metric):
    out = tmp_path / "run"
    code, stdout, err = run_cli("tune", "--data", data, "--model", "mlp:16", "--epochs", "2", "--trials", "4",
                                "--sampler", "random", "--pruner", "none", "--seed", "0", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 4 and summary["trials"]["complete"] == 4
    assert all(set(t["params"]) == {"optimizer", "lr", "batch_size", "weight_decay"} for t in trials)
    assert summary["objectives"][0]["metric"] == metric
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"] == "mlp:16" and best["epochs"] == 2 and best["data"] == data
    code, stdout, err = run_cli("train", "--config", out / "best.yaml", "--out", tmp_path / "again", "--json")
    assert code == 0, err
    assert json.loads(stdout)["metrics"]["val"][metric[4:]] == pytest.approx(summary["best_value"], abs=1e-9)
    # best/ records where its rows come from: evaluate and compress find its test split without --data
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["data"] == data
    best_test = json.loads((out / "best" / "summary.json").read_text())["metrics"]["test"][metric[4:]]
    code, stdout, err = run_cli("evaluate", out / "best", "--split", "test", "--json", "--out", tmp_path / "ev")
    assert code == 0, err
    assert json.loads(stdout)["metrics"][metric[4:]] == pytest.approx(best_test, abs=1e-6)
    code, _, err = run_cli("compress", out / "best", "--quantize", "int8", "--out", tmp_path / "c", "--json")
    assert code == 0, err


@pytest.mark.parametrize("args, fragment", [
    ([], "needs a YAML spec (nnopt tune spec.yaml) or --data"),
    (["SPEC", "--data", "iris"], "--data goes into the YAML spec"),
    (["SPEC", "--epochs", "3"], "--epochs goes into the YAML spec"),
])
def test_a_spec_or_data_one_line_errors(tmp_path, run_cli, args, fragment):
    args = [_spec(tmp_path) if a == "SPEC" else a for a in args]
    code, stdout, err = run_cli("tune", *args, "--out", tmp_path / "run")
    assert code == 2 and fragment in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_rerun_continues_to_n_trials(tmp_path):
    spec = _spec(tmp_path)
    tune(spec, trials=4, pruner="none", sampler="random", seed=0, out=tmp_path / "run")
    result = tune(spec, trials=7, pruner="none", sampler="random", seed=0, out=tmp_path / "run")
    assert [t["number"] for t in result.trials] == list(range(7))


def _tune_process(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nnopt", "tune", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def _complete(study):
    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def test_kill_9_of_two_workers_then_rerun_gives_exactly_n(tmp_path):
    spec = _spec(tmp_path, data="digits", train={"epochs": 25, "batch_size": 16})
    out, n = tmp_path / "run", 8
    args = [spec, "--trials", n, "--workers", 2, "--pruner", "none", "--sampler", "random", "--seed", 0,
            "--out", out]
    proc = _tune_process(*args, start_new_session=True)
    journal = out / "study.journal"
    deadline = time.monotonic() + 120
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="nnopt-tune", storage=storage)
        except KeyError:
            continue
        running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if len(_complete(study)) >= 2 and running:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="nnopt-tune", storage=storage)
    assert len(_complete(study)) < n, "the study must be cut part-way"
    rerun = _tune_process(*args, "--json")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    study = optuna.load_study(study_name="nnopt-tune", storage=storage)
    complete = _complete(study)
    assert len(complete) == n
    assert len({t.number for t in study.get_trials(deepcopy=False)}) == len(study.get_trials(deepcopy=False))
    crashed = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("crashed")]
    assert crashed and all(t.state.name == "FAIL" for t in crashed)  # cut trials were failed, then re-run


def test_two_processes_share_one_postgresql_study(tmp_path, postgres_url):  # noqa: F811
    spec = _spec(tmp_path)
    n = 8
    procs = [_tune_process(spec, "--storage", postgres_url, "--study", "shared", "--trials", n, "--pruner", "none",
                           "--sampler", "random", "--seed", i, "--out", tmp_path / f"w{i}") for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(_complete(study)) == n
    password = postgres_url.split(":")[2].split("@")[0]
    for stdout, stderr in outputs:
        assert password not in stdout + stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".yaml", ".html", ".jsonl"):
            assert password not in path.read_text(errors="ignore"), path


BAD = [
    ("data: iris\nspace: {lr: {type: float, low: 1, high: [}\n", [], "malformed YAML"),
    ("data: iris\nspaces: {}\n", [], "unknown key 'spaces'"),
    ("data: iris\nspace: {lr: {type: flaot, low: 0.1, high: 1}}\n", [], "unknown param type 'flaot'"),
    ("data: iris\nspace: {lr: {type: float, low: 1, high: 0.1}}\n", [], "low"),
    ("data: iris\nspace: {lr: {type: float, low: 0, high: 1, log: true}}\n", [], "log scale needs low > 0"),
    ("data: iris\nspace: {optimizer: {choices: []}}\n", [], "choices"),
    ("data: iris\nspace: {momentum: {type: float, low: 0.1, high: 0.9, when: {optimiser: [sgd]}}}\n", [],
     "optimiser"),
    ("data: iris\nspace: {lr: {type: float, low: 0.001, high: 0.1}}\n", ["--sampler", "tpee"], "tpee"),
    ("data: iris\nspace: {lr: {type: float, low: 0.001, high: 0.1}}\n", ["--pruner", "fast"], "fast"),
    ("data: iris\nspace: {lr: {type: float, low: 0.001, high: 0.1}}\n", ["--sampler", "grid"],
     "grid sampler needs a finite space"),
    ("data: iris\nspace: {lr: {type: float, low: 0.001, high: 0.1}}\n",
     ["--storage", "postgresql+psycopg2://me:hunter2@127.0.0.1:9/db"], "cannot reach storage"),
]


@pytest.mark.parametrize("text, flags, fragment", BAD, ids=[b[2] for b in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(run_cli, tmp_path, text, flags, fragment):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    code, _, err = run_cli("tune", spec, *flags, "--out", out)
    assert code == 2 and fragment in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert "hunter2" not in err
    assert not out.exists()


def test_tune_api_on_a_black_box_function():
    result = nnopt.tune(bowl, space=SPACE, directions="minimize", sampler="grid", trials=100)
    assert result.best_params == {"x": 1.0, "kind": "a"} and result.best_value == 0.0


def test_report_false_leaves_the_report_to_nnopt_report(tmp_path, run_cli):
    kept, skipped = tmp_path / "kept", tmp_path / "skipped"
    common = dict(space=SPACE, directions="minimize", sampler="random", trials=12, seed=0)
    nnopt.tune(bowl, out=kept, **common)
    result = nnopt.tune(bowl, out=skipped, report=False, **common)
    assert result.counts()["complete"] == 12
    assert sorted(p.name for p in skipped.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "study.journal", "trials.csv", "trials.json"]
    code, printed, _ = run_cli("report", skipped)
    assert code == 0 and printed.strip() == str(skipped / "report.html")
    # the same plots as the report a default call draws (the same trials: seeded sampler, same function)
    drawn = {p.name: p.read_bytes() for p in skipped.glob("*.png")}
    assert drawn.keys() == {"optimization_history.png", "param_importances.png", "parallel_coordinate.png",
                            "slice.png"}
    assert drawn == {p.name: p.read_bytes() for p in kept.glob("*.png")}
    assert "Hyperparameter search" in (skipped / "report.html").read_text()


@pytest.mark.parametrize("value, shown", [("no", "'no'"), (0, "0"), (None, "a NoneType")])
def test_report_must_be_true_false_or_auto(tmp_path, value, shown):
    from nnopt.errors import UsageError

    with pytest.raises(UsageError) as info:
        nnopt.tune(bowl, space=SPACE, trials=2, out=tmp_path / "run", report=value)
    assert str(info.value) == f"report= must be True, False or 'auto'; got {shown}"
    assert not (tmp_path / "run").exists()


def test_report_auto_is_drawn_unless_it_would_set_the_calls_time():
    from nnopt.api import report_seconds, report_worth_drawing

    assert report_worth_drawing(20, 0.05) and report_worth_drawing(300, 0.2)  # at most half a second: drawn
    assert not report_worth_drawing(1000, 1.9)  # 1000 two-millisecond trials: 0.65 s more than 1.9 s
    assert report_worth_drawing(1000, 13.0)  # 1000 TPE trials of 13 ms: 5 % more
    assert report_worth_drawing(50, 60.0)  # trials that train networks
    assert report_seconds(3000) > report_seconds(1000) > report_seconds(20) > 0


def test_report_auto_skipped_says_so_and_report_true_draws_it(tmp_path, monkeypatch, run_cli):
    import nnopt.api

    monkeypatch.setattr(nnopt.api, "report_seconds", lambda trials: 100.0)  # as a long study of quick trials
    common = dict(space=SPACE, directions="minimize", sampler="random", trials=5, seed=0)
    with pytest.warns(UserWarning) as caught:
        result = nnopt.tune(bowl, out=tmp_path / "auto", **common)
    assert result.counts()["complete"] == 5 and not (tmp_path / "auto" / "report.html").exists()
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("report.html not drawn: 5 trials took ") and \
        message.endswith(f"draw it with nnopt report {tmp_path / 'auto'}, or pass report=True")
    nnopt.tune(bowl, out=tmp_path / "forced", report=True, **common)
    assert (tmp_path / "forced" / "report.html").is_file()
    code, _, _ = run_cli("report", tmp_path / "auto")
    assert code == 0 and (tmp_path / "auto" / "report.html").is_file()


def test_dashboard_without_the_extra_is_a_usage_error(tmp_path):
    # dev installs the extra, so the CLI runs where it cannot be imported: None in sys.modules makes
    # `import optuna_dashboard` raise and importlib.util.find_spec return None, as when it is not installed
    hide = ("import sys; sys.modules['optuna_dashboard'] = None; from nnopt.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", hide, "dashboard", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == "error: optuna-dashboard is not installed; pip install optuna-dashboard\n"


def test_the_shipped_example_spec_runs(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "tune.yaml"
    result = tune(example, trials=3, pruner="none", sampler="random", seed=0, out=tmp_path / "run")
    assert result.counts()["complete"] == 3


@pytest.mark.parametrize("settings, fragment", [
    ({"sampler": "tpee"}, "unknown sampler 'tpee'; did you mean 'tpe'?"),
    ({"trials": 0}, "trials= must be an integer >= 1; got 0"),
    ({"trails": 5}, "unknown setting 'trails'; did you mean 'trials'?"),
])
def test_function_study_settings_are_checked(settings, fragment):
    from nnopt.errors import UsageError

    with pytest.raises(UsageError, match=None) as info:
        tune(bowl, space=SPACE, **settings)
    assert fragment in str(info.value)


def test_dashboard_serves_the_study_on_loopback(tmp_path):
    import socket
    import urllib.request

    tune(bowl, space=SPACE, directions="minimize", sampler="random", trials=3, seed=0, out=tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nnopt", "dashboard", str(tmp_path / "run"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and body is None:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    body = json.loads(response.read())
            except OSError:
                assert proc.poll() is None, proc.communicate()
        assert body is not None and [s["study_name"] for s in body["study_summaries"]] == ["nnopt-tune"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_config_json_names_in_memory_data_instead_of_writing_its_rows(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    result = nnopt.tune({"data": (X, y), "model": "mlp:{h}", "space": {"h": {"choices": [8, 16]}}, "trials": 2,
                         "pruner": "none", "train": {"epochs": 1}}, out=tmp_path / "t")
    assert result.counts()["complete"] == 2
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["data"] == "<tuple>"  # 1,797 x 64 numbers were written as lists (1.5 MB) before
    assert (tmp_path / "t" / "config.json").stat().st_size < 20_000


def test_best_yaml_runs_from_its_own_directory(tmp_path, run_cli, monkeypatch):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.to_csv(tmp_path / "iris.csv", index=False)
    monkeypatch.chdir(tmp_path)  # the data is named relative to where tune runs
    code, stdout, err = run_cli("tune", "--data", "iris.csv", "--target", "target", "--model", "mlp:16",
                                "--epochs", "2", "--trials", "2", "--sampler", "random", "--pruner", "none",
                                "--seed", "0", "--out", "run", "--json")
    assert code == 0, err
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["data"] == str(tmp_path / "iris.csv")
    monkeypatch.chdir(tmp_path / "run")  # "# reproduce: nnopt train --config best.yaml", from where the file is
    code, out, err = run_cli("train", "--config", "best.yaml", "--out", tmp_path / "again", "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["val"]["accuracy"] == pytest.approx(json.loads(stdout)["best_value"], abs=1e-9)
