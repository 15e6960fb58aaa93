"""The journal file's lock after a process holding it is killed: Optuna frees a lock whose file has not changed
for its grace period, which it can only see when the lock (a symlink to the journal) resolves; a relative run
directory (the default runs/tune-NAME) made a link that pointed nowhere, and a re-run after kill -9 waited on it
forever."""

import os
from pathlib import Path

from nnopt.search._storage import open_storage


def _held_lock(storage):
    lock = storage._backend._lock
    assert lock.acquire()
    return lock


def test_the_lock_of_a_relative_run_directory_resolves_to_the_journal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = _held_lock(open_storage(None, Path("runs/tune-x")))
    link = tmp_path / "runs" / "tune-x" / "study.journal.lock"
    assert link.is_symlink()
    # what Optuna stats to tell a stale lock from a live one: the journal the link points to
    assert os.stat(link).st_ino == os.stat(tmp_path / "runs" / "tune-x" / "study.journal").st_ino
    lock.release()
    assert not link.is_symlink()


def test_a_relative_journal_url_resolves_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = _held_lock(open_storage("journal:shared/study.journal", Path(".")))
    link = tmp_path / "shared" / "study.journal.lock"
    assert os.stat(link).st_ino == os.stat(tmp_path / "shared" / "study.journal").st_ino
    lock.release()


def _left_by_a_killed_process(run_dir):
    """The journal lock as a process killed inside a journal write leaves it: a symlink to the journal."""
    journal = run_dir / "study.journal"
    os.symlink(os.path.abspath(journal), str(journal) + ".lock")
    old = os.lstat(str(journal) + ".lock").st_mtime - 60  # a minute ago, as the re-run of a killed command finds it
    os.utime(str(journal) + ".lock", (old, old), follow_symlinks=False)


def test_a_rerun_frees_a_lock_left_in_its_own_run_directory_at_once(tmp_path, monkeypatch, caplog):
    """A re-run holds the run directory, so no process of the killed command is alive (forked workers would hold
    the directory too): the lock is stale, and the re-run need not wait out Optuna's 30 s grace period."""
    import logging

    import nnopt

    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    monkeypatch.chdir(tmp_path)
    nnopt.tune(lambda p: p["x"], space=space, trials=2, seed=0, out="runs/t", report=False)
    _left_by_a_killed_process(tmp_path / "runs" / "t")
    with caplog.at_level(logging.WARNING, logger="optuna"):
        result = nnopt.tune(lambda p: p["x"], space=space, trials=4, seed=0, out="runs/t", report=False)
    assert len(result.trials) == 4
    assert not [r for r in caplog.records if "lock" in r.getMessage()], [r.getMessage() for r in caplog.records]
    assert not (tmp_path / "runs" / "t" / "study.journal.lock").is_symlink()


def test_a_lock_taken_a_moment_ago_is_left_to_optuna(tmp_path, monkeypatch):
    """Another command may share this run directory's journal through storage=journal:PATH: a lock younger than
    LOCK_STALE_S may be its append in progress."""
    from nnopt.fileio import lock_run_dir
    from nnopt.search._storage import release_stale_lock

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "study.journal").touch()
    os.symlink(str(tmp_path / "run" / "study.journal"), str(tmp_path / "run" / "study.journal.lock"))
    with lock_run_dir(tmp_path / "run"):
        assert not release_stale_lock(tmp_path / "run")
    assert (tmp_path / "run" / "study.journal.lock").is_symlink()


def test_a_journal_shared_through_a_url_keeps_its_lock(tmp_path, monkeypatch):
    """journal:PATH may be shared by commands with other run directories: its lock is Optuna's to judge."""
    from nnopt.fileio import lock_run_dir
    from nnopt.search._storage import release_stale_lock

    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "study.journal").touch()
    _left_by_a_killed_process(tmp_path / "shared")
    with lock_run_dir(tmp_path / "run"):
        assert not release_stale_lock(tmp_path / "run")  # no lock there
    assert not release_stale_lock(tmp_path / "shared")  # not held by this process
    assert (tmp_path / "shared" / "study.journal.lock").is_symlink()
