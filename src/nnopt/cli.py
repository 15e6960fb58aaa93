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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser("train", help="train a model on a dataset", description="Train a model on a dataset.",
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
    train.add_argument("--threads", type=int, help="CPU threads (default: chosen for the model size)")
    train.add_argument("--out", help="run directory (default runs/train-TIMESTAMP)")
    train.add_argument("--config", help="YAML file with the same fields; flags override it")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

    datasets = sub.add_parser("datasets", help="list the built-in datasets")
    datasets.add_argument("--json", action="store_true", help="print JSON")
    optimizers = sub.add_parser("optimizers", help="list the optimizers and their update rules")
    optimizers.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from nnopt.config import TrainSpec, load_yaml, parse_override, spec_from_mapping
    from nnopt.train import ProgressBar, run

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "config", "resume", "json")}
    for key in ("optimizer_params", "schedule_params"):
        if key in flags:
            flags[key] = dict(parse_override(item) for item in flags[key])
    values: dict[str, Any] = {}
    resume = getattr(args, "resume", False)
    if resume:
        if "out" not in flags:
            raise UsageError("--resume needs --out DIR, the run directory to continue")
        saved = Path(flags["out"]) / "config.json"
        if saved.is_file():  # the killed run's own settings, so `--out DIR --resume` is enough
            fields = TrainSpec.__dataclass_fields__
            values.update({k: v for k, v in json.loads(saved.read_text()).items() if k in fields})
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
    values.update(flags)
    values.setdefault("out", f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    spec = spec_from_mapping(TrainSpec, values, source=getattr(args, "config", None) or "flags")
    as_json = getattr(args, "json", False)
    result = run(spec, callbacks=[ProgressBar(enabled=None if not as_json else False)], resume=resume)
    if as_json:
        print(json.dumps(result.summary()))
    else:
        _print_train_summary(result)
    return 0


def _print_train_summary(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


COMMANDS = {"train": _cmd_train, "datasets": _cmd_datasets, "optimizers": _cmd_optimizers}


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
        sys.stderr.write("interrupted; the last finished epoch is checkpointed: re-run with --resume\n")
        return 130
