"""tune and search: Optuna studies over hyperparameters and architectures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nnopt.cli._common import (
    batch_size,
    constraint_flags,
    data_flags,
    make_console,
    study_flags,
    table_args,
    table_flags,
)
from nnopt.errors import UsageError
from nnopt.fileio import slug


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    tune = sub.add_parser("tune", parents=[common], help="tune hyperparameters with Optuna",
                          description="Search hyperparameters from a YAML spec, or the optimizer, lr, batch size and "
                                      "weight decay of a model on --data; re-running continues the study.")
    tune.add_argument("spec", nargs="?", help="YAML spec: data, model template, train settings, objective, space "
                                              "(or give --data instead)")
    tune.add_argument("--data", help="without a spec: dataset name or path (as for train); tunes optimizer, lr, "
                                     "batch size and weight decay")
    tune.add_argument("--target", help="with --data: target column of a CSV/parquet file")
    tune.add_argument("--task", choices=["classification", "regression"], help="with --data: override task detection")
    tune.add_argument("--model", help="with --data: the network (default mlp:128,64)")
    # search._spec.DEFAULT_TUNE_EPOCHS, not imported here: it imports optuna and torch, which every command would
    # wait on
    tune.add_argument("--epochs", type=int, help="with --data: epochs per trial (default 10)")
    table_flags(tune)
    tune.add_argument("--sampler", help="grid | random | tpe | gp | cmaes | qmc | nsga2 (default tpe; nsga2 for "
                                        "several objectives)")
    tune.add_argument("--pruner", help="none | median | asha | hyperband (default asha)")
    study_flags(tune, "trials in the study", "nnopt-tune", "runs/tune-SPECNAME")

    search = sub.add_parser("search", parents=[common], help="search network architectures (NAS)",
                            description="Search architectures of a space on a dataset, under size and latency "
                                        "constraints; re-running continues the search.")
    data_flags(search)
    search.add_argument("--space", default="mlp", help="mlp | cnn | FILE.yaml (default mlp)")
    search.add_argument("--strategy", help="random | evolution | tpe | nsga2 (default tpe; nsga2 for "
                                           "several objectives)")
    search.add_argument("--objectives", help="comma-separated, e.g. val_accuracy,params (also flops, size_kb, "
                                             "latency_ms); default the task's validation score")
    constraint_flags(search, "candidate")
    search.add_argument("--epochs", type=int, default=10, help="epochs per candidate (default 10)")
    search.add_argument("--pruner", help="none | median | asha | hyperband: stop weak candidates early "
                                         "(default none)")
    search.add_argument("--optimizer", help="optimizer for every candidate (default adam)")
    search.add_argument("--lr", type=float, help="learning rate for every candidate (default: the optimizer's)")
    search.add_argument("--batch-size", type=batch_size, help="N or full (default: the optimizer's)")
    study_flags(search, "candidates trained", "nnopt-search", "runs/search-DATA-SPACE")


def _cmd_tune(args: argparse.Namespace) -> int:
    from nnopt.api import tune
    from nnopt.search._spec import default_tune_spec

    overrides = {k: getattr(args, k) for k in ("sampler", "pruner", "trials", "timeout", "workers", "storage",
                                               "study", "seed")}
    flags = {"--data": args.data, "--target": args.target, "--task": args.task, "--model": args.model,
             "--epochs": args.epochs, **{f"--{k.replace('_', '-')}": v for k, v in table_args(args).items()}}
    given = [flag for flag, value in flags.items() if value is not None]
    if args.spec is not None and given:
        raise UsageError(f"{given[0]} goes into the YAML spec ({args.spec}) when there is one; give either a spec "
                         "or --data")
    if args.spec is None and args.data is None:
        raise UsageError("nnopt tune needs a YAML spec (nnopt tune spec.yaml) or --data to tune a model's optimizer, "
                         "lr, batch size and weight decay")
    if args.spec is None:
        spec: Any = default_tune_spec(args.data, model=args.model, epochs=args.epochs, target=args.target,
                                      task=args.task, **table_args(args))
        out = args.out or f"runs/tune-{slug(args.data)}"
    else:
        spec, out = args.spec, args.out or f"runs/tune-{Path(args.spec).stem}"
    result = tune(spec, out=out, report=True, **overrides)
    if args.json:
        print(json.dumps(result.summary()))
        return _every_trial_failed(result)
    counts = result.counts()
    console = make_console()
    console.print(f"study '{result.study_name}': {counts['complete']} complete, {counts['pruned']} pruned, "
                  f"{counts['fail']} failed")
    if result.best_params is not None:
        values = ", ".join(f"{o['metric']}={v:.4g}" for o, v in zip(result.objectives, result.best_values))
        console.print(f"best trial {result.best_trials[0]}: {values}")
        for key, value in result.best_params.items():
            console.print(f"  {key} = {value}")
    console.print(f"report: {Path(out) / 'report.html'}")
    if (Path(out) / "best.yaml").is_file():
        console.print(f"reproduce: nnopt train --config {Path(out) / 'best.yaml'}")
    return _every_trial_failed(result)


def _every_trial_failed(result: Any) -> int:
    """0, or 2 with the first trial's reason when trials ran and every one failed: a study that trained nothing
    (a model that cannot take the data, a factory that ignores n_outputs) is not a success."""
    trials = result.trials
    if not trials or any(t["state"] != "FAIL" for t in trials):
        return 0
    reason = next((t["user_attrs"].get("fail_reason") for t in trials if t["user_attrs"].get("fail_reason")),
                  "no reason recorded")
    print(f"error: every trial failed ({len(trials)}); the first: {reason}", file=sys.stderr)
    return 2


def _cmd_search(args: argparse.Namespace) -> int:
    from nnopt.api import nas

    train = {k: getattr(args, k) for k in ("optimizer", "lr", "batch_size") if getattr(args, k) is not None}
    settings = {k: getattr(args, k) for k in ("strategy", "objectives", "target", "task", "epochs", "max_params",
                                              "max_flops", "max_size_kb", "max_latency_ms", "pruner", "trials",
                                              "timeout", "workers", "storage", "study", "seed")}
    out = args.out or f"runs/search-{slug(args.data)}-{slug(args.space)}"
    result = nas(args.data, space=args.space, train=train, out=out, **settings, **table_args(args))
    if args.json:
        print(json.dumps(result.summary()))
        return _every_trial_failed(result)
    counts = result.counts()
    console = make_console()
    rejected = sum(1 for t in result.trials if "infeasible" in t["user_attrs"])
    console.print(f"search '{result.study_name}': {counts['complete']} trained, {counts['pruned'] - rejected} "
                  f"stopped early, {rejected} rejected by the constraints before training, {counts['fail']} failed")
    run_dir = Path(out)
    table = run_dir / ("pareto.csv" if len(result.objectives) > 1 else "top.csv")
    if result.best_params is not None:
        best = next(t for t in result.trials if t["number"] == result.best_trials[0])
        values = ", ".join(f"{o['metric']}={v:.4g}" for o, v in zip(result.objectives, result.best_values))
        attrs = best["user_attrs"]
        console.print(f"best: {attrs.get('model')}  ({values}; {attrs.get('params', 0):,} params, "
                      f"{attrs.get('latency_ms', float('nan')):.3f} ms)")
        console.print(f"{'Pareto front' if len(result.objectives) > 1 else 'top architectures'}: {table}")
    console.print(f"report: {run_dir / 'report.html'}")
    if (run_dir / "best.yaml").is_file():
        console.print(f"reproduce: nnopt train --config {run_dir / 'best.yaml'}")
    return _every_trial_failed(result)


COMMANDS = {"tune": _cmd_tune, "search": _cmd_search}
