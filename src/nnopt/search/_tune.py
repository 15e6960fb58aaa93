"""tune(): a spec (or any function) -> an Optuna study run by N worker processes -> the run directory.

Re-running the same command continues the study to N trials in all (the default run directory and study
name come from the spec file's name). Outputs: trials.json / trials.csv, best.yaml (runnable with
`nnopt train --config best.yaml`), best/ (the best configuration retrained, with its model.pt), config.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nnopt.config import portable_paths
from nnopt.errors import ConfigError, UsageError, did_you_mean, param, require_int
from nnopt.fileio import atomic_write_json, atomic_write_text, make_run_dir
from nnopt.search._evolution import default_sizes
from nnopt.search._loop import Claims, infeasible_limit, recover_crashed, rejected, run_trials, trial_row
from nnopt.search._objective import FunctionObjective, TrainObjective, fit_arguments, load_spec_data, measure
from nnopt.search._samplers import make_sampler, make_pruner
from nnopt.search._space import Space
from nnopt.search._spec import CONSTRAINTS, PRUNERS, SAMPLERS, Objective, TuneSpec, load_tune_spec
from nnopt.search._storage import describe_storage, open_storage, release_stale_lock
from nnopt.train import fit
from nnopt.train._outputs import describe_source
from nnopt.train._prepare import thread_count
from nnopt.train._threads import can_fork

DEFAULT_TRIALS = 20
SETTINGS = ("sampler", "pruner", "trials", "timeout", "workers", "storage", "study", "seed", "sampler_params")


@dataclass
class TuneResult:
    best_params: dict[str, Any] | None
    best_values: list[float] | None
    best_trials: list[int]
    objectives: list[dict[str, str]]
    study_name: str
    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    frozen_trials: list[optuna.trial.FrozenTrial] = field(default_factory=list, repr=False)  # as Optuna holds them
    _rows: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def trials(self) -> list[dict[str, Any]]:
        """Every trial as plain data (the rows of trials.json), made when first read: a study of a thousand
        millisecond trials in memory spent a tenth of its time making rows that nobody read."""
        if self._rows is None:
            self._rows = [trial_row(t) for t in self.frozen_trials]
        return self._rows

    @property
    def best_value(self) -> float | None:
        return self.best_values[0] if self.best_values else None

    def counts(self) -> dict[str, int]:
        states = [t["state"] for t in self.trials if not t["user_attrs"].get("surplus")]
        return {s.lower(): states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}

    def summary(self) -> dict[str, Any]:
        return {"best_params": self.best_params, "best_value": self.best_value, "best_values": self.best_values,
                "best_trials": self.best_trials, "objectives": self.objectives, "trials": self.counts(),
                "study": self.study_name, "run_dir": str(self.run_dir) if self.run_dir else None}


@dataclass
class _Worker:
    """Everything one worker process needs (picklable: storages are reopened in the process)."""

    index: int
    spec: TuneSpec | None
    function: Any
    space: Space
    objectives: list[Objective]
    storage_url: str | None
    run_dir: Path | None
    study_name: str
    n_trials: int
    deadline: float | None
    seed: int | None
    sampler: str
    pruner: str
    epochs: int | None
    sampler_params: dict[str, Any] = field(default_factory=dict)


def tune(spec_or_function: Any, *, space: Any = None, directions: Any = "maximize", out: str | Path | None = None,
         retrain: bool = True, **overrides: Any) -> TuneResult:
    """Run (or continue) a study.

    spec_or_function: a tune spec (YAML path or mapping), or a function params -> value(s) with `space`.
    retrain: train the best configuration again into out/best (a spec with a run directory only).
    overrides: sampler, pruner, trials, timeout, workers, storage, study, seed (as on the command line).
    """
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no log line per trial
    try:
        return _tune(spec_or_function, space=space, directions=directions, out=out, retrain=retrain, **overrides)
    finally:
        optuna.logging.set_verbosity(previous)


def _tune(spec_or_function: Any, *, space: Any, directions: Any, out: str | Path | None, retrain: bool,
          **overrides: Any) -> TuneResult:
    if callable(spec_or_function):
        spec = None
        function = spec_or_function
        parsed_space = Space.parse(space or {})
        if not parsed_space.params:
            raise UsageError("tune(function) needs space={...} with at least one parameter")
        names = [directions] if isinstance(directions, str) else list(directions)
        objectives = [Objective(f"value{i}" if len(names) > 1 else "value", d) for i, d in enumerate(names)]
        settings = {k: v for k, v in overrides.items() if v is not None}
        _check_settings(settings)
        data = None
    else:
        spec = load_tune_spec(spec_or_function, overrides)
        function, parsed_space = None, spec.space
        data = load_spec_data(spec)
        objectives = spec.resolve_objectives(data.task)
        if len(data.val) == 0 and any(o.metric.startswith("val_") for o in objectives):
            raise UsageError(f"the objective {objectives[0].metric} is scored on the validation split, which is "
                             "empty (val_fraction 0); give train: {val_fraction: 0.15} or a train_ objective")
        if spec.architecture is not None:
            check_feasible(spec, data)
        settings = {k: getattr(spec, k) for k in SETTINGS if getattr(spec, k) is not None}
    multi = len(objectives) > 1
    sampler = settings.get("sampler", "nsga2" if multi else "tpe")
    pruner = settings.get("pruner", "none" if multi or spec is None else "asha")
    workers = int(settings.get("workers", 1))
    n_trials = int(settings.get("trials", DEFAULT_TRIALS))
    seed = settings.get("seed")
    epochs = (spec.train.get("epochs") if spec else None) or (10 if spec else None)
    grid = parsed_space.grid() if sampler == "grid" else None
    if grid is not None:
        n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
    sampler_params = dict(spec.sampler_params if spec else settings.get("sampler_params") or {})
    if sampler == "evolution":
        sampler_params = default_sizes(n_trials, sampler_params)
    pruner_params = spec.pruner_params if spec else {}
    # Built here so bad names and settings fail before anything is written; worker 0 (this process) uses them.
    engines = (make_sampler(sampler, seed=seed, grid=grid, multi_objective=multi, params=sampler_params),
               make_pruner(pruner, epochs=epochs, multi_objective=multi, params=pruner_params))
    storage_url = settings.get("storage")
    run_dir = Path(out) if out is not None else None
    if run_dir is None and storage_url is None and workers > 1:
        raise UsageError("several workers share a study through its storage: give out=DIR or storage=URL")
    study_name = settings.get("study") or ("nnopt-search" if spec and spec.architecture else "nnopt-tune")
    if run_dir is not None and storage_url is None:  # before any worker starts: a lock there now is a dead one's
        release_stale_lock(run_dir)
    storage = open_storage(storage_url, run_dir) if (run_dir or storage_url) else optuna.storages.InMemoryStorage()
    if run_dir is not None:
        make_run_dir(run_dir)
    directions_list = [o.direction for o in objectives]
    try:
        try:
            study = optuna.create_study(study_name=study_name, storage=storage, directions=directions_list,
                                        load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago
            study = optuna.load_study(study_name=study_name, storage=storage)
    except ValueError as exc:
        raise UsageError(f"study '{study_name}' exists with other settings ({exc}); use another "
                         f"{param('study')}") from None
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions_list]:
        raise UsageError(f"study '{study_name}' in this storage optimizes other directions; use another "
                         f"{param('study')}")
    recover_crashed(study, Claims(run_dir if storage_url is None else None, shared=bool(run_dir or storage_url)))
    config = {"command": "search" if spec and spec.architecture else "tune", **(spec.to_dict() if spec else {"space": parsed_space.to_dict()}),
              "objectives": [{"metric": o.metric, "direction": o.direction} for o in objectives],
              "sampler": sampler, "pruner": pruner, "trials": n_trials, "timeout": settings.get("timeout"),
              "workers": workers, "storage": describe_storage(storage_url) if run_dir or storage_url else "memory",
              "study_name": study_name, "seed": seed, "sampler_settings": sampler_params, "data_info": data.describe() if data else None,
              "environment": {"python": platform.python_version(), "optuna": optuna.__version__,
                              "cpu_count": os.cpu_count()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if run_dir is not None:
        atomic_write_json(run_dir / "config.json", _described(config))
    timeout = settings.get("timeout")
    deadline = time.time() + float(timeout) if timeout else None
    jobs = [_Worker(i, spec, function, parsed_space, objectives, storage_url, run_dir, study_name, n_trials,
                    deadline, seed if seed is None or workers == 1 else seed + i, sampler, pruner, epochs,
                    sampler_params)
            for i in range(workers)]
    _run_workers(jobs, study, data, engines)
    return _finish(study, spec, objectives, config, run_dir, data if retrain else None)


def check_feasible(spec: TuneSpec, data: Any) -> None:
    """Before any training: can any network of the architecture space meet the constraints? Its cheapest
    candidates are built and measured (milliseconds); if none meets them all, say so now, not after hours."""
    if spec.architecture is None:
        return
    for candidate in spec.architecture.cheapest():
        try:
            costs = measure(candidate, data, latency="max_latency_ms" in spec.constraints)
        except ConfigError as error:
            raise UsageError(f"architecture space {spec.architecture.name} does not fit data "
                             f"{data.name}: {error}") from None
        if not spec.constraints:
            return  # the space builds on this data; nothing more to check
        if not spec.violations(costs):
            return
    smallest = spec.architecture.cheapest()
    best = {metric: min(measure(a, data, latency=metric == "latency_ms")[metric] for a in smallest)
            for metric in {CONSTRAINTS[key] for key in spec.constraints}}
    broken = spec.violations(best)
    detail = (f"the smallest has {'; '.join(broken).replace(' > ', ', over the limit of ')}" if broken else
              "each limit alone can be met, but no network meets them all")
    raise UsageError(f"no architecture in space {spec.architecture.name} meets the constraints on {data.name}: "
                     f"{detail}; loosen the limits or widen the space")


def _check_settings(settings: dict[str, Any]) -> None:
    """The flags of a function study, checked like a spec's (a spec file is checked by load_tune_spec)."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UsageError(f"tune() got an unknown setting '{unknown[0]}'{did_you_mean(unknown[0], SETTINGS)} "
                         f"choices: {', '.join(SETTINGS)}")
    for key, choices in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in settings and settings[key] not in choices:
            raise UsageError(f"unknown {key} '{settings[key]}'{did_you_mean(str(settings[key]), choices)} "
                             f"choices: {', '.join(choices)}")
    for key in ("trials", "workers"):
        require_int(key, settings.get(key, 1), 1)


def _work(job: _Worker, study: optuna.Study | None = None, data: Any = None, engines: tuple | None = None) -> None:
    """One worker: open the study with this worker's sampler and pruner (`engines`, when already built), then
    run trials."""
    if engines is None:
        grid = job.space.grid() if job.sampler == "grid" else None
        multi = len(job.objectives) > 1
        engines = (make_sampler(job.sampler, seed=job.seed, grid=grid, multi_objective=multi,
                                params=job.sampler_params),
                   make_pruner(job.pruner, epochs=job.epochs, multi_objective=multi,
                               params=job.spec.pruner_params if job.spec else {}))
    sampler, pruner = engines
    if study is None:
        storage = open_storage(job.storage_url, job.run_dir) if job.run_dir or job.storage_url else None
        study = optuna.load_study(study_name=job.study_name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study.sampler, study.pruner = sampler, pruner
    if job.spec is not None:
        data = data if data is not None else load_spec_data(job.spec)
        objective = TrainObjective(job.spec, job.objectives, data, job.spec.seed or 0)
    else:
        objective = FunctionObjective(job.function, job.space)
    claims = Claims(job.run_dir if job.storage_url is None else None, shared=bool(job.run_dir or job.storage_url))
    try:
        run_trials(study, objective, job.n_trials, job.deadline, claims)
    finally:
        claims.close()


def _run_workers(jobs: list[_Worker], study: optuna.Study, data: Any, engines: tuple) -> None:
    """Worker 0 is this process (already warm: data loaded, study open). The others are forked where the
    platform can (train._threads.can_fork) and the study is a journal file (they start in milliseconds with the
    data in memory and reopen the file themselves); spawned for a database, whose open connections a forked
    child must not share."""
    fork = can_fork() and jobs[0].storage_url is None
    context = multiprocessing.get_context("fork" if fork else "spawn")
    processes = [context.Process(target=_work_in_process, args=(job, data if fork else None)) for job in jobs[1:]]
    for p in processes:
        p.start()
    try:
        with thread_count(1):
            _work(jobs[0], study=study, data=data, engines=engines)
        for p in processes:
            p.join()
    except BaseException:
        for p in processes:
            p.terminate()
        raise


def _work_in_process(job: _Worker, data: Any = None) -> None:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the calling process set it for worker 0
    _work(job, data=data)


def _finish(study: optuna.Study, spec: TuneSpec | None, objectives: list[Objective], config: dict[str, Any],
            run_dir: Path | None, data: Any) -> TuneResult:
    frozen = study.get_trials(deepcopy=False)
    complete = any(t.state == TrialState.COMPLETE for t in frozen)
    if len(objectives) == 1:
        best = [study.best_trial] if complete else []
    else:  # the Pareto point kept and retrained: the best on the first objective (ties: the earliest)
        sign = 1 if objectives[0].direction == "maximize" else -1
        best = sorted(study.best_trials if complete else [], key=lambda t: (-sign * t.values[0], t.number))
    infeasible = sum(map(rejected, frozen))
    if not complete and infeasible >= infeasible_limit(config["trials"]):
        raise UsageError(f"all {infeasible} sampled architectures broke the constraints "
                         f"({', '.join(f'{k} {v:g}' for k, v in (spec.constraints if spec else {}).items())}); "
                         "loosen them or narrow the space to smaller networks")
    result = TuneResult(
        best_params=best[0].params if best else None, best_values=best[0].values if best else None,
        best_trials=[t.number for t in best], frozen_trials=frozen,
        objectives=[{"metric": o.metric, "direction": o.direction} for o in objectives],
        study_name=study.study_name, run_dir=run_dir, config=config)
    if run_dir is None:
        return result
    trials = result.trials
    write_trials_json(run_dir / "trials.json", {
        "study_name": study.study_name, "directions": [o.direction for o in objectives],
        "objective_names": [o.metric for o in objectives], "best_trials": result.best_trials,
        "best_yaml_trial": result.best_trials[0] if result.best_trials else None,
        "kind": "search" if spec is not None and spec.architecture is not None else "tune",
        "constraints": dict(spec.constraints) if spec is not None else {},
        "architecture": spec.architecture.to_dict() if spec is not None and spec.architecture else None,
        "trials": trials})
    atomic_write_text(run_dir / "trials.csv", trials_csv(trials, [o.metric for o in objectives]))
    if spec is not None and spec.architecture is not None:
        names = [o.metric for o in objectives]
        if len(objectives) > 1:
            atomic_write_text(run_dir / "pareto.csv", architectures_csv([_row(t) for t in best], names))
        else:
            atomic_write_text(run_dir / "top.csv", architectures_csv(top_trials(trials, objectives[0]), names))
    if spec is not None and best:
        import yaml

        settings = {**spec.trial_train_spec(best[0].params), "seed": spec.seed or 0}
        if isinstance(settings.get("data"), str):
            settings = portable_paths(settings)  # the comment's command works from the run directory too
            header = (f"# best of study '{study.study_name}': trial {best[0].number}, "
                      f"{', '.join(f'{o.metric}={v:.6g}' for o, v in zip(objectives, best[0].values))}\n"
                      "# reproduce: nnopt train --config best.yaml\n")
            atomic_write_text(run_dir / "best.yaml", header + yaml.safe_dump(settings, sort_keys=False))
        if data is not None:
            model, settings = fit_arguments(spec, best[0].params)
            if isinstance(spec.data, str):  # by its name and loading keys, as best.yaml: best/ records where its
                # rows come from, so `nnopt evaluate best --split test` and `nnopt compress best` find them again
                settings = spec.trial_train_spec(best[0].params)
                model, source = settings.pop("model"), settings.pop("data")
                fit(model, source, **{"seed": spec.seed or 0, **settings, "out": run_dir / "best"})
            else:
                fit(model, data, seed=spec.seed or 0, out=run_dir / "best", **settings)
    return result


def write_trials_json(path: Path, content: dict[str, Any]) -> None:
    """trials.json with one trial a line: readable, and written in a tenth of the time of indent=2."""
    head = {k: v for k, v in content.items() if k != "trials"}
    lines = [json.dumps(t, default=str) for t in content["trials"]]
    text = json.dumps(head, indent=2)[:-2] + ',\n  "trials": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"
    atomic_write_text(path, text if lines else json.dumps(content, indent=2) + "\n")


TOP_K = 10
ARCH_COLUMNS = ("params", "flops", "size_kb", "latency_ms", "epochs_run")


def _row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {"number": trial.number, "values": trial.values, "user_attrs": trial.user_attrs}


def top_trials(trials: list[dict[str, Any]], objective: Objective, k: int = TOP_K) -> list[dict[str, Any]]:
    """The k best complete trials of a single-objective study, best first (ties: the earliest)."""
    sign = 1 if objective.direction == "maximize" else -1
    done = [t for t in trials if t["state"] == "COMPLETE" and t["values"]]
    return sorted(done, key=lambda t: (-sign * t["values"][0], t["number"]))[:k]


def architectures_csv(rows: list[dict[str, Any]], objective_names: list[str]) -> str:
    """rank, trial, model spec string, objective values, costs: the table of pareto.csv / top.csv."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [c for c in ARCH_COLUMNS if c not in objective_names]
    writer.writerow(["rank", "trial", "model", *objective_names, *extra])
    for rank, t in enumerate(rows, 1):
        attrs = t["user_attrs"]
        writer.writerow([rank, t["number"], attrs.get("model", ""), *(f"{v:.6g}" for v in t["values"]),
                         *("" if attrs.get(c) is None else f"{attrs[c]:.6g}" for c in extra)])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def trials_csv(trials: list[dict[str, Any]], objective_names: list[str]) -> str:
    params = sorted({k for t in trials for k in t["params"]})
    # the model and its measured costs, where the trials recorded them (architecture search, constraints)
    # (a cost that is also an objective is written once, as the objective)
    measured = [c for c in ("model", *ARCH_COLUMNS[:-1])
                if c not in objective_names and any(c in t["user_attrs"] for t in trials)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", *objective_names, *params, *measured, "duration_s", "epochs_run",
                     "fail_reason"])
    for t in trials:
        values = t["values"] or [None] * len(objective_names)
        attrs = t["user_attrs"]
        writer.writerow([t["number"], t["state"], *("" if v is None else f"{v:.6g}" for v in values),
                         *("" if t["params"].get(p) is None else t["params"][p] for p in params),
                         *(_cell(attrs.get(c)) for c in measured),
                         "" if t["duration_s"] is None else f"{t['duration_s']:.3f}",
                         attrs.get("epochs_run", ""),
                         attrs.get("fail_reason", "") or (f"infeasible: {attrs['infeasible']}"
                                                          if "infeasible" in attrs else "")])
    return buffer.getvalue()


def _described(config: dict[str, Any]) -> dict[str, Any]:
    """config.json names data given in memory by its type ("<tuple>", "<memmap>", "<MyDataset>"), as a training run
    does, rather than writing its rows as lists (a memory-mapped array would be read whole)."""
    train = config.get("train")
    if isinstance(train, dict) and "val_data" in train:
        train = {**train, "val_data": describe_source(train["val_data"])}
    return {**config, "data": describe_source(config.get("data")), **({"train": train} if train is not None else {})}
