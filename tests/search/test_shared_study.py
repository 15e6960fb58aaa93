"""One study shared by several machines through a database: the driver a bare postgresql:// URL gets, trials
lost with a machine re-run until the study holds exactly N complete ones, and no warning on every trial."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import optuna
import pytest
from pg import postgres_url  # noqa: F401

import nnopt
from nnopt.search import _storage
from nnopt.search._loop import Claims, counted, fail_and_retry, run_trials
from nnopt.search._storage import RequeueStale, with_driver

SPACE = {"x": {"type": "float", "low": -1.0, "high": 1.0}}
COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)


def square(params):
    return params["x"] ** 2


def _bare(url):
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@pytest.mark.parametrize("installed, expected", [
    ({"psycopg2"}, "postgresql+psycopg2://u:p@h/db"),
    ({"psycopg"}, "postgresql+psycopg://u:p@h/db"),
    ({"psycopg", "psycopg2"}, "postgresql://u:p@h/db"),
    (set(), "postgresql://u:p@h/db"),
])
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_bare_postgresql_url_names_the_installed_driver(monkeypatch, scheme, installed, expected):
    monkeypatch.setattr(_storage, "_importable", lambda module: module in installed)
    assert with_driver(f"{scheme}://u:p@h/db") == expected
    for named in ("postgresql+psycopg2://u:p@h/db", "sqlite:///x.db", "mysql://u:p@h/db"):
        assert with_driver(named) == named


def test_a_bare_url_works_end_to_end_without_the_heartbeat_warning(tmp_path, postgres_url):  # noqa: F811
    url = _bare(postgres_url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nnopt.tune(square, space=SPACE, directions="minimize", sampler="random", seed=0, trials=3,
                            storage=url, study="bare-url", out=tmp_path / "run")
    assert result.counts() == {"complete": 3, "pruned": 0, "fail": 0}
    assert not [w for w in caught if "Heartbeat of storage" in str(w.message)], [str(w.message) for w in caught]
    password = url.split(":")[2].split("@")[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["storage"] == url.replace(password, "***")
    assert all(password.encode() not in p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file())


def test_a_crashed_trial_is_requeued_once_and_its_copy_takes_its_place():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=2)
    lost = study.ask()
    lost.suggest_float("x", -1, 1)
    assert counted(study.get_trials()) == 3  # the running trial holds its place
    fail_and_retry(study, lost, "gone")
    fail_and_retry(study, lost, "gone")  # a second process recovering the same trial queues nothing more
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]
    assert trials[3].user_attrs == {"retry_of": 2} and counted(trials) == 3
    copy = study.ask()
    assert copy.number == 3 and copy.suggest_float("x", -1, 1) == lost.params["x"]
    study.tell(copy, copy.params["x"] ** 2)
    assert counted(study.get_trials()) == 3
    # Optuna's heartbeat check fails a trial first, then calls back: the failed trial counts until its copy exists.
    stale = study.ask()
    stale.suggest_float("x", -1, 1)
    study.tell(stale, state=FAIL)
    assert counted(study.get_trials()) == 4
    with _storage.experimental_ok():
        RequeueStale(max_retry=3)(study, study.get_trials()[-1])
    trials = study.get_trials()
    assert trials[-1].state.name == "WAITING" and trials[-1].user_attrs == {"retry_of": stale.number}
    assert trials[-1].params == trials[-2].params and counted(trials) == 4


def test_a_worker_at_the_budget_waits_for_a_stale_trial_and_runs_its_copy(tmp_path, monkeypatch):
    # SQLite has Optuna's heartbeats too: the waiting logic, fast and without a server.
    monkeypatch.setattr(_storage, "HEARTBEAT_S", 1)
    monkeypatch.setattr(_storage, "GRACE_S", 1)
    storage = _storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    study = optuna.create_study(storage=storage, direction="minimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            trial = study.ask()
            study.tell(trial, square({"x": trial.suggest_float("x", -1, 1)}))
        lost = study.ask()  # another machine's trial, which stops beating
        lost.set_user_attr("worker", "elsewhere:1")
        lost_x = lost.suggest_float("x", -1, 1)
    storage.record_heartbeat(lost._trial_id)
    # past the deadline the worker would stop without the copy; how long the wait takes: benchmarks/failures.py
    run_trials(study, lambda t: [square({"x": t.suggest_float("x", -1, 1)})], 3, time.time() + 30, Claims(None))
    trials = study.get_trials()
    assert [t.state for t in trials] == [COMPLETE, COMPLETE, FAIL, COMPLETE]
    assert trials[3].user_attrs["retry_of"] == lost.number and trials[3].params["x"] == lost_x


# Runs one nnopt process of a shared study. Test hooks (this file only): FAKE_HOST makes the process claim its
# trials as another machine would (so the survivor cannot see that its process died and must rely on Optuna's
# heartbeat); short heartbeat and grace periods fail a lost trial in seconds instead of 30 s; HANG makes the
# process's second trial hang until it is killed.
WORKER = textwrap.dedent(
    """
    import os, socket, sys, time
    import nnopt.search._storage as storage

    storage.HEARTBEAT_S, storage.GRACE_S = 1, 2
    if os.environ.get("FAKE_HOST"):
        socket.gethostname = lambda: os.environ["FAKE_HOST"]
    import nnopt

    done = []

    def objective(params):
        if os.environ.get("HANG") and done:
            time.sleep(3600)
        time.sleep(0.2)
        done.append(1)
        return params["x"] ** 2

    result = nnopt.tune(objective, space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
                        directions="minimize", sampler="random", seed=int(sys.argv[1]), trials=int(sys.argv[2]),
                        storage=os.environ["STUDY_URL"], study="lost-machine", out=sys.argv[3])
    print(result.counts())
    """
)


def _worker(tmp_path, url, seed, n, out, **env):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(seed), str(n), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "STUDY_URL": url, **env})


def _wait_for(condition, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_machine_lost_mid_trial_is_rerun_and_the_study_ends_with_exactly_n(tmp_path, postgres_url):  # noqa: F811
    url, n = _bare(postgres_url), 6
    lost = _worker(tmp_path, url, 1, n, tmp_path / "lost", FAKE_HOST="elsewhere", HANG="1")
    storage = optuna.storages.RDBStorage(postgres_url)

    def trials():
        try:
            return optuna.load_study(study_name="lost-machine", storage=storage).get_trials(deepcopy=False)
        except KeyError:
            return []

    def hung():
        return [t for t in trials() if t.state == RUNNING and t.user_attrs.get("worker", "").startswith("elsewhere:")]

    _wait_for(lambda: hung() and any(t.state == COMPLETE for t in trials()), lost)
    survivor = _worker(tmp_path, url, 2, n, tmp_path / "survivor")
    _wait_for(lambda: len([t for t in trials() if t.state == COMPLETE]) >= 2, survivor)
    os.kill(lost.pid, signal.SIGKILL)
    lost.communicate()
    stdout, stderr = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, stderr
    assert "Heartbeat of storage" not in stderr
    password = url.split(":")[2].split("@")[0]
    assert password not in stdout + stderr

    final = trials()
    complete = [t for t in final if t.state == COMPLETE]
    assert len(complete) == n and len({t.number for t in final}) == len(final)
    (crashed,) = [t for t in final if t.state == FAIL]  # the trial lost with the machine, and nothing else
    (rerun,) = [t for t in final if t.user_attrs.get("retry_of") == crashed.number]  # re-run once
    assert rerun.state == COMPLETE and rerun.params == crashed.params
    shown = json.loads((tmp_path / "survivor" / "trials.json").read_text())["trials"]
    assert "no heartbeat" in next(t for t in shown if t["number"] == crashed.number)["user_attrs"]["fail_reason"]
