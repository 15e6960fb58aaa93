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
