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
