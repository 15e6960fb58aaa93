"""Predictor: a trained model plus what training recorded about its inputs (feature names, scaling) and its
outputs (task, class names, target scaling), so raw rows go in and labels or values in target units come out.

Rows are scaled with the transform fitted at training time (data.apply_preprocessing) and run through the
network in the chunks training evaluates with, so the same rows give bit-identical outputs to training's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.data import apply_preprocessing, canonical_text, encode_table, kept_columns, load_rows
from nnopt.errors import DataError, UsageError, describe, param, require_model_path
from nnopt.models import Shaped, on_flat_rows
from nnopt.train import FitResult, model_meta, scoring_chunk
from nnopt.inference._source import locate, training_settings


@dataclass
class Rows:
    """Raw rows of a source, in its order; a source's own test split comes last (`shipped_test` rows)."""

    X: np.ndarray  # (n, n_features), unscaled
    y: np.ndarray | None  # raw labels or targets; None when the source has none
    class_names: list[str] | None  # the source's names for integer labels (built-in datasets)
    shipped_test: int = 0
    # a table model's rows: X is already encoded (imputed, one-hot, ...), not yet scaled
    columns: dict[str, np.ndarray] | None = None  # every raw column as read, for --keep
    unseen: dict[str, int] = field(default_factory=dict)  # column -> rows with a category training never saw
    missing: dict[str, int] = field(default_factory=dict)  # column -> missing cells (imputed)
    unlabelled: int = 0  # rows without a label, left out (as training left them out)
    ignored: list[str] = field(default_factory=list)  # columns the model does not read
    paths: list[str] | None = None  # image files: the file of each row
    skipped: list[str] = field(default_factory=list)  # image files that did not decode
    splits: list[str] | None = None  # an image folder's given split of each row


@dataclass
class Predictor:
    model: nn.Module
    meta: dict[str, Any]
    path: Path  # the model file
    description: str
    settings: dict[str, Any] | None = None  # the training split (data, target, fractions, seed); None if unknown

    # -- what training recorded -------------------------------------------------------------------------
    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.meta.get("preprocessing") or {}

    @property
    def task(self) -> str:
        return self.meta.get("task") or self.preprocessing.get("task") or "classification"

    @property
    def n_features(self) -> int:
        return int(self.meta["in_features"])

    @property
    def n_outputs(self) -> int:
        return int(self.meta["n_outputs"])

    @property
    def feature_names(self) -> list[str] | None:
        names = self.preprocessing.get("feature_names")
        return list(names) if names and len(names) == self.n_features else None

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names") or self.preprocessing.get("class_names")
        return [str(n) for n in names] if names else [str(k) for k in range(max(2, self.n_outputs))]

    @property
    def target(self) -> str | None:
        return self.preprocessing.get("target")

    @property
    def target_scale(self) -> tuple[list[float], list[float]] | None:
        mean, std = self.preprocessing.get("y_mean"), self.preprocessing.get("y_std")
        return (mean, std) if mean is not None and std is not None else None

    # -- rows in, outputs out ---------------------------------------------------------------------------
    @property
    def table(self) -> dict | None:
        """How a table's raw columns become features (data/_table.py), when the model was trained on one."""
        return self.preprocessing.get("table")

    def rows(self, data: Any, *, target: str | None = None, labels: bool = True) -> Rows:
        """Raw rows of `data`; a table's columns are matched to the training features by name.

        labels=True reads the label column (`target`, default the training target); labels=False skips it."""
        label = target or self.target
        if self.table is not None:
            return self._table_rows(data, label, labels)
        skipped = () if labels else tuple(name for name in (target, self.target) if name)
        raw = load_rows(data, features=self.feature_names, target=label if labels else None, ignore=skipped,
                        image=self.preprocessing.get("image"), labelled=labels,
                        strict=bool((self.settings or {}).get("strict")))
        parts = [(raw.X, raw.y)] + ([raw.test] if raw.test is not None else [])
        X = np.concatenate([self._width(np.asarray(x), data) for x, _ in parts])
        names = raw.feature_names if raw.feature_names and len(raw.feature_names) == X.shape[1] else \
            (self.feature_names or [f"x{i}" for i in range(X.shape[1])])
        _check_finite(X, names)
        y = None
        if labels and all(part_y is not None for _, part_y in parts):
            y = np.concatenate([np.asarray(part_y).reshape(len(part_y), -1) if self.n_outputs > 1 and
                                self.task == "regression" else np.asarray(part_y).reshape(-1)
                                for _, part_y in parts])
        return Rows(X=X, y=y, class_names=raw.class_names, shipped_test=0 if raw.test is None else len(raw.test[0]),
                    paths=raw.paths, skipped=raw.skipped or [], splits=raw.splits)

    def _table_rows(self, data: Any, label: str | None, labels: bool) -> Rows:
        raw = load_rows(data, target=label, raw_columns=True, sep=(self.settings or {}).get("sep"))
        what = f"'{data}'" if isinstance(data, (str, Path)) else "the data"
        wanted = kept_columns(self.table)
        columns = raw.columns if raw.columns is not None else self._named(raw, what, wanted)
        y, unlabelled = raw.y if labels else None, 0
        if y is not None and raw.columns is None and raw.test is not None:
            y = np.concatenate([np.asarray(y).reshape(len(y), -1), np.asarray(raw.test[1]).reshape(len(raw.test[1]), -1)]
                               ).squeeze(1) if np.asarray(y).ndim == 1 else np.concatenate([y, raw.test[1]])
        if y is not None:
            absent = np.isnan(y) if y.dtype.kind == "f" else (y == "") if y.dtype.kind in "UO" else None
            if absent is not None and absent.any():  # training dropped such rows before splitting: so does this
                unlabelled = int(absent.sum())
                columns = {name: values[~absent] for name, values in columns.items()}
                y = y[~absent]
        X, seen = encode_table(columns, self.table, what)
        if y is not None and self.n_outputs > 1 and self.task == "regression":
            y = y.reshape(len(y), -1)
        known = {c["name"] for c in self.table["columns"]}
        return Rows(X=X, y=y, class_names=None, columns=columns, unseen=seen["unseen"], missing=seen["missing"],
                    unlabelled=unlabelled, ignored=[name for name in columns if name not in known])

    @staticmethod
    def _named(raw, what: str, wanted: list[str]) -> dict[str, np.ndarray]:
        """Columns of a source without a header: by its feature names, or by position when it has as many."""
        X = np.asarray(raw.X)
        X = X.reshape(len(X), -1) if X.ndim != 2 else X
        if raw.test is not None:
            X = np.concatenate([X, np.asarray(raw.test[0]).reshape(len(raw.test[0]), -1)])
        names = raw.feature_names if raw.feature_names and len(raw.feature_names) == X.shape[1] else None
        if names is None:
            if X.shape[1] != len(wanted):
                raise DataError(f"{what} has {X.shape[1]} features per row but the model takes {len(wanted)} "
                                f"columns ({', '.join(wanted)}); give a table with those columns")
            names = wanted
        return {name: X[:, i] for i, name in enumerate(names)}

    def inputs(self, X: np.ndarray) -> torch.Tensor:
        """Rows scaled as at training time: float32 (n, n_features)."""
        if "x_scale" not in self.preprocessing:  # a torch Dataset: nnopt scaled nothing
            return torch.from_numpy(np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32))
        return apply_preprocessing(X, self.preprocessing)

    @torch.inference_mode()
    def outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Raw network outputs (logits, or standardized values for regression)."""
        self.model.eval()
        if len(inputs) == 0:
            return torch.zeros(0, self.n_outputs)
        step = scoring_chunk(self.model, inputs.shape[1:], inputs.dtype)  # the chunks nnopt.train scores in
        return torch.cat([self.model(inputs[i:i + step]) for i in range(0, len(inputs), step)])

    def decode(self, outputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, class probabilities or None): class codes for classification, values in the
        target's own units for regression."""
        out = outputs.detach().float().cpu().numpy()
        if self.task == "regression":
            values = out.reshape(len(out), -1)
            if self.target_scale is not None:
                values = values * np.asarray(self.target_scale[1]) + np.asarray(self.target_scale[0])
            return (values[:, 0] if values.shape[1] == 1 else values), None
        if out.ndim == 1 or out.shape[1] == 1:  # one logit (BCE): the positive class when the logit is >= 0
            logit = out.reshape(-1).astype(np.float64)
            positive = 1.0 / (1.0 + np.exp(-logit))
            return (logit >= 0).astype(np.int64), np.stack([1.0 - positive, positive], axis=1)
        shifted = np.exp(out - out.max(axis=1, keepdims=True)).astype(np.float64)
        return out.argmax(axis=1), shifted / shifted.sum(axis=1, keepdims=True)

    def label_names(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.class_names, dtype=object)[codes]

    def label_codes(self, y: np.ndarray, source_names: list[str] | None) -> np.ndarray:
        """Labels as the model's class codes; a label the model never saw is a DataError."""
        names = _label_strings(np.asarray(y).reshape(-1), source_names)
        # a label matches its class however either is spelled ("TRUE" / "True", "1.0" / "1"), as categories do
        index: dict[str, int] = {}
        for k, name in enumerate(self.class_names):
            index.setdefault(name, k)
        for k, name in enumerate(self.class_names):
            index.setdefault(canonical_text(name), k)
        unique, inverse = np.unique(names, return_inverse=True)
        keys = [u if u in index else canonical_text(str(u)) for u in unique]
        absent = [i for i, key in enumerate(keys) if key not in index]
        codes = _whole_numbers(y) if len(absent) == len(keys) else None
        if codes is not None and not any(_integral(name) for name in self.class_names):
            # integers for named classes: class indices 0..K-1 (a torch Dataset's labels beside its .classes)
            bad = codes[(codes < 0) | (codes >= len(self.class_names))]
            if not len(bad):
                return codes
            raise DataError(f"the data's labels are whole numbers, read as class indices 0..{len(self.class_names) - 1} "
                            f"({', '.join(self.class_names)}); {int(bad[0])} is not one ({len(bad)} rows)")
        if absent:
            rows = int(np.isin(inverse, absent).sum())
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            raise DataError(f"the data have labels the model never saw: '{unique[absent[0]]}'{more} ({rows} rows); "
                            f"the model knows {', '.join(self.class_names)} — give data with those classes")
        return np.asarray([index[key] for key in keys], dtype=np.int64)[inverse.reshape(-1)]

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Regression targets as float64; text is a DataError."""
        try:
            return np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"the model predicts numbers but the labels are text (e.g. '{np.asarray(y).flat[0]}'); "
                            f"give the numeric target column with {param('target')}") from None

    def _width(self, X: np.ndarray, data: Any) -> np.ndarray:
        X = X.reshape(len(X), -1) if X.ndim != 2 else X
        if X.shape[1] != self.n_features:
            what = f"'{data}'" if isinstance(data, (str, Path)) else "the data"
            raise DataError(f"{what} has {X.shape[1]} features per row but the model takes {self.n_features}; "
                            "give data with the features the model was trained on")
        return X


def load_predictor(model: Any, data: Any = None, *, sample_shape: Any = None) -> Predictor:
    """A Predictor for a run directory (train, tune / search, compare, compress, automl), a model file, or an
    nn.Module.

    An nn.Module has no training record: it takes the data as given (no scaling), in the shape one sample of
    `data` has (or `sample_shape`, which wins); its outputs are counted on a probe batch. The task is
    classification for several outputs, or for one output and 0/1 labels; regression otherwise."""
    if isinstance(model, Predictor):
        return model
    if isinstance(model, FitResult):  # what nnopt.fit returned: its run directory, else its record in memory
        if model.run_dir is None:
            return fit_predictor(model)
        model = model.run_dir
    if isinstance(model, nn.Module):
        return module_predictor(model, data, sample_shape)
    require_model_path("model", model)
    network, meta, path, description = locate(model)
    return Predictor(model=on_flat_rows(network, meta), meta=meta, path=path, description=description,
                     settings=training_settings(path))


def fit_predictor(result: FitResult) -> Predictor:
    """A Predictor for a fit without a run directory: the returned network with the preprocessing its data had
    (nnopt.predict(result.model, ...) would feed the network unscaled rows)."""
    meta = model_meta(result.model, None, result.data)
    return Predictor(model=on_flat_rows(result.model.eval(), meta), meta=meta, path=Path("<FitResult>"),
                     description=f"the model nnopt.fit returned ({result.config.get('model')})")


def module_predictor(network: nn.Module, data: Any, sample_shape: Any) -> Predictor:
    """A Predictor for a module given in hand, its input shape from `sample_shape` or else from `data`."""
    raw = None
    if sample_shape is None:
        if data is None:
            raise UsageError(f"an nn.Module has no training record to say the shape of its input: give "
                             f"{param('sample_shape')}, the shape of one sample, e.g. (3, 32, 32) or (20,)")
        raw = load_rows(data)
        sample_shape = tuple(np.asarray(raw.X).shape[1:])
        if not sample_shape or 0 in sample_shape:
            raise UsageError(f"{param('data')} holds {np.asarray(raw.X).shape[0]} values, not rows of features "
                             f"(array shape {np.asarray(raw.X).shape}); give rows, an array of shape (n, features) "
                             f"or (n, C, H, W), or give {param('sample_shape')}")
    shape = _sample_shape(sample_shape)
    was = network.training
    try:
        with torch.inference_mode():
            out = network.eval()(torch.zeros(2, *shape))
    except Exception as exc:  # noqa: BLE001 - the user's module failed on this shape: say which
        network.train(was)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"the model fails on a batch of shape {(2, *shape)} ({detail}); give "
                         f"{param('sample_shape')} the shape one sample of your module takes") from None
    if not isinstance(out, torch.Tensor) or out.ndim not in (1, 2) or len(out) != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else describe(out)
        raise UsageError(f"the model returns {got} for a batch of shape {(2, *shape)}; predict and evaluate read one "
                         "tensor of shape (batch, outputs): have forward return the logits (or predictions) alone")
    n_outputs = int(out.shape[1]) if out.ndim == 2 else 1
    task = "classification" if n_outputs > 1 else "regression"
    if raw is not None and raw.y is not None and n_outputs == 1:
        labels = np.asarray(raw.y).reshape(-1)
        if labels.dtype.kind in "bUO" or (labels.dtype.kind in "iuf" and np.isin(labels, (0, 1)).all()):
            task = "classification"  # one logit for two classes
    n_features = int(np.prod(shape))
    meta = {"model_spec": None, "in_features": n_features, "n_outputs": n_outputs, "task": task,
            "sample_shape": list(shape), "class_names": None, "preprocessing": {}}
    model = network if shape == (n_features,) else Shaped(network, shape)
    name = type(network).__name__
    return Predictor(model=model, meta=meta, path=Path(f"<{name}>"), description=f"nn.Module {name}")


def _sample_shape(value: Any) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        shape = tuple(values)
    except TypeError:
        shape = None
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise UsageError(f"{param('sample_shape')} must be the shape of one sample, a tuple of integers >= 1 like "
                         f"(3, 32, 32); got {describe(value)}")
    return shape


def _label_strings(y: np.ndarray, source_names: list[str] | None) -> np.ndarray:
    """Labels as the class names training gave them: integers by their value (or the source's name for it),
    text as is."""
    if y.dtype.kind == "b":
        return y.astype(str)
    if y.dtype.kind in "iuf":
        if y.dtype.kind == "f" and np.any(y != np.round(y)):
            raise DataError(f"labels are not class labels (found {y[np.argmax(y != np.round(y))]:g}); the model is "
                            "a classifier")
        ints = y.astype(np.int64)
        if source_names and len(ints) and ints.min() >= 0 and ints.max() < len(source_names):
            return np.asarray(source_names, dtype=str)[ints]
        return ints.astype(str)
    return np.char.strip(y.astype(str))


def _check_finite(X: np.ndarray, names: list[str]) -> None:
    if X.dtype.kind != "f":
        return
    bad = ~np.isfinite(X)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        raise DataError(f"column '{names[col]}' has {int(bad[:, col].sum())} missing or non-finite values (first at "
                        f"row {int(np.argmax(bad[:, col])) + 1}); fill them or drop those rows")


def _whole_numbers(y: Any) -> np.ndarray | None:
    """Labels that are all whole numbers, as int64; else None."""
    values = np.asarray(y).reshape(-1)
    if values.dtype.kind not in "iuf" or not len(values):
        return None
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        return None
    return values.astype(np.int64)


def _integral(name: str) -> bool:
    """A class name that reads as a whole number ("3", "3.0"): integer labels would then be ambiguous."""
    try:
        return float(name) == round(float(name))
    except (TypeError, ValueError, OverflowError):
        return False
