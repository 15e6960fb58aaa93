"""dashboard, report, datasets, optimizers: the small commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nnopt.cli._common import print_table
from nnopt.errors import UsageError


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
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
    print_table("Built-in datasets (or --data PATH: .csv, .npz, .parquet, IDX directory)", rows,
                 ["name", "task", "n_samples", "n_features", "n_classes", "summary"])
    return 0


def _cmd_optimizers(args: argparse.Namespace) -> int:
    from nnopt.optim import optimizer_table

    rows = optimizer_table()
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    print_table("Optimizers (--optimizer NAME, --lr to override the default)", rows,
                 ["name", "default_lr", "summary", "rule"])
    return 0


COMMANDS = {"dashboard": _cmd_dashboard, "report": _cmd_report, "datasets": _cmd_datasets, "optimizers": _cmd_optimizers}
