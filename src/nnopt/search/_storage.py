"""Where a study lives: an Optuna journal file in the run directory by default (many local processes can
append to it safely, where SQLite locks), or any Optuna storage URL (postgresql://, mysql://, sqlite:///)
that several `nnopt tune` processes on several machines can share."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from nnopt.errors import UsageError, param
from nnopt.fileio import holds_run_dir

JOURNAL = "study.journal"
LOCK_STALE_S = 2.0  # a journal lock this old, in a run directory this process holds, is a killed process's
HEARTBEAT_S = 10  # a database-backed trial that misses heartbeats for GRACE_S is failed and re-run
GRACE_S = 30
MAX_RETRY = 3  # a configuration that takes its machine down every time is given up after this many re-runs
# Optuna expects heartbeats under Study.optimize; nnopt runs its own ask/tell loop with Optuna's heartbeat thread.
ASK_WITH_HEARTBEAT = "Heartbeat of storage is supposed to be used with Study.optimize"


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Use Optuna features it marks experimental (heartbeats, TPE's group option, QMC) without its warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (passwords never reach output or files)."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def describe_storage(url: str | None) -> str:
    return f"journal:{JOURNAL}" if url is None else mask_url(url)


def storage_for(target: str | Path) -> BaseStorage:
    """A tune run directory (its journal file) or a storage URL -> the storage (for the dashboard)."""
    path = Path(target)
    if path.is_dir():
        if not (path / JOURNAL).is_file():
            raise UsageError(f"{path} holds no {JOURNAL}; give a tune run directory or the study's storage URL")
        return open_storage(None, path)
    if "://" not in str(target) and not str(target).startswith("journal:"):
        raise UsageError(f"{target} is neither a tune run directory nor a storage URL")
    return open_storage(str(target), Path("."))


def release_stale_lock(run_dir: Path) -> bool:
    """Remove the journal lock a process killed inside a journal write left in `run_dir`, when this process holds
    the run directory: no process of the killed command is then alive (the workers it forked hold the directory's
    lock with it). A command of another run directory may share this journal (storage=journal:PATH), so a lock
    younger than LOCK_STALE_S (an append holds it for milliseconds) is left to Optuna, which frees a stale one
    after a 30 s grace period of warnings."""
    lock = run_dir / (JOURNAL + ".lock")
    if not lock.is_symlink() or not holds_run_dir(run_dir):
        return False
    with contextlib.suppress(FileNotFoundError):
        if time.time() - lock.lstat().st_mtime < LOCK_STALE_S:
            return False
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()
    return True


def open_storage(url: str | None, run_dir: Path) -> BaseStorage:
    """The journal file in run_dir when url is None; a journal file for `journal:PATH`; else a database."""
    if url is None or url.startswith("journal:"):
        path = run_dir / JOURNAL if url is None else Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        # absolute: Optuna's lock is a symlink holding this text, resolved from the link's own directory; a
        # relative target points nowhere, and Optuna then never frees the lock a killed process left behind
        return JournalStorage(JournalFileBackend(os.path.abspath(path)))
    if "://" not in url:
        raise UsageError(f"{param('storage')} must be a database URL (postgresql://user:pass@host/db, "
                         f"sqlite:///file.db) or journal:PATH; got '{mask_url(url)}'")
    for attempt in range(6):
        try:
            return _database(url)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds
            # Processes starting together race to create Optuna's tables; the loser sees a duplicate: retry.
            if attempt < 5 and any(word in str(exc) for word in ("UniqueViolation", "already exists", "duplicate")):
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"cannot reach storage '{mask_url(url)}' ({mask_url(reason)[:200]}); "
                             "check the URL and that the server is running") from None
    raise AssertionError("unreachable")


def _database(url: str) -> RDBStorage:
    try:
        with experimental_ok():
            return RDBStorage(with_driver(url), heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RequeueStale(max_retry=MAX_RETRY),
                              engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except ImportError as exc:
        raise UsageError(f"the storage '{mask_url(url)}' needs a database driver ({exc}); "
                         "for PostgreSQL: pip install 'nnopt[postgres]'") from None


def with_driver(url: str) -> str:
    """A bare postgresql:// (or postgres://) URL names the PostgreSQL driver that is installed. SQLAlchemy picks
    psycopg 3 for a bare URL from 2.1 on and psycopg2 before, while nnopt's `postgres` extra installs psycopg2:
    left to SQLAlchemy, a bare URL fails wherever the one it picks is missing and the other is present."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    psycopg3, psycopg2 = _importable("psycopg"), _importable("psycopg2")
    if psycopg2 and not psycopg3:
        return f"postgresql+psycopg2://{rest}"
    if psycopg3 and not psycopg2:
        return f"postgresql+psycopg://{rest}"
    return f"postgresql://{rest}"  # both (SQLAlchemy's choice works) or neither (reported as a missing driver)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:  # absent, or psycopg 3 without its libpq
        return False
    return True


class RequeueStale(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped (its process or machine died), marked the way a re-run
    after a local crash is: `retry_of` on the queued copy takes the failed trial out of the budget count, so
    the study still reaches its N complete trials. Nothing else of the dead trial is copied: the re-run records
    its own attributes."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial.user_attrs = {"retry_of": trial.number}
        super().__call__(study, trial)
