"""From raw arrays to Data: validate, detect the task, encode labels, split (seeded, stratified), scale on train.

Row numbers in messages count from 1.
"""

from __future__ import annotations

import numpy as np
import torch

from nnopt.errors import DataError, UsageError, did_you_mean, param
from nnopt.data._scale import apply_features, apply_target, eight_bit_images, fit_features, fit_target, \
    resolve_scale
from nnopt.data._table import column_groups, encode, encoded_names, fit_table, plan_columns, table_options
from nnopt.data._types import Data, RawData, Split

SCALES = ("auto", "standard", "channel", "minmax", "none")


def choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise DataError(f"unknown {kind} '{value}'{did_you_mean(str(value), choices)} "
                        f"choices: {', '.join(choices)}")
    return value


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{param(name)} must be a number in [0, 1); got {value!r}")
    if not 0 <= val_fraction < 1:
        raise UsageError(f"{param('val_fraction')} must be in [0, 1); got {val_fraction}")
    if not 0 <= test_fraction < 1:
        raise UsageError(f"{param('test_fraction')} must be in [0, 1); got {test_fraction}")
    if val_fraction + test_fraction >= 1:
        raise UsageError(f"{param('val_fraction')} + {param('test_fraction')} must be < 1; got {val_fraction} + "
                         f"{test_fraction}")


def _numeric_labels(y: np.ndarray) -> np.ndarray | None:
    """y as a numeric array, or None when the labels are text."""
    if y.dtype.kind in "biuf":
        return y
    if y.dtype.kind == "O":
        try:
            return y.astype(np.float64)
        except (TypeError, ValueError):
            return None
    return None


def detect_task(y) -> str:
    """"classification" or "regression" from the labels alone.

    Text labels -> classification; non-integer numbers -> regression; integer values -> classification when there
    are at most max(2, min(50, n // 10)) distinct values, else regression.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression"
    y = y.reshape(-1)
    numeric = _numeric_labels(y)
    if numeric is None or numeric.dtype.kind == "b":
        return "classification"
    finite = numeric[np.isfinite(numeric)] if numeric.dtype.kind == "f" else numeric
    if numeric.dtype.kind == "f" and np.any(finite != np.round(finite)):
        return "regression"
    return "classification" if len(np.unique(finite)) <= max(2, min(50, len(y) // 10)) else "regression"


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged lists
        raise DataError(f"{what} cannot be made into an array ({exc}); give rows of equal length") from None


def _features(X, what: str) -> np.ndarray:
    X = _as_array(X, what)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric; got dtype {X.dtype} — encode text as numbers first")
    if X.ndim == 0:
        raise DataError(f"{what} must have one row per sample; got a scalar")
    return X.reshape(len(X), -1) if X.ndim != 2 else X


def _check_finite(X: np.ndarray, names: list[str], what: str) -> None:
    bad = ~np.isfinite(X) if X.dtype.kind == "f" else None
    if bad is None or not bad.any():
        return
    columns = np.flatnonzero(bad.any(axis=0))
    col = int(columns[0])
    count, first = int(bad[:, col].sum()), int(np.argmax(bad[:, col])) + 1
    more = f" (and {len(columns) - 1} more columns; {int(bad.sum())} values in all)" if len(columns) > 1 else ""
    raise DataError(f"{what}: column '{names[col]}' has {count} missing or non-finite (NaN/inf) values "
                    f"(first at row {first}){more}; fill them or drop those rows")


def _labels(y, n: int, what: str, target: str) -> np.ndarray:
    y = _as_array(y, what)
    if y.ndim == 0 or len(y) != n:
        raise DataError(f"X has {n} rows but {what} has {1 if y.ndim == 0 else len(y)}; they must match")
    if y.ndim > 2:
        y = y.reshape(n, -1)
    if y.ndim == 2 and y.shape[1] == 1:  # a column vector is one target
        y = y[:, 0]
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y.reshape(n, -1)).all(axis=1)
        if bad.any():
            raise DataError(f"target '{target}' has {int(bad.sum())} missing or non-finite values "
                            f"(first at row {int(np.argmax(bad)) + 1}); fill them or drop those rows")
    return y


def _class_name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def encode_labels(ys: list[np.ndarray], known_names: list[str] | None) -> tuple[list[np.ndarray], list[str]]:
    """Map labels to 0..K-1 (sorted unique values); the class names keep the original values as strings."""
    if any(y.ndim != 1 for y in ys):
        raise DataError(f"multi-column targets are only supported for regression; use {param('task', 'regression')}")
    numeric = [_numeric_labels(y) for y in ys]
    if all(y is not None for y in numeric) and numeric[0].dtype.kind != "b":
        values = np.concatenate(numeric)
        fractional = values != np.round(values)
        if fractional.any():
            raise DataError(f"labels are not class labels (found {values[np.argmax(fractional)]:g}); "
                            f"use {param('task', 'regression')}")
        ys = numeric
    else:
        ys = [y.astype(str) if y.dtype.kind != "b" else y for y in ys]
    classes, codes = np.unique(np.concatenate(ys), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"only one class ('{_class_name(classes[0])}') in the labels; classification needs at "
                        f"least 2 (or use {param('task', 'regression')})")
    names = [_class_name(c) for c in classes]
    if known_names is not None and len(known_names) == len(classes) and names == [str(k) for k in range(len(names))]:
        names = list(known_names)
    bounds = np.cumsum([0] + [len(y) for y in ys])
    return [codes[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])], names


def split_indices(n: int, fraction: float, labels: np.ndarray | None, seed: int,
                  what: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (keep, held-out) index split; stratified on ``labels`` when every class has >= 2 rows."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    n_out = max(1, int(round(fraction * n)))
    if n - n_out < 1:
        raise DataError(f"too few rows ({n}) to hold out a {what} split; add rows or lower "
                        f"{param(what + '_fraction')}")
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        k = int((counts > 0).sum())
        if counts[counts > 0].min() >= 2 and n_out >= k and n - n_out >= k:
            stratify = labels
    keep, out = train_test_split(indices, test_size=n_out, random_state=seed, stratify=stratify)
    return keep, out


def _input_shape(X: np.ndarray, given: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if given is not None:
        return tuple(int(d) for d in given)
    if X.ndim == 3:  # (n, H, W): one channel
        return (1, *map(int, X.shape[1:]))
    if X.ndim >= 4:
        return tuple(int(d) for d in X.shape[1:])
    return None


def _targets(task: str, ys: list[np.ndarray], known_names: list[str] | None):
    """Labels -> int64 codes + class names (classification), or float64 targets (regression)."""
    if task == "classification":
        return encode_labels(ys, known_names)
    for part in ys:
        if _numeric_labels(part) is None:
            raise DataError(f"labels are not numbers (found '{part.reshape(-1)[0]}'); use "
                            f"{param('task', 'classification')}")
    return [_numeric_labels(part).astype(np.float64) for part in ys], None


def _split_rows(n: int, labels: np.ndarray | None, has_test: bool, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, val, test) row indices; test is None when the source ships its own test split.

    Fractions count on the whole dataset; with a shipped test split, val_fraction counts on the train part.
    """
    if has_test:
        rest, test_idx, val_share = np.arange(n), None, val_fraction
    elif test_fraction == 0:  # no test split: every row trains or validates
        rest, test_idx, val_share = np.arange(n), np.zeros(0, dtype=np.int64), val_fraction
    else:
        rest, test_idx = split_indices(n, test_fraction, labels, seed, "test")
        val_share = val_fraction / (1.0 - test_fraction)
    if val_fraction == 0:
        return rest, np.zeros(0, dtype=np.int64), test_idx
    keep, val_pos = split_indices(len(rest), val_share, None if labels is None else labels[rest], seed, "val")
    return rest[keep], rest[val_pos], test_idx


def _prepare_table(raw: RawData, *, name: str, task: str | None, val_fraction: float, test_fraction: float,
                   seed: int, scale: str, options: dict) -> Data:
    """A table: drop rows without a target, type the columns, split, fit their treatment on train, encode."""
    columns, y = dict(raw.columns), np.asarray(raw.y)
    target_name = raw.target or "y"
    absent = np.isnan(y) if y.dtype.kind == "f" else (np.char.strip(y.astype(str)) == "") \
        if y.dtype.kind in "UO" else np.zeros(len(y), dtype=bool)
    if absent.all():
        raise DataError(f"target column '{target_name}' has no values (all {len(y)} cells are missing); name the "
                        f"column that holds the labels with {param('target')}")
    if absent.any():
        keep = ~absent
        columns = {key: np.asarray(values)[keep] for key, values in columns.items()}
        y = y[keep]
    if len(y) == 0:
        raise DataError(f"no rows in {name}; give data with at least a few rows")
    plan = plan_columns(columns, options)
    for entry in plan:
        if entry["name"] in (raw.decimal_comma or []) and entry["kind"] == "numeric":
            entry["reason"] += ", written with a decimal comma (read as the decimal point)"
        if entry["name"] in (raw.thousands or []) and entry["kind"] == "numeric":
            entry["reason"] += ", written with thousands separators (42,000 read as 42000)"
    if task is None:
        task = raw.task or detect_task(y)
    ys, class_names = _targets(task, [y], raw.class_names)
    labels = ys[0] if task == "classification" else None
    train_idx, val_idx, test_idx = _split_rows(len(y), labels, False, val_fraction, test_fraction, seed)
    table, train_codes = fit_table(columns, plan, train_idx, ys[0][train_idx], task,
                                   len(class_names) if class_names else None, seed)
    table["target_missing_rows"] = int(absent.sum())
    if raw.decimal_comma:
        table["decimal_comma"] = list(raw.decimal_comma)
    if raw.thousands:
        table["thousands"] = list(raw.thousands)
    X, _ = encode(columns, table)
    groups = column_groups(table)
    for column, codes in train_codes.items():  # out-of-fold encodings for the rows the encoder was fitted on
        X[np.ix_(train_idx, groups[column])] = codes
    names = encoded_names(table)
    encoded = RawData(X=X, y=y, source=raw.source, feature_names=names, target=target_name, task=task,
                      class_names=raw.class_names)
    return _finish(encoded, X, names, ys, class_names, task, (train_idx, val_idx, test_idx), None, name=name,
                   scale=scale, table=table)


def prepare(raw: RawData, *, name: str, task: str | None, val_fraction: float, test_fraction: float,
            seed: int, scale: str, options: dict | None = None) -> Data:
    """Validate, encode, split and scale raw arrays into a Data (statistics fitted on the train split only)."""
    if raw.columns is not None:
        return _prepare_table(raw, name=name, task=task, val_fraction=val_fraction, test_fraction=test_fraction,
                              seed=seed, scale=scale, options=options or table_options())
    if options and any(options.values()):
        key = next(k for k, v in options.items() if v)
        raise DataError(f"{param(key)} applies to tables (.csv, .parquet, a DataFrame); {name} has no named columns")
    X_in = _as_array(raw.X, "X")
    X = _features(X_in, "X")
    if len(X) == 0:
        raise DataError(f"no rows in {name}; give data with at least a few rows")
    if X.shape[1] == 0:
        raise DataError(f"no feature columns in {name}; give at least one feature")
    input_shape = _input_shape(X_in, raw.input_shape)
    pixel_max = raw.pixel_max
    # the statistics of 8-bit images are in pixel units, applied to the raw 0..255 values
    eight_bit = pixel_max is None and eight_bit_images(X_in)
    n, n_features = X.shape
    names = list(raw.feature_names) if raw.feature_names and len(raw.feature_names) == n_features else \
        [f"x{i}" for i in range(n_features)]
    target_name = raw.target or "y"
    _check_finite(X, names, "X")
    y = _labels(raw.y, n, "y", target_name)
    test = None
    if raw.test is not None:
        X_test = _features(raw.test[0], "X_test")
        if len(X_test) == 0 or X_test.shape[1] != n_features:
            raise DataError(f"the test split has shape {tuple(X_test.shape)} but train rows have {n_features} "
                            "features; they must match and the test split must not be empty")
        _check_finite(X_test, names, "X_test")
        test = (X_test, _labels(raw.test[1], len(X_test), "y_test", target_name))

    if task is None:
        task = raw.task or detect_task(y if test is None else np.concatenate([y, test[1]]))
    ys, class_names = _targets(task, [y] if test is None else [y, test[1]], raw.class_names)
    labels = ys[0] if task == "classification" else None
    split = _split_rows(n, labels, test is not None, val_fraction, test_fraction, seed)
    # channels: the input shape's C ((n, H, W) arrays are one channel). scale="auto" standardizes per channel only
    # images given as such ((n, C, H, W) arrays, 8-bit arrays, or a loader's (C, H, W) shape): float (n, A, B)
    # arrays may as well be signals, which stay standardized per feature unless scale="channel" is asked for.
    images = eight_bit or X_in.ndim >= 4 or raw.input_shape is not None and len(raw.input_shape) == 3
    channels = int(input_shape[0]) if input_shape else None
    data = _finish(raw, X, names, ys, class_names, task, split, test, name=name, scale=scale,
                   input_shape=input_shape, pixel_max=pixel_max, channels=channels, images=images)
    if raw.input_shape is None and X_in.ndim == 3:  # the array's own (C, L), for a user's module
        data.sample_shape = tuple(int(d) for d in X_in.shape[1:])
    return data


def _finish(raw: RawData, X: np.ndarray, names: list[str], ys: list[np.ndarray], class_names: list[str] | None,
            task: str, split: tuple, test: tuple | None, *, name: str, scale: str, input_shape: tuple | None = None,
            pixel_max: float | None = None, table: dict | None = None, channels: int | None = None,
            images: bool = False) -> Data:
    """Split the encoded rows, fit the scaling on train, and record everything predict needs."""
    train_idx, val_idx, test_idx = split
    n_features = X.shape[1]
    parts = {"train": (X[train_idx], ys[0][train_idx]), "val": (X[val_idx], ys[0][val_idx])}
    parts["test"] = (X[test_idx], ys[0][test_idx]) if test is None else (test[0], ys[1])

    kind = resolve_scale(scale, pixel_max, channels, images)
    x_params = fit_features(parts["train"][0], kind, pixel_max, channels=channels or 1)
    # Regression targets are standardized too (auto/standard), so optimizers work on e.g. diabetes out of the box.
    target_scale = fit_target(parts["train"][1]) if task == "regression" and scale in ("auto", "standard") else None
    splits = {}
    for key, (Xp, yp) in parts.items():
        y_tensor = torch.from_numpy(np.ascontiguousarray(yp, dtype=np.int64)) if task == "classification" \
            else torch.from_numpy(apply_target(yp, target_scale))
        splits[key] = Split(torch.from_numpy(apply_features(Xp, x_params)), y_tensor)

    preprocessing = {
        "version": 1, "task": task, "scale": scale, **x_params, "n_features": int(n_features),
        "feature_names": names, "input_shape": list(input_shape) if input_shape else None,
        "target": raw.target, "class_names": class_names,
        "y_mean": target_scale[0] if target_scale else None, "y_std": target_scale[1] if target_scale else None,
        **({"table": table} if table is not None else {}),
    }
    return Data(name=name, task=task, train=splits["train"], val=splits["val"], test=splits["test"],
                n_features=int(n_features), n_classes=len(class_names) if class_names else None,
                input_shape=input_shape, feature_names=names, class_names=class_names,
                target_scale=target_scale, preprocessing=preprocessing, source=raw.source)
