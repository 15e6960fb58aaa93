"""evaluate, predict, export: use a model nnopt produced, without writing code."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nnopt.cli._common import default_out, make_console, num, print_skipped, print_table

MODEL_HELP = ("a run directory (train; tune / search or their best/; compare; compress; automl) or a model file "
              "(model.pt, compressed.nnz)")


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    evaluate = sub.add_parser("evaluate", parents=[common], help="score a trained model on labelled data",
                              description="Score a trained model on labelled data: the metrics `nnopt train` "
                                          "reports, and a confusion matrix (classification) or residual plot "
                                          "(regression).")
    evaluate.add_argument("model", metavar="MODEL_OR_RUN_DIR", help=MODEL_HELP)
    evaluate.add_argument("--data", help="dataset name or path (as for train; default: the data it was trained on)")
    evaluate.add_argument("--target", help="label column of a CSV/parquet file (default: the training target)")
    evaluate.add_argument("--split", help="all (every row given; default, or val with --importance and no --data) | "
                                          "test | val | train: the training run's split (same seed and fractions)")
    evaluate.add_argument("--out", help="directory for metrics.json and the plot (default runs/evaluate-TIMESTAMP)")
    evaluate.add_argument("--importance", action="store_true",
                          help="each input column's permutation importance (drop in accuracy / R2 when its values "
                               "are shuffled; a one-hot group as one) on the rows evaluated: with a run directory "
                               "and no --data, the validation rows unless --split says otherwise; writes "
                               "importance.json")
    evaluate.add_argument("--repeats", type=int, metavar="K",
                          help="permutations per column for --importance (default 5): mean and std over them")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

    predict = sub.add_parser("predict", parents=[common], help="predict every row of a data file",
                             description="Predict every row of a data file, in input order: class names as in "
                                         "the training labels, or values in the target's units.")
    predict.add_argument("model", metavar="MODEL_OR_RUN_DIR", help=MODEL_HELP)
    predict.add_argument("--data", required=True, nargs="+", metavar="PATH", help="dataset name or path (.csv, "
                         ".parquet, .npz, IDX directory), or for an image model a folder of images or image files")
    predict.add_argument("--target", help="a label column to ignore (default: the training target, if present)")
    predict.add_argument("--out", default="predictions.csv",
                         help="CSV to write (Parquet for a .parquet name), - for standard output "
                         "(default predictions.csv)")
    predict.add_argument("--proba", action="store_true", help="add a probability column per class")
    predict.add_argument("--keep", metavar="COL,...", help="input columns to copy into the CSV, to join rows back "
                         "(default: the ID columns training left out, when present; '' for none)")
    predict.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

    export = sub.add_parser("export", parents=[common], help="export a model to ONNX or TorchScript",
                            description="Write the model, with its feature scaling built in, as one ONNX or "
                                        "TorchScript file that takes raw feature rows; check it against nnopt.")
    export.add_argument("model", metavar="MODEL_OR_RUN_DIR", help=MODEL_HELP)
    export.add_argument("--format", required=True, help="onnx | torchscript")
    export.add_argument("--out", help="file to write (default model.onnx / model.torchscript.pt)")
    export.add_argument("--json", action="store_true", help="print one JSON object and nothing else")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from nnopt.errors import UsageError, param, unknown_name
    from nnopt.inference import SPLITS, evaluate
    from nnopt.train import IMPORTANCE_REPEATS

    if args.split is not None and args.split not in SPLITS:  # before a run directory is made
        raise unknown_name("split", args.split, SPLITS)
    if args.repeats is not None and not args.importance:
        raise UsageError(f"{param('repeats')} sets the permutations of {param('importance')}; add "
                         f"{param('importance')}")
    result = evaluate(args.model, args.data, target=args.target, split=args.split,
                      out=args.out or default_out("evaluate"), importance=args.importance,
                      repeats=IMPORTANCE_REPEATS if args.repeats is None else args.repeats)
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    console = make_console()
    console.print(f"{result.rows} {'' if result.split == 'all' else result.split + ' '}rows of {result.data}; "
                  f"model: {result.model}")
    print_table("", [{"metric": name, "value": num(value)} for name, value in result.metrics.items()],
                ["metric", "value"])
    _print_notes(console, result)
    # the files that did not decode belong to no split: counted against every file read, as training counts them
    files = (result.read or result.rows) + len(result.skipped)
    print_skipped(console, {"skipped": len(result.skipped), "files": files, "skipped_files": result.skipped})
    if result.importance:
        console.print(f"Permutation importance: the drop in {result.importance[0]['metric']} when a column's values "
                      f"are shuffled (mean ± std over {args.repeats or IMPORTANCE_REPEATS} permutations)")
        print_table("",
                    [{"column": e["column"], "importance": f"{num(e['importance_mean'])} ± {num(e['importance_std'])}"}
                     for e in result.importance], ["column", "importance"])
    for path in result.files:
        console.print(f"wrote {path}")
    return 0


def _print_notes(console, result) -> None:
    """What a table's rows held that the model had to treat: unseen categories, missing cells, unused columns."""
    if result.unseen:
        listing = ", ".join(f"{column} {count}" for column, count in result.unseen.items())
        console.print(f"rows with a category training never saw (encoded as other/unknown): {listing}")
    if result.missing:
        listing = ", ".join(f"{column} {count}" for column, count in result.missing.items())
        console.print(f"missing cells, filled as in training: {listing}")
    if getattr(result, "unlabelled", 0):
        console.print(f"{result.unlabelled} rows without a label left out")
    if result.ignored_columns:
        console.print(f"columns the model does not read: {', '.join(result.ignored_columns)}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from nnopt.inference import predict

    data = args.data[0] if len(args.data) == 1 else args.data
    to_stdout = args.out == "-"  # the CSV on standard output, what nnopt says about it on standard error
    result = predict(args.model, data, proba=args.proba, out=None if to_stdout else args.out, target=args.target,
                     keep=args.keep)
    if to_stdout:
        result.write_csv(sys.stdout)
        sys.stdout.flush()
    if args.json:
        print(json.dumps(result.summary()), file=sys.stderr if to_stdout else sys.stdout)
        return 0
    console = make_console(stderr=to_stdout)
    console.print(f"{len(result)} predictions ({', '.join(result.columns)}) -> "
                  f"{'standard output' if to_stdout else result.path}")
    console.print(f"model: {result.model}")
    _print_notes(console, result)
    print_skipped(console, {"skipped": len(result.skipped), "files": len(result) + len(result.skipped),
                            "skipped_files": result.skipped})
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from nnopt.inference import export

    result = export(args.model, args.format, args.out)
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    check = (f"{100 * result.agreement:.2f} % same class" if result.agreement is not None
             else f"max |difference| {result.max_abs_diff:.3g} in target units")
    console = make_console()
    console.print(f"wrote {result.path} ({result.format}); against nnopt on {result.rows_checked} sampled rows: "
                  f"{check}")
    return 0


COMMANDS = {"evaluate": _cmd_evaluate, "predict": _cmd_predict, "export": _cmd_export}
