"""What every command module shares: the parser class, flag types, tables, default run directories."""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see `{self.prog} --help`\n")
        raise SystemExit(2)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        # argparse reports a flag no parser took from the top level (`see nnopt --help`, a list of commands);
        # the command's own parser names its flags
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._command_parser(parsed)
            flags = [f for action in command._actions for f in action.option_strings if f.startswith("--")]
            unknown = next((e.split("=", 1)[0] for e in extras if e.startswith("--")), None)
            # a stricter match than for names: flags share their leading dashes, so a 0.6 ratio pairs
            # --threads with --task
            close = difflib.get_close_matches(unknown, flags, n=1, cutoff=0.8) if unknown else []
            hint = f"; did you mean '{close[0]}'?" if close else ""
            command.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest or "", None), self)
        return self


def batch_size(text: str) -> int | str:
    if text == "full":
        return "full"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'full'; got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'full'; got {value}")
    return value


def study_flags(parser: argparse.ArgumentParser, counted: str, study: str, out: str) -> None:
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


def default_out(command: str) -> str:
    """runs/COMMAND-TIMESTAMP, with -2, -3, ... when runs start within the same second."""
    base = f"runs/{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while Path(candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def make_console(stderr: bool = False) -> Any:
    """rich's Console (on standard error with stderr=True); off a terminal (a pipe, a file) wide enough that
    tables are not cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=200)


def num(value: Any, fmt: str | None = None, size: float | None = None) -> str:
    """A metric for a table: 4 decimals, or for the large values of a regression in its target's units (an MSE of
    3.8e9 in dollars squared) thousands separators with 1 decimal up to 1e7 and 4 significant digits beyond.
    `size`: the largest |value| of the column, so that a column's cells share one format (column_size)."""
    if value is None:
        return "-"
    if fmt is not None:
        return format(value, fmt)
    size = abs(value) if size is None else size
    return format(value, ".4f" if size < 1e4 else ",.1f" if size < 1e7 else ".4e")


def column_size(values: Any) -> float | None:
    """The largest |value| of a table column's numbers (None when it has none), for num(size=)."""
    sizes = [abs(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    return max(sizes) if sizes else None


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    make_console().print(table)


def data_flags(parser: argparse.ArgumentParser) -> None:
    """--data, --target, --task, as the commands that load a dataset by name or path share them."""
    parser.add_argument("--data", required=True, help="dataset name or path (as for train)")
    parser.add_argument("--target", help="target column of a CSV/parquet file")
    parser.add_argument("--task", choices=["classification", "regression"], help="override task detection")
    table_flags(parser)


def table_flags(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """--drop, --categorical, --numeric, --sep: how a table's columns are read; --image-size, --strict: how an image
    folder is decoded (docs/data.md)."""
    extra = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--drop", metavar="COL,...", help="table columns to leave out", **extra)
    parser.add_argument("--categorical", metavar="COL,...", help="table columns to treat as categories (e.g. "
                                                                 "integer codes)", **extra)
    parser.add_argument("--numeric", metavar="COL,...", help="table columns that must be numbers", **extra)
    parser.add_argument("--sep", help="CSV field separator, e.g. ';' or tab (default: sniffed from the header)",
                        **extra)
    parser.add_argument("--image-size", metavar="N|HxW", help="image folder: resize images to N x N or H x W pixels "
                        "(default: their common size, else 32)", **extra)
    parser.add_argument("--strict", action="store_true", help="image folder: stop at the first image that does not "
                        "decode (default: skip such files and count them)", **(extra or {"default": None}))


def table_args(args: argparse.Namespace) -> dict[str, Any]:
    """The table flags given, as keyword arguments of the Python API."""
    return {key: getattr(args, key) for key in ("drop", "categorical", "numeric", "sep", "image_size", "strict")
            if getattr(args, key, None) is not None}


def print_skipped(console: Any, images: dict | None) -> None:
    """Files of an image folder that did not decode: counted, the first few named."""
    if not images or not images.get("skipped"):
        return
    shown = images.get("skipped_files") or []
    console.print(f"skipped {images['skipped']} of {images.get('files', '?')} images that do not decode "
                  f"(--strict stops at the first): {'; '.join(shown[:3])}" + (" ..." if len(shown) > 3 else ""))


_LEFT_OUT = {"id": "ID", "constant": "constant", "empty": "empty", "dropped": "--drop"}


def print_table_notes(console: Any, info: dict[str, Any]) -> None:
    """What a table's reading left out: the columns (IDs, constant and empty ones, --drop) and the rows without a
    target; config.json and report.html list every column's type and treatment."""
    columns = info.get("columns") or []
    if not columns:
        return
    left: dict[str, list[str]] = {}
    for column in columns:
        if column.get("treatment") == "dropped":
            left.setdefault(column.get("type", "dropped"), []).append(str(column.get("column")))
    read = len(columns) - sum(len(names) for names in left.values())
    line = f"columns: {read} of {len(columns)} read, as {info.get('n_features')} input features"
    if left:
        line += "; left out: " + "; ".join(
            f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''} ({_LEFT_OUT.get(kind, kind)})"
            for kind, names in left.items())
    missing = info.get("target_missing_rows")
    if missing:
        line += f"; {missing} row{'s' * (missing != 1)} without a target left out"
    console.print(line + " (config.json lists every column)")


def constraint_flags(parser: argparse.ArgumentParser, noun: str) -> None:
    """The limits on a network that search and automl share; checked before any training."""
    parser.add_argument("--max-params", type=int, metavar="N", help=f"no {noun} with more parameters")
    parser.add_argument("--max-flops", type=int, metavar="N", help=f"no {noun} with more FLOPs per sample")
    parser.add_argument("--max-size-kb", type=float, metavar="F", help=f"no {noun} whose fp32 file is larger")
    parser.add_argument("--max-latency-ms", type=float, metavar="F", help=f"no {noun} slower at batch 1 "
                                                                          "(1 thread, median)")
