"""The trial loop every worker runs: ask, train, tell — until the study holds its N trials.

"N trials" counts finished trials (complete, pruned, failed by their own error) plus running and queued ones,
so any number of workers on any number of machines stop at exactly N. Trials cut by a crash are failed
and re-run: on a database through Optuna's heartbeat and retry callback, on the journal file by noticing
that the process that claimed them on this machine is gone. A crashed trial holds its place in the count
until its re-run is queued, which then holds it: the count never dips, so no worker starts a trial too many.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import TrialState

from nnopt.fileio import pid_alive
from nnopt.search._storage import ASK_WITH_HEARTBEAT, GRACE_S, experimental_ok

try:  # what Study.tell() and Study.optimize() run; tell() adds a deep copy of the trial, unused here
    from optuna.study._tell import _tell_with_warning
except ImportError:  # a later Optuna that moved it: the public call, a little slower
    _tell_with_warning = None

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def counted(trials: list[optuna.trial.FrozenTrial], before: int | None = None) -> int:
    """Trials that use up the budget: finished, running or queued, but not surplus failures, crashed trials
    whose re-run is queued (the re-run takes their place), nor candidates rejected by a constraint before
    training (they cost milliseconds)."""
    mine = [t for t in trials if before is None or t.number < before]
    return sum(map(_uses_budget, mine)) - len({t.user_attrs["retry_of"] for t in mine if "retry_of" in t.user_attrs})


def _uses_budget(t: optuna.trial.FrozenTrial) -> bool:
    """Before the re-runs are subtracted: every trial a re-run points to is a failed one counted here."""
    return t.state in COUNTED and not (t.state == TrialState.FAIL and t.user_attrs.get("surplus")) and not (
        t.state == TrialState.PRUNED and "infeasible" in t.user_attrs)


def rejected(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.PRUNED and "infeasible" in t.user_attrs


class _Tally:
    """counted(), the rejected count and the unfinished trials of a growing trial list without rescanning it
    every trial: a finished trial never changes again, so the finished prefix (trials come in number order)
    is summed once."""

    def __init__(self) -> None:
        self.prefix, self.used, self.rejected = 0, 0, 0
        self.retried: set[int] = set()  # trials whose re-run exists; a trial never loses its retry_of

    def __call__(self, trials: list[optuna.trial.FrozenTrial]) -> tuple[int, int, list[optuna.trial.FrozenTrial]]:
        while self.prefix < len(trials) and trials[self.prefix].state.is_finished():
            t = trials[self.prefix]
            self.used += _uses_budget(t)
            self.rejected += rejected(t)
            self._note_retry(t)
            self.prefix += 1
        rest = trials[self.prefix:]
        for t in rest:
            self._note_retry(t)
        return (self.used + sum(map(_uses_budget, rest)) - len(self.retried),
                self.rejected + sum(map(rejected, rest)), [t for t in rest if not t.state.is_finished()])

    def _note_retry(self, t: optuna.trial.FrozenTrial) -> None:
        if "retry_of" in t.user_attrs:
            self.retried.add(t.user_attrs["retry_of"])


def infeasible_limit(n_trials: int) -> int:
    """Rejected candidates a study may draw before it gives up on finding feasible ones."""
    return max(200, 20 * n_trials)


class Claims:
    """Who runs which trial. On the journal file: one small file per worker process in the run directory's
    .running/, holding the number of the trial it runs, rewritten in place with one pwrite (no journal write,
    no fsync, no file created per trial); on a database: a user attribute, which every machine can read.
    In memory (shared=False) nothing is recorded: no other process can see the study, nor outlive this one."""

    WIDTH = 256  # fixed-size record: rewriting it never leaves a longer old one behind

    def __init__(self, folder: Path | None, shared: bool = True):
        self.folder = folder / ".running" if folder is not None else None
        self.shared = shared or self.folder is not None
        self.me = worker_id()
        self._fd: int | None = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def claim(self, trial: optuna.Trial) -> None:
        if self.folder is None:
            if self.shared:
                trial.set_user_attr("worker", self.me)
            return
        if self._fd is None:
            name = self.me.replace(":", ".").replace("/", "_")
            self._fd = os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._fd, f"{trial.number} {self.me}".ljust(self.WIDTH).encode(), 0)

    def release(self, trial: optuna.Trial) -> None:
        if self._fd is not None:
            os.pwrite(self._fd, b"-".ljust(self.WIDTH), 0)

    def close(self) -> None:
        """This worker is done: its record goes."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            (self.folder / self.me.replace(":", ".").replace("/", "_")).unlink(missing_ok=True)

    def owners(self) -> dict[int, tuple[str, Path]]:
        """trial number -> (the worker running it, its record file)."""
        found: dict[int, tuple[str, Path]] = {}
        for path in self.folder.iterdir() if self.folder is not None else ():
            try:
                number, _, owner = path.read_text().strip().partition(" ")
            except OSError:
                continue
            if number.isdigit() and owner:
                found[int(number)] = (owner, path)
        return found

    def owner(self, trial: optuna.trial.FrozenTrial) -> str | None:
        if self.folder is None:
            return trial.user_attrs.get("worker")
        return self.owners().get(trial.number, (None, None))[0]


UNCLAIMED_GRACE_S = 60.0  # a running trial nobody claims is judged crashed once this old


def recover_crashed(study: optuna.Study, claims: Claims) -> int:
    """Fail and re-queue RUNNING trials whose process on this host no longer exists (kill -9, OOM, crash); the
    number recovered. See sweep_crashed."""
    return sweep_crashed(study, claims)[0]


def sweep_crashed(study: optuna.Study, claims: Claims) -> tuple[int, int]:
    """(recovered, pending): RUNNING trials whose process on this host no longer exists are failed and queued
    again (recovered). The owner is this run directory's claim record, else the `worker` attribute a command
    sharing the study through storage= records. A running trial nobody claims was cut between its start and its
    claim (a kill in that moment of a trial's start): it cannot be judged until it is UNCLAIMED_GRACE_S old
    (pending), and is recovered then."""
    if not claims.shared:
        return 0, 0
    host = socket.gethostname()
    recovered = pending = 0
    records = claims.owners() if claims.folder is not None else {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = records[t.number][0] if t.number in records else t.user_attrs.get("worker")
        owner_host, _, pid = str(owner or "").rpartition(":")
        if not pid:
            started = t.datetime_start.timestamp() if t.datetime_start else time.time()
            if time.time() - started < UNCLAIMED_GRACE_S:
                pending += 1
                continue
        elif owner_host != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        fail_and_retry(study, t, "its worker process ended mid-trial; re-run")
        if t.number in records:
            records[t.number][1].unlink(missing_ok=True)  # the dead worker's record
        recovered += 1
    return recovered, pending


def fail_and_retry(study: optuna.Study, trial: Any, reason: str) -> None:
    """Mark a trial that did not finish by its own doing as failed and queue its params again (the queued copy
    takes its place in the count). Only the process whose FAIL lands queues the copy: two processes recovering
    the same trial queue it once."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "crashed", True)
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return
    except UpdateFinishedTrialError:
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], list[float]], n_trials: int,
               deadline: float | None, claims: Claims) -> None:
    heartbeat = is_heartbeat_enabled(study._storage)
    with warnings.catch_warnings():  # once for the whole loop: a filter change per trial costs more than the ask
        if heartbeat:
            warnings.filterwarnings("ignore", message=ASK_WITH_HEARTBEAT, category=UserWarning)
        _run_trials(study, objective, n_trials, deadline, claims, heartbeat)


def _run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], list[float]], n_trials: int,
                deadline: float | None, claims: Claims, heartbeat: bool) -> None:
    tally, limit = _Tally(), infeasible_limit(n_trials)
    while deadline is None or time.time() < deadline:
        if heartbeat:
            with experimental_ok():
                optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        used, n_rejected, unfinished = tally(trials)
        if n_rejected >= limit:
            return
        queued = any(t.state == TrialState.WAITING for t in unfinished)
        if used >= n_trials and not queued:
            if unfinished and not heartbeat:
                # a running trial of a process killed before it claimed the trial would be counted forever:
                # recover what can be judged, and wait for the rest to be claimed or old enough to judge
                recovered, pending = sweep_crashed(study, claims)
                if recovered or pending:
                    time.sleep(0 if recovered else 0.5)
                    continue
            if not (heartbeat and unfinished):
                return
            # The budget is spent, but a running trial on another machine may yet lose its heartbeat and be
            # queued again: stay until it is over, to run that copy (this process's trial, if any, is done).
            recover_crashed(study, claims)  # a dead process on this host needs no grace period
            time.sleep(max(study._storage.get_heartbeat_interval() / 5, 0.1))
            continue
        trial = study.ask()
        # A popped queued trial (a re-run) was counted while it waited. A new trial that is not the very next
        # number, or that may have taken a queued trial's place, races others for the last slots: count the
        # trials before it again.
        raced = trial.number > len(trials) or (trial.number == len(trials) and queued)
        if raced and "retry_of" not in trial.user_attrs and \
                counted(study.get_trials(deepcopy=False), before=trial.number) >= n_trials:
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("fail_reason", "not run: the study already had its trials")
            tell(study, trial, state=TrialState.FAIL)
            continue
        claims.claim(trial)
        try:
            if heartbeat:
                with get_heartbeat_thread(trial._trial_id, study._storage):
                    _run_one(study, trial, objective)
            else:
                _run_one(study, trial, objective)
        except BaseException:  # Ctrl-C or a kill signal turned exception: re-run this trial next time
            fail_and_retry(study, trial, "interrupted mid-trial; re-run")
            raise
        finally:
            claims.release(trial)


def _run_one(study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], list[float]]) -> None:
    try:
        values = objective(trial)
    except optuna.TrialPruned:
        tell(study, trial, state=TrialState.PRUNED)
        return
    except Exception as exc:  # noqa: BLE001 - any failure of one trial is recorded, and the study goes on
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
        tell(study, trial, state=TrialState.FAIL)
        return
    reason = unusable(values, len(study.directions))
    if reason:  # Optuna would fail the trial too, with a warning instead of a reason
        trial.set_user_attr("fail_reason", reason)
        tell(study, trial, state=TrialState.FAIL)
        return
    tell(study, trial, values if len(values) > 1 else values[0])


def unusable(values: list[float], n_objectives: int) -> str | None:
    """Why objective values cannot be told to the study (nan, or as many values as objectives), or None."""
    if len(values) != n_objectives:
        return (f"the objective returned {len(values)} value{'s' if len(values) != 1 else ''} for "
                f"{n_objectives} objective{'s' if n_objectives != 1 else ''}")
    if any(math.isnan(v) for v in values):
        return f"the objective returned nan ({', '.join(map(str, values))}); a trial's value must be a number"
    return None


def tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None) -> None:
    """study.tell(trial, values, state=state), without copying the finished trial for a return value."""
    if _tell_with_warning is None:
        study.tell(trial, values, state=state)
    else:
        _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)


def trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial as plain data (trials.json): enough to rebuild it with optuna.trial.create_trial."""
    return {
        "number": t.number, "state": t.state.name, "values": t.values,
        "params": t.params,
        "distributions": {k: _distribution_json(d, tuple(map(type, getattr(d, "choices", ()))))
                          for k, d in t.distributions.items()},
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "duration_s": t.duration.total_seconds() if t.duration else None,
        "datetime_start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
        "datetime_complete": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
        "user_attrs": _shown_attrs(t),
    }


@functools.lru_cache(maxsize=1024)
def _distribution_json(distribution: optuna.distributions.BaseDistribution, choice_types: tuple) -> str:
    """A parameter's distribution is the same in nearly every trial: encoded once, not once a trial (the encoding
    was half the time of turning 1000 trials into rows). The choices' types are part of the key: equal choices
    such as 1 and True encode differently."""
    return optuna.distributions.distribution_to_json(distribution)


def _shown_attrs(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = {k: v for k, v in t.user_attrs.items() if k != "worker"}
    if t.state == TrialState.FAIL and "fail_reason" not in attrs:
        # Every failure nnopt records carries its reason; one without was failed by Optuna's heartbeat check.
        attrs["fail_reason"] = f"no heartbeat for {GRACE_S} s: its process or machine stopped mid-trial"
    return attrs
