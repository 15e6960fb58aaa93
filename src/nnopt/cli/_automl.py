"""automl: the whole optimization under one wall-clock budget."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nnopt.cli._common import constraint_flags, data_flags, make_console, table_args


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    automl = sub.add_parser("automl", parents=[common], help="optimize a network end to end under a time budget",
                            description="Screen optimizers, search architecture and hyperparameters jointly, retrain "
                                        "the kept configuration on train+val, compress it within an accuracy drop, export it to "
                                        "ONNX and test it once, all within --budget. Re-running the same command "
                                        "continues an interrupted run.")
    data_flags(automl)
    automl.add_argument("--budget", default="10m", help="wall-clock budget: 90s, 5m, 1h, 2m30s (default 10m)")
    automl.add_argument("--objective", help="validation metric to maximize (default val_accuracy; val_r2 for "
                                            "regression)")
    automl.add_argument("--space", default="auto", help="auto | mlp | cnn (default auto: cnn for images of 16x16 "
                                                        "and more and signals of 32 steps and more); with --model, "
                                                        "a YAML file of its template's parameter ranges")
    automl.add_argument("--model", help="your own network to search instead: a factory or class with "
                                        "placeholders, e.g. mynets:make_net:width={width} (ranges in --space)")
    constraint_flags(automl, "network")
    automl.add_argument("--max-accuracy-drop", type=float, metavar="PTS", help="points of validation accuracy the "
                                                                               "compression may cost (default 1)")
    automl.add_argument("--workers", type=int, default=1, help="search processes on this machine (default 1)")
    automl.add_argument("--storage", help="database URL for the search study (default: a journal file)")
    automl.add_argument("--study", help="study name (default nnopt-automl)")
    automl.add_argument("--test-fraction", type=float, metavar="F",
                        help="rows held out for the test stage (default 0.15); 0 when you keep your own test file: "
                             "the final model trains on every row")
    automl.add_argument("--seed", type=int, default=0, help="data split and sampler seed (default 0)")
    automl.add_argument("--out", help="run directory (default runs/automl-DATA, so a re-run continues)")
    automl.add_argument("--json", action="store_true", help="print the summary object only")


def _cmd_automl(args: argparse.Namespace) -> int:
    from nnopt.api import automl

    console = make_console()
    console.highlighter = None  # model specs like "mlp:128,64:act=relu" are not numbers and addresses to colour
    terminal = sys.stdout.isatty()

    def progress(stage: str, text: str) -> None:
        # on a terminal the lines go to the console with the summary (not with --json); logged or piped, they go
        # to stderr as plain lines, each as its stage starts and ends, so a log shows where the budget went
        if not terminal:
            print(text, file=sys.stderr, flush=True)
        elif not args.json:
            console.print(text)

    result = automl(args.data, out=args.out, budget=args.budget, target=args.target, task=args.task,
                    **table_args(args),
                    objective=args.objective, space=args.space, model=args.model,
                    max_params=args.max_params,
                    max_flops=args.max_flops, max_size_kb=args.max_size_kb, max_latency_ms=args.max_latency_ms,
                    max_accuracy_drop=args.max_accuracy_drop, workers=args.workers, storage=args.storage,
                    study=args.study, seed=args.seed, progress=progress,
                    **({} if args.test_fraction is None else {"test_fraction": args.test_fraction}))
    summary = result.summary
    if result.note:  # a finished run directory: nothing ran
        print(f"note: {result.note}", file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(json.dumps(summary))
        return 0
    metric = summary["metric"]
    if summary.get("no_test"):  # test_fraction 0: no test rows, no test score
        console.print(f"{summary['model']} ({summary['compression']}): {summary['compressed_bytes']:,} bytes vs "
                      f"{summary['fp32_bytes']:,} fp32; trained on every row of the data")
        console.print(summary["no_test"])
    else:
        console.print(f"{summary['model']}: test {metric} {summary['test']:.4f} (fp32), "
                      f"{summary['compressed_test']:.4f} ({summary['compression']}); "
                      f"{summary['compressed_bytes']:,} bytes vs {summary['fp32_bytes']:,} fp32")
    for name, check in summary["constraints"].items():
        console.print(f"{name.replace('_', '-')} {check['limit']:g}: {check['value']:.4g} "
                      f"{'ok' if check['ok'] else 'NOT MET'}")
    console.print(f"{summary['spent_s']:.0f} s of a {summary['budget_s']:.0f} s budget · "
                  f"model: {result.run_dir / 'model.onnx'}")
    console.print(f"report: {result.run_dir / 'report.html'}")
    return 0


COMMANDS = {"automl": _cmd_automl}
