"""The `nnopt` command: parse flags -> public API -> exit code. No logic of its own.

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback; --debug shows it),
3 training diverged, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from nnopt import __version__
from nnopt.errors import NnoptError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see `{self.prog} --help`\n")
        raise SystemExit(2)


def _batch_size(text: str) -> int | str:
    if text == "full":
        return "full"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'full'; got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'full'; got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnopt", description="Make neural networks better: train, compare, tune, compress.")
    parser.add_argument("--version", action="version", version=f"nnopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    network = argparse.ArgumentParser(add_help=False)  # data and model flags of compare and lr-find
    network.add_argument("--data", required=True, help="dataset name or path (as for train)")
    network.add_argument("--target", help="target column of a CSV/parquet file")
    network.add_argument("--model", default="mlp:128,64", help="model spec (default mlp:128,64)")
    network.add_argument("--batch-size", type=_batch_size, help="N, 1 or full (default: the optimizer's)")
    network.add_argument("--device", default="auto", help="auto | cpu | cuda")

    train = sub.add_parser("train", parents=[common], help="train a model on a dataset", description="Train a model on a dataset.",
                           argument_default=argparse.SUPPRESS)
    train.add_argument("--data", help="built-in dataset name (see `nnopt datasets`) or a .csv/.npz/.parquet/IDX path")
    train.add_argument("--target", help="target column of a CSV/parquet file (default: the last column)")
    train.add_argument("--task", choices=["classification", "regression"], help="override task detection")
    train.add_argument("--model", help="model spec: linear | mlp:128,64[:act=tanh:dropout=0.1:bn] | cnn | pkg.mod:fn")
    train.add_argument("--optimizer", help="optimizer name (see `nnopt optimizers`); default adam")
    train.add_argument("--opt", action="append", metavar="KEY=VALUE", dest="optimizer_params",
                       help="optimizer option, e.g. --opt weight_decay=0.01 (repeatable)")
    train.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    train.add_argument("--batch-size", type=_batch_size, help="N (mini-batch), 1 (pure SGD) or full (batch GD)")
    train.add_argument("--epochs", type=int, help="epochs (default 10)")
    train.add_argument("--schedule", help="constant | step | exponential | cosine | warmup-cosine | one-cycle | "
                                          "reduce-on-plateau")
    train.add_argument("--schedule-opt", action="append", metavar="KEY=VALUE", dest="schedule_params",
                       help="schedule option, e.g. --schedule-opt gamma=0.5 (repeatable)")
    train.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs "
                                                                              "without a better val_loss")
    train.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--val-fraction", type=float, help="validation fraction (default 0.15)")
    train.add_argument("--test-fraction", type=float, help="test fraction (default 0.15)")
    train.add_argument("--scale", help="auto | standard | minmax | none (feature scaling, fitted on train)")
    train.add_argument("--device", help="auto | cpu | cuda (default auto)")
    train.add_argument("--threads", type=int, help="CPU threads per process (default: chosen for the model size)")
    train.add_argument("--nproc", type=int, help="train on N processes of this machine (default 1; under torchrun "
                                                 "use its --nproc-per-node instead)")
    train.add_argument("--strategy", help="ddp (synchronous, DistributedDataParallel; default) | hogwild "
                                          "(asynchronous, shared memory)")
    train.add_argument("--max-restarts", type=int, metavar="K", help="with --nproc: restart the processes from the "
                                                                      "checkpoint up to K times after a crash")
    train.add_argument("--out", help="run directory (default runs/train-TIMESTAMP)")
    train.add_argument("--config", help="YAML file with the same fields; flags override it")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

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

    tune = sub.add_parser("tune", parents=[common], help="tune hyperparameters with Optuna",
                          description="Search hyperparameters from a YAML spec; re-running continues the study.")
    tune.add_argument("spec", help="YAML spec: data, model template, train settings, objective, space")
    tune.add_argument("--sampler", help="grid | random | tpe | gp | cmaes | qmc | nsga2 (default tpe; nsga2 for "
                                        "several objectives)")
    tune.add_argument("--pruner", help="none | median | asha | hyperband (default asha)")
    _study_flags(tune, "trials in the study", "nnopt-tune", "runs/tune-SPECNAME")

    search = sub.add_parser("search", parents=[common], help="search network architectures (NAS)",
                            description="Search architectures of a space on a dataset, under size and latency "
                                        "constraints; re-running continues the search.")
    search.add_argument("--data", required=True, help="dataset name or path (as for train)")
    search.add_argument("--target", help="target column of a CSV/parquet file")
    search.add_argument("--task", choices=["classification", "regression"], help="override task detection")
    search.add_argument("--space", default="mlp", help="mlp | cnn | FILE.yaml (default mlp)")
    search.add_argument("--strategy", help="random | evolution | tpe | nsga2 (default tpe; nsga2 for "
                                           "several objectives)")
    search.add_argument("--objectives", help="comma-separated, e.g. val_accuracy,params (also flops, size_kb, "
                                             "latency_ms); default the task's validation score")
    search.add_argument("--max-params", type=int, metavar="N", help="no candidate with more parameters")
    search.add_argument("--max-flops", type=int, metavar="N", help="no candidate with more FLOPs per sample")
    search.add_argument("--max-size-kb", type=float, metavar="F", help="no candidate whose fp32 file is larger")
    search.add_argument("--max-latency-ms", type=float, metavar="F", help="no candidate slower at batch 1 "
                                                                           "(1 thread, median)")
    search.add_argument("--epochs", type=int, default=10, help="epochs per candidate (default 10)")
    search.add_argument("--pruner", help="none | median | asha | hyperband: stop weak candidates early "
                                         "(default none)")
    search.add_argument("--optimizer", help="optimizer for every candidate (default adam)")
    search.add_argument("--lr", type=float, help="learning rate for every candidate (default: the optimizer's)")
    search.add_argument("--batch-size", type=_batch_size, help="N or full (default: the optimizer's)")
    _study_flags(search, "candidates trained", "nnopt-search", "runs/search-DATA-SPACE")

    compress = sub.add_parser("compress", parents=[common], help="prune and quantize a trained model",
                              description="Prune and / or quantize a trained model; measure accuracy, bytes on "
                                          "disk and latency; export to ONNX.")
    compress.add_argument("model", help="a run directory (train, or tune/search best/) or an nnopt model file")
    compress.add_argument("--data", help="dataset (default: the data the run was trained on)")
    compress.add_argument("--target", help="target column of a CSV/parquet file")
    compress.add_argument("--prune", type=float, metavar="SPARSITY", help="fraction of weights to remove, in [0, 1)")
    compress.add_argument("--prune-method", default="magnitude", help="magnitude (per layer) | global | structured "
                                                                     "(removes neurons / channels) | 2:4")
    compress.add_argument("--schedule", default="oneshot", help="oneshot | gradual (Zhu & Gupta cubic, over the "
                                                                "fine-tuning epochs)")
    compress.add_argument("--finetune-epochs", type=int, help="epochs of fine-tuning after pruning (default 0; "
                                                              "5 for gradual)")
    compress.add_argument("--quantize", help="int8 | int4 | int2 (weights, per channel)")
    compress.add_argument("--scheme", default="symmetric", help="symmetric | asymmetric")
    compress.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware training epochs (LSQ)")
    compress.add_argument("--max-accuracy-drop", type=float, metavar="PTS", help="try a ladder of settings, keep "
                                                                                "the smallest within PTS points")
    compress.add_argument("--export", help="onnx: write model.onnx (and model.int8.onnx for int8) and time ONNX "
                                           "Runtime")
    compress.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the optimizer's)")
    compress.add_argument("--seed", type=int, help="data split seed (default: the training run's)")
    compress.add_argument("--out", help="run directory (default runs/compress-TIMESTAMP)")
    compress.add_argument("--json", action="store_true", help="print the summary object only")

    dashboard = sub.add_parser("dashboard", parents=[common], help="open optuna-dashboard on a study",
                               description="Serve optuna-dashboard (an optional extra) on a tune run's study.")
    dashboard.add_argument("target", help="a tune run directory or a storage URL")
    dashboard.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")

    report = sub.add_parser("report", parents=[common], help="rebuild report.html and the plots of a run directory",
                            description="Rebuild report.html and the plots from a run directory's files alone.")
    report.add_argument("run_dir", help="the --out directory of a train, compare, lr-find, tune, search or "
                                        "compress run")

    datasets = sub.add_parser("datasets", parents=[common], help="list the built-in datasets")
    datasets.add_argument("--json", action="store_true", help="print JSON")
    optimizers = sub.add_parser("optimizers", parents=[common], help="list the optimizers and their update rules")
    optimizers.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _study_flags(parser: argparse.ArgumentParser, counted: str, study: str, out: str) -> None:
    """The flags tune and search share: budget, workers, storage, study name, seed, run directory."""
    parser.add_argument("--trials", type=int, help=f"{counted} in all (default 20)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--workers", type=int, help="processes on this machine (default 1)")
    parser.add_argument("--storage", help="database URL shared by many processes/machines "
                                          "(default: a journal file in the run directory)")
    parser.add_argument("--study", help=f"study name (default {study})")
    parser.add_argument("--seed", type=int, help="sampler seed: a sequential run is then reproducible")
    parser.add_argument("--out", help=f"run directory (default {out}, so a re-run continues)")
    parser.add_argument("--json", action="store_true", help="print the summary object only")


def _default_out(command: str) -> str:
    """runs/COMMAND-TIMESTAMP, with -2, -3, ... when runs start within the same second."""
    base = f"runs/{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while Path(candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _cmd_train(args: argparse.Namespace) -> int:
    from nnopt.api import run_spec
    from nnopt.config import TrainSpec, load_yaml, parse_override, spec_from_mapping
    from nnopt.train import ProgressBar, resume_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "config", "resume", "json")}
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
    values.setdefault("out", _default_out("train"))
    spec = spec_from_mapping(TrainSpec, values, source=getattr(args, "config", None) or "flags")
    as_json = getattr(args, "json", False)
    result = run_spec(spec, callbacks=[ProgressBar(enabled=None if not as_json else False)], resume=resume)
    if result.rank != 0:  # a torchrun rank other than 0: rank 0 reports
        return 0
    if as_json:
        print(json.dumps(result.summary()))
    else:
        _print_train_summary(result)
    return 0


def _print_train_summary(result: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{result.config['model']} · {result.config['optimizer']} "
                        f"(lr {result.config['lr']:g}, batch {result.config['batch_size']}) on {result.data.name}")
    names = list(result.metrics["test"] or result.metrics["val"])
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    for split in ("train", "val", "test"):
        row = result.metrics[split]
        table.add_row(split, *("-" if row.get(n) is None else f"{row[n]:.4f}" for n in names))
    console.print(table)
    early = " (stopped early)" if result.stopped_early else ""
    console.print(f"{result.epochs} epochs{early} in {result.wall_s:.1f} s · run directory: {result.run_dir}")


def _cmd_compare(args: argparse.Namespace) -> int:
    from nnopt.api import compare

    lr: Any = args.lr
    if lr is not None and lr != "auto":
        try:
            lr = float(lr)
        except ValueError:
            raise UsageError(f"--lr must be 'auto' or a number > 0; got '{lr}'") from None
    options = {k: getattr(args, k) for k in ("target", "task", "optimizers") if getattr(args, k) is not None}
    result = compare(args.data, args.model, lr=lr, lr_grid=args.lr_grid,
                     epochs=args.epochs, seeds=args.seeds, batch_size=args.batch_size,
                     target_metric=args.target_metric, workers=args.workers, device=args.device,
                     out=args.out or _default_out("compare"), **options)
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
                        f"{len(result.config['seeds'])} seeds x {result.config['epochs']} epochs")
    for column in ("#", "optimizer", "lr", f"test {short}", f"val {short}", "train loss", "to target", "steps/s",
                   "diverged"):
        table.add_column(column, justify="left" if column == "optimizer" else "right", no_wrap=True)
    for row in result.optimizers:
        mean, std = row.get(f"{primary}_mean"), row.get(f"{primary}_std")
        target = row["epochs_to_target_mean"]
        table.add_row(str(row["rank"]), row["optimizer"], f"{row['lr']:.3g} {row['lr_source']}",
                      "-" if mean is None else f"{mean:.4f}±{std:.4f}",
                      _num(row.get(f"val_{short}_mean")), _num(row.get("train_loss_mean")),
                      "-" if target is None else f"{target:.1f} ep", _num(row["steps_per_s_mean"], ".0f"),
                      f"{row['diverged']}/{row['seeds']}")
    console = _console()
    console.print(table)
    console.print(f"report: {result.run_dir / 'report.html'}")


def _console() -> Any:
    """rich's Console; off a terminal (a pipe, a file) wide enough that tables are not cut."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _num(value: Any, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from nnopt.api import find_lr

    options = {"target": args.target} if args.target else {}
    out = args.out or _default_out("lr-find")
    result = find_lr(args.model, args.data, optimizer=args.optimizer, batch_size=args.batch_size,
                     min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps, seed=args.seed, device=args.device,
                     out=out, **options)
    if args.json:
        print(json.dumps({"optimizer": result.optimizer, "suggested_lr": result.suggested, "rule": result.rule,
                          "run_dir": out}))
        return 0
    print(f"suggested lr for {result.optimizer}: {result.suggested:.3g}  ({result.rule})")
    print(f"report: {Path(out) / 'report.html'}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from nnopt.api import tune

    overrides = {k: getattr(args, k) for k in ("sampler", "pruner", "trials", "timeout", "workers", "storage",
                                               "study", "seed")}
    out = args.out or f"runs/tune-{Path(args.spec).stem}"
    result = tune(args.spec, out=out, **overrides)
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    counts = result.counts()
    console = _console()
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
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from nnopt.api import nas

    train = {k: getattr(args, k) for k in ("optimizer", "lr", "batch_size") if getattr(args, k) is not None}
    settings = {k: getattr(args, k) for k in ("strategy", "objectives", "target", "task", "epochs", "max_params",
                                              "max_flops", "max_size_kb", "max_latency_ms", "pruner", "trials",
                                              "timeout", "workers", "storage", "study", "seed")}
    out = args.out or f"runs/search-{_slug(args.data)}-{_slug(args.space)}"
    result = nas(args.data, space=args.space, train=train, out=out, **settings)
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    counts = result.counts()
    console = _console()
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
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from nnopt.api import compress_model

    out = args.out or _default_out("compress")
    result = compress_model(args.model, args.data, prune=args.prune, prune_method=args.prune_method,
                      schedule=args.schedule, finetune_epochs=args.finetune_epochs, quantize=args.quantize,
                      scheme=args.scheme, qat_epochs=args.qat_epochs, max_accuracy_drop=args.max_accuracy_drop,
                      export=args.export, lr=args.lr, target=args.target, seed=args.seed, out=out)
    if args.json:
        print(json.dumps(result.summary(), default=str))
        return 0
    metric = result.metric
    rows = [{"variant": r["name"], f"val {metric}": f"{r['val']:.4f}", f"test {metric}": f"{r['test']:.4f}",
             "bytes": f"{r['file_bytes']:,}", "vs fp32": f"{r.get('ratio', 1.0):.1f}x",
             "kept": "yes" if r.get("chosen") else ""} for r in result.rows]
    _print_table("Compression", rows, list(rows[0]))
    if result.latency:
        lat = [{"model": r["model"], "runtime": r["runtime"], "batch": r["batch"],
                "latency ms": f"{r['latency_ms']:.4f}", "speedup": f"{r['speedup']:.2f}x",
                "agreement": "" if r.get("agreement") is None else f"{100 * r['agreement']:.2f} %"}
               for r in result.latency]
        _print_table("CPU latency (1 thread, median)", lat, list(lat[0]))
    console = _console()
    console.print(f"compressed model: {Path(out) / 'compressed.nnz'}")
    console.print(f"report: {Path(out) / 'report.html'}")
    return 0


def _slug(text: str) -> str:
    """A name for a default run directory: the stem of a path, or the name itself."""
    stem = Path(str(text)).stem if ("/" in str(text) or "." in str(text)) else str(text)
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem) or "data"


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise UsageError("optuna-dashboard is not installed; pip install optuna-dashboard")
    from optuna_dashboard import run_server

    from nnopt.search import storage_for

    storage = storage_for(args.target)
    print(f"serving the study on 127.0.0.1:{args.port} (Ctrl-C to stop)")
    run_server(storage, host="127.0.0.1", port=args.port)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from nnopt.report import build_report

    print(build_report(args.run_dir))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from nnopt.data import list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows))
        return 0
    _print_table("Built-in datasets (or --data PATH: .csv, .npz, .parquet, IDX directory)", rows,
                 ["name", "task", "n_samples", "n_features", "n_classes", "summary"])
    return 0


def _cmd_optimizers(args: argparse.Namespace) -> int:
    from nnopt.optim import optimizer_table

    rows = optimizer_table()
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    _print_table("Optimizers (--optimizer NAME, --lr to override the default)", rows,
                 ["name", "default_lr", "summary", "rule"])
    return 0


def _print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    _console().print(table)


COMMANDS = {"train": _cmd_train, "compare": _cmd_compare, "lr-find": _cmd_lr_find, "tune": _cmd_tune,
            "search": _cmd_search, "compress": _cmd_compress,
            "dashboard": _cmd_dashboard, "report": _cmd_report,
            "datasets": _cmd_datasets, "optimizers": _cmd_optimizers}



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a flag error already printed on one line
        return int(exc.code or 0)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except NnoptError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        hint = {"train": "; the last finished epoch is checkpointed: re-run with --out DIR --resume",
                "tune": "; finished trials are kept: re-run the same command to continue the study",
                "search": "; finished candidates are kept: re-run the same command to continue the search"}
        sys.stderr.write(f"interrupted{hint.get(args.command, '')}\n")
        return 130
