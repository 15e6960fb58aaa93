"""predict(): one prediction per input row, in input order — class names as training saw them (the strings of
a CSV's label column come back as written), or values in the target's own units; optionally probabilities."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnopt.errors import DataError, UsageError, keywords_checked, param, require_path
from nnopt.fileio import atomic_write, atomic_write_text
from nnopt.inference._predictor import load_predictor


@dataclass
class Predictions:
    predictions: np.ndarray  # class names (object array) or values in target units (float64)
    probabilities: np.ndarray | None  # (n, n_classes), columns in class_names order; None unless asked for
    columns: list[str]  # the CSV header
    task: str
    class_names: list[str] | None
    model: str
    path: Path | None = None
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # input columns copied in front of the predictions
    unseen: dict[str, int] = field(default_factory=dict)  # column -> rows with a category training never saw
    missing: dict[str, int] = field(default_factory=dict)  # column -> missing cells, imputed
    ignored_columns: list[str] = field(default_factory=list)  # columns the model does not read
    skipped: list[str] = field(default_factory=list)  # image files that did not decode ("path: reason")

    def __len__(self) -> int:
        return len(self.predictions)

    def table(self) -> list[list[Any]]:
        """The CSV's rows (no header)."""
        values = self.predictions.reshape(len(self.predictions), -1)
        kept = list(self.kept.values())
        rows = [[_kept(column[i]) for column in kept] + [_cell(v) for v in row] for i, row in enumerate(values)]
        if self.probabilities is not None:
            for row, p in zip(rows, self.probabilities):
                row.extend(f"{v:.6g}" for v in p)
        return rows

    def write_csv(self, stream: Any) -> None:
        """The predictions as CSV (header and rows) into a text stream."""
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.table())

    def write_parquet(self, stream: Any) -> None:
        """The predictions as a Parquet table into a binary stream: the CSV's columns, numbers kept as numbers."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        values = self.predictions.reshape(len(self.predictions), -1)
        columns = [*self.kept.values(), *values.T]
        if self.probabilities is not None:
            columns += list(np.asarray(self.probabilities, dtype=np.float64).T)
        pq.write_table(pa.table({name: _arrow(column) for name, column in zip(self.columns, columns)}), stream)

    def summary(self) -> dict[str, Any]:
        return {"rows": len(self), "task": self.task, "columns": self.columns, "model": self.model,
                "out": str(self.path) if self.path else None, "unseen": self.unseen, "missing": self.missing,
                "ignored_columns": self.ignored_columns, "skipped": self.skipped}


@keywords_checked
def predict(model: Any, data: Any, *, proba: bool = False, out: str | Path | None = None,
            target: str | None = None, keep=None) -> Predictions:
    """Predict every row of `data` (a path, a dataset name, a DataFrame, an (X, y) tuple or an X array) with
    `model` (a run directory, model file, Predictor, nnopt.fit's FitResult, whose preprocessing is applied, or
    nn.Module: a module is given the rows unscaled, in the shape one sample of `data` has).

    A table's label column (`target`, default the training target) is ignored when present. proba adds one
    probability column per class. out: write the predictions there, as CSV (Parquet for a .parquet name).
    keep: columns of the input copied in front of the predictions so rows can be joined back (default: the ID
    columns training left out, when the input has them; [] for none).
    A model trained on images takes a folder of images (any layout, searched recursively), an image file or a
    list of them: one row per file, `path` first, with the class probabilities.
    """
    if out is not None:
        require_path("out", out, "a file path for the CSV")
        _require_written_format(out)
    predictor = load_predictor(model, data)
    task = predictor.task
    if proba and task != "classification":
        raise UsageError(f"{param('proba', True)} applies to classifiers; this model predicts numbers (regression)")
    rows = predictor.rows(data, target=target, labels=False)
    kept = _keep_columns(keep, rows, predictor)
    if rows.paths is not None:  # image files: which file each row is, and how sure the model is
        kept, proba = {"path": np.asarray(rows.paths, dtype=object), **kept}, task == "classification"
    predicted, probabilities = predictor.decode(predictor.outputs(predictor.inputs(rows.X)))
    if task == "classification":
        values, columns = predictor.label_names(predicted), ["prediction"]
        if proba:
            columns += [f"proba_{name}" for name in predictor.class_names]
    else:
        values = np.asarray(predicted, dtype=np.float64)
        columns = ["prediction"] if values.ndim == 1 else [f"prediction_{i}" for i in range(values.shape[1])]
    result = Predictions(predictions=values, probabilities=probabilities if proba else None,
                         columns=list(kept) + columns,
                         task=task, class_names=predictor.class_names if task == "classification" else None,
                         model=predictor.description, kept=kept, unseen=rows.unseen, missing=rows.missing,
                         ignored_columns=[c for c in rows.ignored if c not in kept], skipped=rows.skipped)
    if out is not None:
        try:
            if Path(out).suffix.lower() == ".parquet":
                result.path = atomic_write(out, result.write_parquet)
            else:
                buffer = io.StringIO()
                result.write_csv(buffer)
                result.path = atomic_write_text(out, buffer.getvalue())
        except OSError as exc:
            raise UsageError(f"cannot write predictions to {out} ({exc.strerror or exc}); choose another "
                             f"{param('out')}") from None
    return result


def _keep_columns(keep, rows, predictor) -> dict[str, np.ndarray]:
    from nnopt.data import dropped_ids

    if keep is not None and not (isinstance(keep, (list, tuple)) and all(isinstance(k, str) for k in keep)) \
            and not isinstance(keep, str):
        raise UsageError(f"{param('keep')} must be column names (a list, or one comma-separated string); got {keep!r}")
    names = [k.strip() for k in keep.split(",") if k.strip()] if isinstance(keep, str) else keep
    available = rows.columns or {}
    if names is None:  # the ID columns training set aside, where the input has them
        table = predictor.table or {}
        return {name: available[name] for name in dropped_ids(table) if name in available} if table else {}
    if names and not available:
        raise UsageError(f"{param('keep')} copies columns of a table; this input has no named columns")
    absent = [name for name in names if name not in available]
    if absent:
        raise DataError(f"{param('keep')} names '{absent[0]}', which is not a column of the input; columns: "
                        f"{', '.join(available)}")
    return {name: available[name] for name in names}


# files predict could be asked for by name that it does not write: each would hold CSV text under a wrong suffix
NOT_WRITTEN = (".json", ".jsonl", ".npy", ".npz", ".xlsx", ".xls", ".feather", ".arrow", ".pkl", ".pickle", ".h5",
               ".hdf5", ".tsv")


def _require_written_format(out: str | Path) -> None:
    suffix = Path(out).suffix.lower()
    if suffix in NOT_WRITTEN:
        raise UsageError(f"{param('out')} names a {suffix} file; predictions are written as CSV (any other name) or "
                         f"Parquet (.parquet): give e.g. {param('out', str(Path(out).with_suffix('.csv')))}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(f"writing predictions as .parquet needs pyarrow (pip install pyarrow); or give "
                             f"{param('out', str(Path(out).with_suffix('.csv')))}") from None


def _arrow(column: np.ndarray) -> Any:
    """One column for Parquet: numbers as numbers, anything else (labels, text, mixed cells) as text."""
    import pyarrow as pa

    column = np.asarray(column)
    if column.dtype.kind in "biuf":
        return pa.array(column)
    return pa.array(["" if _kept(v) == "" else str(_kept(v)) for v in column.tolist()], type=pa.string())


def _kept(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else _cell(value)
    return value


def _cell(value: Any) -> Any:
    # repr of a float is the shortest text that reads back as the same number
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value
