"""predict(): one prediction per input row, in input order — class names as training saw them (the strings of
a CSV's label column come back as written), or values in the target's own units; optionally probabilities."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnopt.errors import UsageError, param, require_path
from nnopt.fileio import atomic_write_text
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

    def __len__(self) -> int:
        return len(self.predictions)

    def table(self) -> list[list[Any]]:
        """The CSV's rows (no header)."""
        values = self.predictions.reshape(len(self.predictions), -1)
        rows = [[_cell(v) for v in row] for row in values]
        if self.probabilities is not None:
            for row, p in zip(rows, self.probabilities):
                row.extend(f"{v:.6g}" for v in p)
        return rows

    def summary(self) -> dict[str, Any]:
        return {"rows": len(self), "task": self.task, "columns": self.columns, "model": self.model,
                "out": str(self.path) if self.path else None}


def predict(model: Any, data: Any, *, proba: bool = False, out: str | Path | None = None,
            target: str | None = None) -> Predictions:
    """Predict every row of `data` (a path, a dataset name, an (X, y) tuple or an X array) with `model`.

    A table's label column (`target`, default the training target) is ignored when present. proba adds one
    probability column per class. out: write the predictions as CSV there.
    """
    if out is not None:
        require_path("out", out, "a file path for the CSV")
    predictor = load_predictor(model)
    task = predictor.task
    if proba and task != "classification":
        raise UsageError(f"{param('proba', True)} applies to classifiers; this model predicts numbers (regression)")
    rows = predictor.rows(data, target=target, labels=False)
    predicted, probabilities = predictor.decode(predictor.outputs(predictor.inputs(rows.X)))
    if task == "classification":
        values, columns = predictor.label_names(predicted), ["prediction"]
        if proba:
            columns += [f"proba_{name}" for name in predictor.class_names]
    else:
        values = np.asarray(predicted, dtype=np.float64)
        columns = ["prediction"] if values.ndim == 1 else [f"prediction_{i}" for i in range(values.shape[1])]
    result = Predictions(predictions=values, probabilities=probabilities if proba else None, columns=columns,
                         task=task, class_names=predictor.class_names if task == "classification" else None,
                         model=predictor.description)
    if out is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(result.table())
        try:
            result.path = atomic_write_text(out, buffer.getvalue())
        except OSError as exc:
            raise UsageError(f"cannot write predictions to {out} ({exc.strerror or exc}); choose another "
                             f"{param('out')}") from None
    return result


def _cell(value: Any) -> Any:
    # repr of a float is the shortest text that reads back as the same number
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value
