"""The `nnopt` command: parse flags -> public API -> exit code. No logic of its own.

One module per group of commands; each has `add_parsers(sub, common, network)` and a COMMANDS table.
Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback; --debug shows it),
3 training diverged, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from nnopt import __version__
from nnopt.cli import _automl, _compress, _misc, _search, _train, _use
from nnopt.cli._common import Parser, batch_size, table_flags
from nnopt.errors import NnoptError, cli_spelling

_GROUPS = (_automl, _train, _search, _compress, _use, _misc)
COMMANDS = {name: command for group in _GROUPS for name, command in group.COMMANDS.items()}
_INTERRUPTED = {"train": "; the last finished epoch is checkpointed: re-run with --out DIR --resume",
                "tune": "; finished trials are kept: re-run the same command to continue the study",
                "search": "; finished candidates are kept: re-run the same command to continue the search"}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nnopt", description="Make neural networks better: train, compare, tune, search, "
                                              "compress.")
    parser.add_argument("--version", action="version", version=f"nnopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    network = argparse.ArgumentParser(add_help=False)  # data and model flags of compare and lr-find
    network.add_argument("--data", required=True, help="dataset name or path (as for train)")
    network.add_argument("--target", help="target column of a CSV/parquet file")
    table_flags(network)
    network.add_argument("--model", default="mlp:128,64", help="model spec (default mlp:128,64)")
    network.add_argument("--batch-size", type=batch_size, help="N, 1 or full (default: the optimizer's)")
    network.add_argument("--device", default="auto", help="auto | cpu | cuda")
    for group in _GROUPS:
        group.add_parsers(sub, common, network)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # messages name parameters as flags (--lr), here and in the processes a command starts
    with cli_spelling(), _one_line_warnings(argv):
        return _main(argv)


@contextlib.contextmanager
def _one_line_warnings(argv: Sequence[str] | None) -> Iterator[None]:
    """A warning shown on the terminal as one line, `warning: MESSAGE`, as errors are `error: MESSAGE` (Python's
    own format adds the file, line and source of the call, which say nothing to a command-line user); --debug
    keeps Python's format."""
    if "--debug" in (sys.argv[1:] if argv is None else argv):
        yield
        return
    before = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: (
        f"warning: {message}\n" if category is UserWarning else f"warning ({category.__name__}): {message}\n")
    try:
        yield
    finally:
        warnings.formatwarning = before


def _main(argv: Sequence[str] | None) -> int:
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
    except BrokenPipeError:  # `nnopt ... --json | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted{_INTERRUPTED.get(args.command, '')}\n")
        return 130
