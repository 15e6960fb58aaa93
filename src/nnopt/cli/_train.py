"""train, compare and lr-find: one network, one or several optimizers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nnopt.cli._common import batch_size, column_size, default_out, make_console, num, print_skipped, \
    print_table_notes, table_args, table_flags
from nnopt.errors import UsageError


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    train = sub.add_parser("train", parents=[common], help="train a model on a dataset", description="Train a model on a dataset.",
                           argument_default=argparse.SUPPRESS)
    train.add_argument("--data", help="built-in dataset name (see `nnopt datasets`), a .csv/.parquet/.npz/.npy file, "
                       "X.npy,y.npy (a pair), an image folder or an IDX directory")
    train.add_argument("--target", help="target column of a CSV/parquet file (default: the last column)")
    train.add_argument("--task", choices=["classification", "regression"], help="override task detection")
    table_flags(train, suppress=True)
    train.add_argument("--model", help="model spec: linear | mlp:128,64[:act=tanh:dropout=0.1:bn] | cnn | pkg.mod:fn")
    train.add_argument("--optimizer", help="optimizer name (see `nnopt optimizers`); default adam")
    train.add_argument("--opt", action="append", metavar="KEY=VALUE", dest="optimizer_params",
                       help="optimizer option, e.g. --opt weight_decay=0.01 (repeatable)")
    train.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    train.add_argument("--batch-size", type=batch_size, help="N (mini-batch), 1 (pure SGD) or full (batch GD)")
    train.add_argument("--epochs", type=int, help="epochs (default 10; 100 for gd, whose epoch is one step)")
    train.add_argument("--schedule", help="constant | step | exponential | cosine | warmup-cosine | one-cycle | "
                                          "reduce-on-plateau")
    train.add_argument("--schedule-opt", action="append", metavar="KEY=VALUE", dest="schedule_params",
                       help="schedule option, e.g. --schedule-opt gamma=0.5 (repeatable)")
    train.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs "
                                                                              "without a better --monitor metric")
    train.add_argument("--monitor", metavar="METRIC", help="the logged metric early stopping and the kept weights "
                                                           "follow, e.g. val_f1 (default val_loss)")
    train.add_argument("--mode", choices=["min", "max"], help="whether lower or higher --monitor is better "
                                                              "(default: inferred from the metric's name)")
    train.add_argument("--augment", metavar="NAME,...", help="augment the training images of each batch: flip, crop, "
                                                             "jitter (comma-separated; never in evaluation)")
    train.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--val-fraction", type=float, help="validation fraction (default 0.15)")
    train.add_argument("--test-fraction", type=float, help="test fraction (default 0.15)")
    train.add_argument("--scale", help="auto | standard | channel | minmax | none (feature scaling, fitted on train)")
    train.add_argument("--device", help="auto | cpu | cuda (default auto)")
    train.add_argument("--threads", type=int, help="CPU threads per process (default: chosen for the model size)")
    train.add_argument("--nproc", type=int, help="train on N processes of this machine (default 1; under torchrun "
                                                 "use its --nproc-per-node instead)")
    train.add_argument("--strategy", help="ddp (synchronous, DistributedDataParallel; default) | hogwild "
                                          "(asynchronous, shared memory) | local-sgd (average every K steps)")
    train.add_argument("--sync-every", type=int, metavar="K", help="with --strategy local-sgd: optimizer steps "
                                                                   "between parameter averages (default 8)")
    train.add_argument("--max-restarts", type=int, metavar="K", help="with --nproc: restart the processes from the "
                                                                      "checkpoint up to K times after a crash")
    train.add_argument("--train-metrics", metavar="HOW", help="running (default: each epoch's train metrics from "
                                                             "the batches trained on) | exact (score the training "
                                                             "split again after every epoch)")
    train.add_argument("--out", help="run directory (default runs/train-TIMESTAMP)")
    train.add_argument("--log", action="append", metavar="NAME", help="also log the metrics to csv | tensorboard | "
                       "mlflow (repeatable or comma-separated; metrics.jsonl is always written)")
    train.add_argument("--config", help="YAML file with the same fields; flags override it")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction,
                       help="draw the epoch progress bar on stderr (rows/s, ETA), or not (default: when stderr is a "
                            "terminal and without --json)")

    compare = sub.add_parser("compare", parents=[common, network], help="compare optimizers side by side on one network",
                             description="Train one network with several optimizers, each at its own learning "
                                         "rate, over K seeds; rank them and write a report.")
    compare.add_argument("--task", choices=["classification", "regression"], help="override task detection")
    compare.add_argument("--optimizers", help="comma-separated names, each optionally NAME@LR "
                                              "(default: gd,sgd,momentum,nesterov,adagrad,rmsprop,adam)")
    lr_group = compare.add_mutually_exclusive_group()
    lr_group.add_argument("--lr", help="'auto' (LR range test per optimizer) or a number for all; "
                                       "default: each optimizer's own default")
    lr_group.add_argument("--lr-grid", help="comma-separated lrs; each optimizer takes its best on validation")
    compare.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    compare.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (default 3)")
    compare.add_argument("--target-metric", metavar="NAME=VALUE", help="e.g. val_accuracy=0.95: epochs and "
                                                                        "seconds until reached")
    compare.add_argument("--workers", type=int, default=1, help="processes to spread the runs over (default 1)")
    compare.add_argument("--out", help="run directory (default runs/compare-TIMESTAMP)")
    compare.add_argument("--json", action="store_true", help="print the results object only")

    lr_find = sub.add_parser("lr-find", parents=[common, network], help="LR range test: suggest a learning rate for an optimizer",
                             description="Train briefly while the lr grows exponentially; suggest the lr where "
                                         "the loss falls fastest.")
    lr_find.add_argument("--optimizer", default="adam", help="optimizer name (default adam)")
    lr_find.add_argument("--min-lr", type=float, default=1e-5, help="first lr (default 1e-5)")
    lr_find.add_argument("--max-lr", type=float, default=10.0, help="last lr (default 10)")
    lr_find.add_argument("--steps", type=int, default=150, help="steps (default 150)")
    lr_find.add_argument("--seed", type=int, default=0, help="random seed")
    lr_find.add_argument("--out", help="run directory (default runs/lr-find-TIMESTAMP)")
    lr_find.add_argument("--json", action="store_true", help="print JSON")


def _cmd_train(args: argparse.Namespace) -> int:
    from nnopt.api import run_spec
    from nnopt.config import TrainSpec, load_yaml, parse_override, spec_from_mapping
    from nnopt.train import resume_settings

    flags = {k: v for k, v in vars(args).items()
             if k not in ("command", "debug", "config", "resume", "json", "progress")}
    for key in ("optimizer_params", "schedule_params"):
        if key in flags:
            flags[key] = dict(parse_override(item) for item in flags[key])
    values: dict[str, Any] = {}
    resume = getattr(args, "resume", False)
    if resume:
        if "out" not in flags:
            raise UsageError("--resume needs --out DIR, the run directory to continue")
        values.update(resume_settings(Path(flags["out"])))
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
    values.update(flags)
    if values.get("max_restarts") and not values.get("out"):
        raise UsageError("--max-restarts needs --out DIR: a restart resumes from the checkpoint there")
    values.setdefault("out", default_out("train"))
    as_json = getattr(args, "json", False)
    # a display setting, not the run's: the saved one of a resumed run and a config file's give way to the terminal
    values["progress"] = getattr(args, "progress", False if as_json else "auto")
    spec = spec_from_mapping(TrainSpec, values, source=getattr(args, "config", None) or "flags")
    result = run_spec(spec, resume=resume)
    if result.rank != 0:  # a torchrun rank other than 0: rank 0 reports
        return 0
    if as_json:
        print(json.dumps(result.summary()))
    else:
        _print_train_summary(result)
    return 0


def _print_train_summary(result: Any) -> None:
    from rich.table import Table

    console = make_console()
    table = Table(title=f"{result.config['model']} · {result.config['optimizer']} "
                        f"(lr {result.config['lr']:g}, batch {result.config['batch_size']}) on {result.data.name}")
    names = list(result.metrics["test"] or result.metrics["val"])
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    sizes = {n: column_size((result.metrics[s] or {}).get(n) for s in ("train", "val", "test")) for n in names}
    for split in ("train", "val", "test"):
        row = result.metrics[split] or {}
        table.add_row(split, *(num(row.get(n), size=sizes[n]) for n in names))
    console.print(table)
    early = " (stopped early)" if result.stopped_early else ""
    console.print(f"{result.epochs} epoch{'s' * (result.epochs != 1)}{early} in {result.wall_s:.1f} s · run "
                  f"directory: {result.run_dir}")
    column = result.data.preprocessing.get("target")
    if result.config.get("target") is None and column:  # a table's last column, taken by default
        console.print(f"target: {column} ({result.data.task}), the table's last column; --target names another")
    names = result.data.class_names or []
    if result.config.get("task") is None and len(names) > 2 and all(n.lstrip("-").isdigit() for n in names):
        console.print(f"task: classification, {len(names)} classes from the target's integer values; "
                      "--task regression reads them as numbers")
    print_table_notes(console, result.config.get("data_info") or {})
    print_skipped(console, result.data.images)


def _cmd_compare(args: argparse.Namespace) -> int:
    from nnopt.api import compare

    lr: Any = args.lr
    if lr is not None and lr != "auto":
        try:
            lr = float(lr)
        except ValueError:
            raise UsageError(f"--lr must be 'auto' or a number > 0; got '{lr}'") from None
    options = {k: getattr(args, k) for k in ("target", "task", "optimizers") if getattr(args, k) is not None}
    options.update(table_args(args))
    result = compare(args.data, args.model, lr=lr, lr_grid=args.lr_grid,
                     epochs=args.epochs, seeds=args.seeds, batch_size=args.batch_size,
                     target_metric=args.target_metric, workers=args.workers, device=args.device,
                     out=args.out or default_out("compare"), **options)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    _print_compare(result)
    return 0


def _print_compare(result: Any) -> None:
    from rich.table import Table

    primary = result.primary_metric
    short = primary.split("_", 1)[1]
    table = Table(title=f"{result.config['model']} on {result.config['data_info']['name']}: "
                        f"{len(result.config['seeds'])} seed{'s' * (len(result.config['seeds']) != 1)} x "
                        f"{result.config['epochs']} epochs")
    for column in ("#", "optimizer", "lr", f"test {short}", f"val {short}", "train loss", "to target", "steps/s",
                   "diverged"):
        table.add_column(column, justify="left" if column == "optimizer" else "right", no_wrap=True)
    for row in result.optimizers:
        mean, std = row.get(f"{primary}_mean"), row.get(f"{primary}_std")
        target = row["epochs_to_target_mean"]
        table.add_row(str(row["rank"]), row["optimizer"], f"{row['lr']:.3g} {row['lr_source']}",
                      "-" if mean is None else f"{mean:.4f}" + (f"±{std:.4f}" if row["seeds"] > 1 else ""),
                      num(row.get(f"val_{short}_mean")), num(row.get("train_loss_mean")),
                      "-" if target is None else f"{target:.1f} ep", num(row["steps_per_s_mean"], ".0f"),
                      f"{row['diverged']}/{row['seeds']}")
    console = make_console()
    console.print(table)
    for name, found in (result.lr_find or {}).items():
        if not found.get("descent", True):  # the lr finder fell back to the optimizer's default lr
            console.print(f"note: lr finder, {name}: {found['note']}", soft_wrap=True)
    console.print(f"report: {result.run_dir / 'report.html'}")


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from nnopt.api import find_lr

    options = {"target": args.target} if args.target else {}
    options.update(table_args(args))
    out = args.out or default_out("lr-find")
    result = find_lr(args.model, args.data, optimizer=args.optimizer, batch_size=args.batch_size,
                     min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps, seed=args.seed, device=args.device,
                     out=out, **options)
    if args.json:
        print(json.dumps({"optimizer": result.optimizer, "suggested_lr": result.suggested, "rule": result.rule,
                          "descent": result.descent, "measured": result.measured, "note": result.note,
                          "run_dir": out}))
        return 0
    if result.descent:
        print(f"suggested lr for {result.optimizer}: {result.suggested:.3g}  ({result.rule})")
    else:
        print(f"suggested lr for {result.optimizer}: {result.suggested:.3g}  (its default)")
    if result.note:
        print(f"note: {result.note}")
    print(f"report: {Path(out) / 'report.html'}")
    return 0


COMMANDS = {"train": _cmd_train, "compare": _cmd_compare, "lr-find": _cmd_lr_find}
