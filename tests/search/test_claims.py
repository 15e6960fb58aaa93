"""Who runs which trial on a journal file: one record per worker process, rewritten in place."""

from __future__ import annotations

import optuna

from nnopt.search._loop import Claims, recover_crashed, worker_id


def test_records_map_trials_to_workers_and_dead_workers_are_recovered(tmp_path):
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    claims = Claims(tmp_path)
    trial = study.ask()
    claims.claim(trial)
    assert claims.owner(study.trials[0]) == worker_id()
    assert len(list((tmp_path / ".running").iterdir())) == 1
    claims.release(trial)
    assert claims.owner(study.trials[0]) is None
    claims.claim(trial)
    # a worker on this host whose process is gone (no pid is that large): its running trial is failed and queued
    (tmp_path / ".running" / "ghost").write_text(f"{trial.number + 1} {worker_id().rsplit(':', 1)[0]}:999999999")
    lost = study.ask()
    assert lost.number == trial.number + 1
    assert recover_crashed(study, claims) == 1
    states = {t.number: t.state for t in study.trials}
    assert states[lost.number] == optuna.trial.TrialState.FAIL and states[trial.number].name == "RUNNING"
    assert not (tmp_path / ".running" / "ghost").exists()
    assert study.trials[-1].state == optuna.trial.TrialState.WAITING  # queued again
    claims.close()
    assert list((tmp_path / ".running").iterdir()) == []


def test_a_trial_cut_before_its_claim_is_rerun_so_the_study_ends_with_exactly_n(tmp_path, monkeypatch):
    """A process killed between a trial's start and its claim leaves a RUNNING trial nobody owns: the re-run
    waits until it is old enough to judge (UNCLAIMED_GRACE_S), fails it and runs its copy, instead of counting it
    forever and ending one trial short."""
    import nnopt
    from nnopt.search import _loop

    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    out = tmp_path / "run"
    nnopt.tune(lambda p: p["x"], space=space, trials=3, seed=0, out=out, report=False)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    cut = optuna.load_study(study_name="nnopt-tune", storage=storage).ask()  # started, never claimed
    monkeypatch.setattr(_loop, "UNCLAIMED_GRACE_S", 1.0)
    result = nnopt.tune(lambda p: p["x"], space=space, trials=4, seed=0, out=out, report=False)
    states = {t["number"]: t["state"] for t in result.trials}
    assert list(states.values()).count("COMPLETE") == 4
    assert states[cut.number] == "FAIL"
    failed = next(t for t in result.trials if t["number"] == cut.number)
    assert failed["user_attrs"]["fail_reason"] == "its worker process ended mid-trial; re-run"
    assert sum(t["user_attrs"].get("retry_of") == cut.number for t in result.trials) == 1
