"""Helpers of the inference tests: the CLI in-process, and an iris CSV with the species as text."""

import contextlib
import csv
import io

from sklearn.datasets import load_iris

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def cli(*args):
    """`nnopt ARGS` in-process, for session fixtures (run_cli needs a test's capsys): (code, stdout, stderr)."""
    from nnopt.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def write_iris(path, columns=COLUMNS, rows=None):
    bunch = load_iris()
    table = rows if rows is not None else [
        dict(zip(COLUMNS, [*map(float, x), str(bunch.target_names[y])])) for x, y in zip(bunch.data, bunch.target)]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[row[c] for c in columns] for row in table])
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
