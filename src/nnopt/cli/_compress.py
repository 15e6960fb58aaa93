"""compress: prune and quantize a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nnopt.cli._common import default_out, make_console, num, print_table, table_args, table_flags


def add_parsers(sub: Any, common: argparse.ArgumentParser, network: argparse.ArgumentParser) -> None:
    compress = sub.add_parser("compress", parents=[common], help="prune and quantize a trained model",
                              description="Prune and / or quantize a trained model; measure accuracy, bytes on "
                                          "disk and latency; export to ONNX.")
    compress.add_argument("model", help="a run directory (train, or tune/search best/) or an nnopt model file")
    compress.add_argument("--data", help="dataset (default: the data the run was trained on)")
    compress.add_argument("--target", help="target column of a CSV/parquet file")
    table_flags(compress)
    compress.add_argument("--prune", type=float, metavar="SPARSITY", help="fraction of weights to remove, in [0, 1)")
    compress.add_argument("--prune-method", default="magnitude", help="magnitude (per layer) | global | structured "
                                                                     "(removes neurons / channels) | 2:4")
    compress.add_argument("--schedule", default="oneshot", help="oneshot | gradual (Zhu & Gupta cubic, over the "
                                                                "fine-tuning epochs)")
    compress.add_argument("--finetune-epochs", type=int, help="epochs of fine-tuning after pruning (default: "
                                                              "about 400 steps, 3-20 epochs; 0 for none)")
    compress.add_argument("--quantize", help="int8 | int4 | int2 (weights, per channel)")
    compress.add_argument("--scheme", default="symmetric", help="symmetric | asymmetric")
    compress.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware training epochs (LSQ)")
    compress.add_argument("--max-accuracy-drop", type=float, metavar="PTS", help="try a ladder of settings, keep "
                                                                                "the smallest within PTS points")
    compress.add_argument("--export", help="onnx: write model.onnx (and model.int8.onnx for int8) and time ONNX "
                                           "Runtime")
    compress.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the optimizer's)")
    compress.add_argument("--lr-schedule", help="lr schedule of fine-tuning and QAT, as train --schedule takes "
                                                "(default: the lr for 2/3 of the epochs, lr/10 for the last third)")
    compress.add_argument("--seed", type=int, help="data split seed (default: the training run's)")
    compress.add_argument("--out", help="run directory (default runs/compress-TIMESTAMP)")
    compress.add_argument("--json", action="store_true", help="print the summary object only")


def _cmd_compress(args: argparse.Namespace) -> int:
    from nnopt.api import compress_model

    out = args.out or default_out("compress")
    result = compress_model(args.model, args.data, prune=args.prune, prune_method=args.prune_method,
                      schedule=args.schedule, finetune_epochs=args.finetune_epochs, quantize=args.quantize,
                      scheme=args.scheme, qat_epochs=args.qat_epochs, max_accuracy_drop=args.max_accuracy_drop,
                      export=args.export, lr=args.lr, lr_schedule=args.lr_schedule, target=args.target,
                      seed=args.seed, out=out,
                      **table_args(args))
    if args.json:
        print(json.dumps(result.summary(), default=str))
        return 0
    metric = result.metric
    rows = [{"variant": r["name"], f"val {metric}": num(r["val"]), f"test {metric}": num(r["test"]),
             "bytes": f"{r['file_bytes']:,}", "vs fp32": f"{r.get('ratio', 1.0):.1f}x",
             "kept": "yes" if r.get("chosen") else ""} for r in result.rows]
    print_table("Compression", rows, list(rows[0]))
    if result.latency:
        lat = [{"model": r["model"], "runtime": r["runtime"], "batch": r["batch"],
                "latency ms": f"{r['latency_ms']:.4f}", "speedup": f"{r['speedup']:.2f}x",
                "agreement": "" if r.get("agreement") is None else f"{100 * r['agreement']:.2f} %"}
               for r in result.latency]
        print_table("CPU latency (1 thread, median)", lat, list(lat[0]))
    console = make_console()
    console.print(f"compressed model: {Path(out) / 'compressed.nnz'}")
    console.print(f"report: {Path(out) / 'report.html'}")
    return 0


COMMANDS = {"compress": _cmd_compress}
