"""Tables as users have them: each column typed (numeric, categorical, date, ID-like, constant, empty, dropped),
missing cells imputed, categories encoded — fitted on the train split with scikit-learn and stored as plain data.

The stored block (``preprocessing["table"]``) holds lists and numbers only, so a model file stays readable with
``torch.load(weights_only=True)``; ``encode`` applies it with numpy at predict time, and the ONNX export builds the
same steps into the graph. One column's rules:

- numeric: a column whose train values are skewed (|skewness| > SKEW_MAX) is read through sign(x) log(1 + |x|),
  or, skewed to the left, through the same of x - (train maximum), so the long tail is the one compressed;
  a missing cell gets the train median; a column with missing train cells also gets a 0/1 indicator.
- categorical, at most ONEHOT_MAX levels once rare ones are folded: one-hot. A level seen in fewer than
  MIN_FREQUENCY train rows folds into "(other)", and so does a level never seen in training (counted as unseen);
  without rare levels an unseen one encodes as all zeros. A missing cell is the level "(missing)".
- categorical with more levels: target encoding (scikit-learn's TargetEncoder, cross-fitted on the train rows);
  an unseen level gets the train mean of the target.
- date (data/_dates.py: a datetime column, or text in one date shape; before the ID rule, so a date in every row
  is a date): days since 1970, year, month, day, weekday (and the hour when train cells have times), each
  filled with its train median; a 0/1 indicator when train had missing dates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from nnopt.config import integer_name
from nnopt.data._dates import date_format, date_seconds, describe_date, encode_date, fit_date
from nnopt.data._values import MISSING_TOKENS, as_numbers, as_text, canonical_text, first_text
from nnopt.errors import DataError, param, spell

ONEHOT_MAX = 32  # levels (after folding rare ones) up to which a categorical column is one-hot encoded
# how a column with more levels is encoded: "target" (the default, chosen by benchmarks/table_encoding.py) or
# "frequency" (each level's share of the train rows)
HIGH_CARDINALITY = "target"
MIN_FREQUENCY = 5  # train rows a level needs to get a column of its own
MISSING_LEVEL = "(missing)"
# |skewness| of a numeric column's train values above which it is read through sign(x) log(1 + |x|): long tails
# (counts, amounts, sizes) would otherwise squeeze most rows into a sliver of the standardized range (AutoGluon's
# network takes 0.99 as its threshold for a quantile transform); benchmarks/tables.py measures it (RESULTS.md)
SKEW_MAX = 1.0
OTHER = "(other)"
ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key)$|^(id|rownames?|index)([_\s.-]|$)|^unnamed: 0$",
                     re.IGNORECASE)
CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")  # customerId, userID
TABLE_OPTIONS = ("drop", "categorical", "numeric")
DROPPED_KINDS = ("id", "constant", "empty", "dropped")


# -- column types -------------------------------------------------------------------------------------------------
def _names(option, what: str) -> list[str]:
    if option is None:
        return []
    if isinstance(option, str):
        return [name.strip() for name in option.split(",") if name.strip()]
    if integer_name(option):  # a DataFrame's integer column name, turned into text as the column names are
        return [str(option)]
    if isinstance(option, Sequence) and all(isinstance(name, str) or integer_name(name) for name in option):
        return [str(name) for name in option]
    raise DataError(f"{param(what)} must be column names (a list, or one comma-separated string); got {option!r}")


def text_cells(values: np.ndarray) -> dict[str, int] | None:
    """A text column's present cells that are not numbers -> how often each appears; None when the column holds
    no number at all (or is not text read from a file or a DataFrame)."""
    if values.dtype.kind not in "UO":
        return None
    counts: dict[str, int] = {}
    numbers = 0
    # text read from a file: each distinct cell looked at once, with its count
    cells = zip(*np.unique(values, return_counts=True)) if values.dtype.kind == "U" else ((v, 1) for v in values)
    for value, count in cells:
        if isinstance(value, (bool, np.bool_)):
            return None
        text = value.strip() if isinstance(value, str) else value
        if text is None or isinstance(text, str) and text.lower() in MISSING_TOKENS:
            continue
        try:
            float(text)
            numbers += int(count)
        except (TypeError, ValueError):
            key = str(text)
            counts[key] = counts.get(key, 0) + int(count)
    return counts if numbers else None


def _mostly_numbers(name: str, values: np.ndarray) -> str | None:
    """The note for a column that a few text tokens keep from being numeric, or None: names the tokens."""
    counts = text_cells(values)
    if not counts or len(counts) > 3:
        return None
    cells = sum(counts.values())
    if cells > len(values) / 2:
        return None
    tokens = ", ".join(f"'{token}' in {count} of {len(values)} cells"
                       for token, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"text: {tokens}, the rest numbers; to read '{name}' as numbers, empty those cells (an empty cell is "
            "missing) or replace them with numbers")


def table_options(drop=None, categorical=None, numeric=None) -> dict[str, list[str]]:
    """The user's column choices, checked for overlap; empty lists when none were given."""
    options = {"drop": _names(drop, "drop"), "categorical": _names(categorical, "categorical"),
               "numeric": _names(numeric, "numeric")}
    seen: dict[str, str] = {}
    for key, names in options.items():
        for name in names:
            if name in seen and seen[name] != key:
                raise DataError(f"column '{name}' is given to both {param(seen[name])} and {param(key)}; "
                                "name it in one of them")
            seen[name] = key
    return options


def _id_like(name: str, values: np.ndarray, numbers: np.ndarray | None) -> str | None:
    """Why the column identifies rows rather than describes them, or None."""
    n = len(values)
    if n < 2:
        return None
    if numbers is not None:
        present = numbers[~np.isnan(numbers)]
        if len(present) != n or len(np.unique(present)) != n:
            return None
        # numbers unique per row may well be a measurement: only the name makes them an ID
        return "an ID: its name and a unique value per row" if (ID_NAME.search(name) or CAMEL_ID.search(name)) else None
    text = as_text(values)
    if any(v is None for v in text) or len(set(text)) != n:
        return None
    if (ID_NAME.search(name) or CAMEL_ID.search(name)):
        return "an ID: its name and a unique value per row"
    return "an ID: unique text in every row" if n >= 20 else None


def plan_columns(columns: Mapping[str, np.ndarray], options: Mapping[str, list[str]]) -> list[dict]:
    """One entry per feature column, in order: name, kind, and for kept columns whether numbers or text.

    Typing looks at every row (it fits no statistic); what encodes a column is fitted later, on train only.
    """
    names = list(columns)
    for key in TABLE_OPTIONS:
        unknown = [name for name in options.get(key, []) if name not in columns]
        if unknown:
            from nnopt.errors import did_you_mean

            raise DataError(f"{param(key)} names '{unknown[0]}', which is not a feature column"
                            f"{did_you_mean(unknown[0], names)} columns: {', '.join(names)}")
    plan = []
    for name, values in columns.items():
        numbers = as_numbers(values)
        missing = int(np.isnan(numbers).sum()) if numbers is not None else \
            int(sum(1 for v in as_text(values) if v is None))
        entry = {"name": name, "missing_cells": missing}
        if name in options.get("drop", []):
            plan.append({**entry, "kind": "dropped", "reason": spell(f"named by {param('drop')}")})
            continue
        if missing == len(values):
            plan.append({**entry, "kind": "empty", "reason": "every cell is missing"})
            continue
        if name in options.get("numeric", []):
            if numbers is None:
                row, value = first_text(values)
                dates = date_format(values)
                if dates is not None:
                    raise DataError(f"column '{name}' is given to {param('numeric')} but holds dates ({dates[1]}); "
                                    f"leave it out of {param('numeric')}: a date column is read as days since 1970, "
                                    "year, month, day and weekday")
                counts = text_cells(values)
                cells = f"text in {sum(counts.values())} of {len(values)} cells" if counts else "text"
                raise DataError(f"column '{name}' is given to {param('numeric')} but holds {cells} (row {row + 1}: "
                                f"'{value}'); empty those cells (an empty cell is missing) or replace them with "
                                f"numbers, or drop the column from {param('numeric')}")
            plan.append({**entry, "kind": "numeric", "reason": spell(f"named by {param('numeric')}")})
            continue
        if name in options.get("categorical", []):
            plan.append({**entry, "kind": "categorical", "reason": spell(f"named by {param('categorical')}")})
            continue
        levels = {v for v in as_text(values) if v is not None} if numbers is None else None
        distinct = len(np.unique(numbers[~np.isnan(numbers)])) if levels is None else len(levels)
        if distinct == 1 and missing == 0:
            plan.append({**entry, "kind": "constant", "reason": "one value in every row"})
            continue
        dates = date_format(values) if numbers is None else None
        if dates is not None:
            plan.append({**entry, "kind": "date", "reason": dates[1], "format": dates[0]})
            continue
        why = _id_like(name, values, numbers)
        if why is not None:
            plan.append({**entry, "kind": "id", "reason": why})
            continue
        if numbers is not None and values.dtype.kind != "b":
            if np.isinf(numbers).any():
                row = int(np.argmax(np.isinf(numbers)))
                raise DataError(f"column '{name}' has {int(np.isinf(numbers).sum())} infinite values (first at row "
                                f"{row + 1}); replace them with numbers or leave the cells empty")
            plan.append({**entry, "kind": "numeric", "reason": "numbers"})
            continue
        logical = values.dtype.kind == "b" or levels is not None and levels <= {"True", "False"}
        reason = "true/false values" if logical else _mostly_numbers(name, values) or "text"
        if distinct > len(values) / 2:
            reason += f", high cardinality ({distinct} distinct values in {len(values)} rows)"
        plan.append({**entry, "kind": "categorical", "reason": reason})
    if not any(entry["kind"] in ("numeric", "categorical", "date") for entry in plan):
        listing = "; ".join(f"'{e['name']}' {e['kind']}" for e in plan)
        raise DataError(f"no usable feature column ({listing}); give at least one column that describes the rows")
    return plan


# -- fitting on the train rows ----------------------------------------------------------------------------------
def fit_table(columns: Mapping[str, np.ndarray], plan: list[dict], train: np.ndarray, y_train: np.ndarray,
              task: str, n_classes: int | None, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit every kept column's treatment on the train rows -> (table block, cross-fitted train encodings).

    The second item maps a target-encoded column to its train rows' encoding (out-of-fold, so a row's own
    target does not leak into its feature); every other row is encoded with the stored levels.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    entries, train_codes = [], {}
    numeric = [e for e in plan if e["kind"] == "numeric"]
    fills, flagged = {}, set()
    if numeric:
        block = np.stack([as_numbers(columns[e["name"]])[train] for e in numeric], axis=1)
        skews = {e["name"]: _skew(block[:, k]) for k, e in enumerate(numeric)}
        logged = [k for k, e in enumerate(numeric) if abs(skews[e["name"]]) > SKEW_MAX]
        # a long left tail is measured from the train maximum: sign(x - max) log(1 + |x - max|)
        centers = {numeric[k]["name"]: _left_center(block[:, k]) for k in logged if skews[numeric[k]["name"]] < 0}
        for k in logged:
            block[:, k] = log_scale(block[:, k], centers.get(numeric[k]["name"], 0.0))
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        imputer.fit(block)
        fills = {e["name"]: float(v) for e, v in zip(numeric, imputer.statistics_)}
        # keep_empty_features fills a column with no train value with 0; the indicator still flags it
        if imputer.indicator_ is not None:
            flagged = {numeric[i]["name"] for i in imputer.indicator_.features_}
    for entry in plan:
        name, kind = entry["name"], entry["kind"]
        if kind in DROPPED_KINDS:
            entries.append({"name": name, "kind": kind, "reason": entry["reason"]})
            continue
        if kind == "date":
            seconds = date_seconds(columns[name], entry["format"], name)[train]
            entries.append({"name": name, "kind": "date", "reason": entry["reason"], "format": entry["format"],
                            **fit_date(seconds)})
            continue
        if kind == "numeric":
            values = as_numbers(columns[name])[train]
            entries.append({"name": name, "kind": "numeric", "reason": entry["reason"], "fill": fills[name],
                            "indicator": name in flagged, "missing_train": int(np.isnan(values).sum()),
                            "log": abs(skews[name]) > SKEW_MAX, "skew": skews[name],
                            **({"center": centers[name]} if name in centers else {})})
            continue
        text = as_text(columns[name])[train]
        filled = np.array([MISSING_LEVEL if v is None else v for v in text], dtype=object).reshape(-1, 1)
        min_frequency = MIN_FREQUENCY if len(train) >= 4 * MIN_FREQUENCY else 1
        onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=min_frequency,
                               sparse_output=False).fit(filled)
        levels = [str(c) for c in onehot.categories_[0]]
        rare = [str(c) for c in (onehot.infrequent_categories_[0] if onehot.infrequent_categories_[0] is not None
                                 else [])]
        frequent = [c for c in levels if c not in set(rare)]
        common = {"name": name, "kind": "categorical", "reason": entry["reason"], "distinct": len(levels),
                  "missing_train": int(sum(1 for v in text if v is None))}
        if len(frequent) + bool(rare) <= ONEHOT_MAX:
            entries.append({**common, "encoding": "onehot", "levels": frequent, "rare": rare})
            continue
        if HIGH_CARDINALITY == "frequency":
            levels_seen, counts = np.unique(filled[:, 0].astype(str), return_counts=True)
            entries.append({**common, "encoding": "frequency", "levels": levels_seen.tolist(),
                            "values": (counts[:, None] / len(train)).tolist(), "default": [0.0],
                            "outputs": ["frequency"]})
            continue
        codes, stored = _target_encode(filled, y_train, task, n_classes, seed)
        entries.append({**common, "encoding": "target", **stored})
        train_codes[name] = codes
    return {"version": 1, "columns": entries}, train_codes


def _skew(values: np.ndarray) -> float:
    """Skewness of a column's present values (0 when fewer than 3 differ: a flag or a constant has no tail)."""
    present = values[~np.isnan(values)]
    if len(np.unique(present[:10_000])) < 3:
        return 0.0
    from scipy.stats import skew

    found = float(skew(present))
    return found if np.isfinite(found) else 0.0


def _left_center(values: np.ndarray) -> float:
    """The train maximum of a left-skewed column (0 when it has no present value)."""
    present = values[~np.isnan(values)]
    return float(present.max()) if len(present) else 0.0


def log_scale(values: np.ndarray, center: float = 0.0) -> np.ndarray:
    """sign(x - center) log(1 + |x - center|): center 0 for a right-skewed column; the train maximum for a
    left-skewed one, whose long tail then lies below it (sign(x) log(1 + |x|) would stretch that tail further
    for positive values near a ceiling: percentages, scores, years)."""
    return signed_log(values - center) if center else signed_log(values)


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): monotonic, 0 at 0, log-like on both tails; NaN stays NaN."""
    return np.sign(values) * np.log1p(np.abs(values))


def _target_encode(filled: np.ndarray, y: np.ndarray, task: str, n_classes: int | None,
                   seed: int) -> tuple[np.ndarray, dict]:
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.preprocessing import TargetEncoder

    if task == "classification":
        target_type = "binary" if n_classes == 2 else "multiclass"
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        if np.bincount(y).min() < 5:
            folds = KFold(5, shuffle=True, random_state=seed)
    else:
        target_type, folds = "continuous", KFold(5, shuffle=True, random_state=seed)
    encoder = TargetEncoder(target_type=target_type, cv=folds)
    codes = encoder.fit_transform(filled, y.reshape(len(y), -1)[:, 0] if task == "regression" else y)
    levels = [str(c) for c in encoder.categories_[0]]
    width = codes.shape[1]
    values = np.asarray(encoder.encodings_).reshape(width, len(levels)).T  # (levels, width)
    default = np.atleast_1d(np.asarray(encoder.target_mean_, dtype=np.float64)).reshape(-1)
    if len(default) != width:
        default = np.full(width, float(default[0]))
    outputs = ([str(c) for c in encoder.classes_] if target_type == "multiclass" else ["target"])
    return codes, {"levels": levels, "values": values.tolist(), "default": default.tolist(), "outputs": outputs}


# -- applying the stored block ----------------------------------------------------------------------------------
def kept_columns(table: dict) -> list[str]:
    """The raw columns the model reads, in order."""
    return [c["name"] for c in table["columns"] if c["kind"] not in DROPPED_KINDS]


def dropped_ids(table: dict) -> list[str]:
    return [c["name"] for c in table["columns"] if c["kind"] == "id"]


def encoded_names(table: dict) -> list[str]:
    """Names of the encoded feature columns, in the order ``encode`` writes them."""
    names = []
    for c in table["columns"]:
        if c["kind"] == "numeric":
            names += [c["name"]] + ([f"{c['name']} {MISSING_LEVEL}"] if c["indicator"] else [])
        elif c["kind"] == "date":
            names += [f"{c['name']}.{part}" for part in c["parts"]] + \
                ([f"{c['name']} {MISSING_LEVEL}"] if c["indicator"] else [])
        elif c["kind"] == "categorical" and c["encoding"] == "onehot":
            names += [f"{c['name']}={level}" for level in c["levels"]] + ([f"{c['name']}={OTHER}"] if c["rare"] else [])
        elif c["kind"] == "categorical":
            names += [f"{c['name']}~{out}" for out in c["outputs"]]
    return names


def column_groups(table: dict) -> dict[str, list[int]]:
    """Each kept raw column -> the positions of its encoded columns (permuted together for importance)."""
    groups, at = {}, 0
    for c in table["columns"]:
        if c["kind"] == "numeric":
            width = 1 + bool(c["indicator"])
        elif c["kind"] == "date":
            width = len(c["parts"]) + bool(c["indicator"])
        elif c["kind"] == "categorical":
            width = len(c["levels"]) + bool(c["rare"]) if c["encoding"] == "onehot" else len(c["outputs"])
        else:
            continue
        groups[c["name"]] = list(range(at, at + width))
        at += width
    return groups


def encode(columns: Mapping[str, np.ndarray], table: dict, what: str = "the data") -> tuple[np.ndarray, dict]:
    """Raw columns -> float64 (n, encoded width) with the stored treatment; plus counts of what it met:
    {"unseen": {column: rows with a level training never saw}, "missing": {column: missing cells}}."""
    missing_columns = [name for name in kept_columns(table) if name not in columns]
    if missing_columns:
        more = f" (and {len(missing_columns) - 1} more)" if len(missing_columns) > 1 else ""
        raise DataError(f"{what} has no column '{missing_columns[0]}'{more}, a feature the model was trained on; "
                        f"add it (the model reads: {', '.join(kept_columns(table))})")
    n = len(next(iter(columns.values()))) if columns else 0
    parts, unseen, missing = [], {}, {}
    for c in table["columns"]:
        name = c["name"]
        if c["kind"] in DROPPED_KINDS:
            continue
        values = np.asarray(columns[name])
        if c["kind"] == "date":
            block, missing[name] = encode_date(values, c)
            parts.append(block)
            continue
        if c["kind"] == "numeric":
            numbers = as_numbers(values)
            if numbers is None:
                row, value = first_text(values)
                raise DataError(f"column '{name}' holds text (row {row + 1}: '{value}') but the model was trained "
                                "on numbers there; fix the cell or leave it empty")
            if np.isinf(numbers).any():
                row = int(np.argmax(np.isinf(numbers)))
                raise DataError(f"column '{name}' has {int(np.isinf(numbers).sum())} infinite values (first at row "
                                f"{row + 1}); replace them with numbers or leave the cells empty")
            absent = np.isnan(numbers)
            missing[name] = int(absent.sum())
            if c.get("log"):
                numbers = log_scale(numbers, c.get("center", 0.0))
            parts.append(np.where(absent, c["fill"], numbers)[:, None])
            if c["indicator"]:
                parts.append(absent.astype(np.float64)[:, None])
            continue
        text = as_text(values)
        missing[name] = int(sum(1 for v in text if v is None))
        filled = [MISSING_LEVEL if v is None else v for v in text]
        known = {spelled(level) for level in c["levels"]} | {spelled(level) for level in c.get("rare", [])}
        unseen[name] = int(sum(1 for v in filled if v not in known and v != MISSING_LEVEL))
        if c["encoding"] == "onehot":
            width = len(c["levels"]) + bool(c["rare"])
            index = level_index(c["levels"])
            other = len(c["levels"]) if c["rare"] else -1
            at = np.array([index.get(v, other) for v in filled], dtype=np.int64)
            block = np.zeros((n, width))
            hit = at >= 0
            block[np.flatnonzero(hit), at[hit]] = 1.0
            parts.append(block)
        else:
            lookup = {level: c["values"][k] for level, k in level_index(c["levels"]).items()}
            default = c["default"]
            parts.append(np.array([lookup.get(v, default) for v in filled], dtype=np.float64).reshape(n, -1))
    X = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
    return X, {"unseen": {k: v for k, v in unseen.items() if v}, "missing": {k: v for k, v in missing.items() if v}}


def spelled(level: str) -> str:
    """A stored level in the spelling `encode` matches cells in (canonical_text; "(missing)" as is). Files written
    before numbers and true/false were put in one spelling may store "0.0" or "TRUE": they match "0" and "True"."""
    return level if level == MISSING_LEVEL else canonical_text(level)


def level_index(levels: Sequence[str]) -> dict[str, int]:
    """Each stored level's spelling -> its position; the first one wins where two old levels spell one value."""
    index: dict[str, int] = {}
    for k, level in enumerate(levels):
        index.setdefault(spelled(level), k)
    return index


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _over(value: float, limit: float) -> str:
    """`value` with the fewest significant digits (at least 2) that still read beyond `limit` in size."""
    for digits in range(2, 10):
        text = f"{value:.{digits}g}"
        if abs(float(text)) > limit:
            return text
    return repr(value)


def describe_columns(table: dict) -> list[dict]:
    """One line of plain data per raw column for config.json and the report: its type and treatment."""
    rows = []
    for c in table["columns"]:
        if c["kind"] in DROPPED_KINDS:
            treatment = "dropped"
        elif c["kind"] == "date":
            treatment = describe_date(c)
        elif c["kind"] == "numeric":
            treatment = f"median {c['fill']:.6g} for missing" + (" + indicator" if c["indicator"] else "") \
                if c["missing_train"] or c["indicator"] else "as is"
            if c.get("log"):
                fill = f"; median {c['fill']:.6g} (on that scale) for missing" + \
                    (" + indicator" if c["indicator"] else "") if c["missing_train"] or c["indicator"] else ""
                x = f"x - {c['center']:.6g}" if c.get("center") else "x"
                treatment = f"sign({x}) log(1 + |{x}|), skewness {_over(c['skew'], SKEW_MAX)}{fill}"
        elif c["encoding"] == "onehot":
            treatment = f"one-hot, {_plural(len(c['levels']), 'level')}" + \
                (f" + (other) for {len(c['rare'])} rare" if c["rare"] else "")
        else:
            treatment = f"{c['encoding']} encoding, {_plural(len(c['levels']), 'level')}"
        rows.append({"column": c["name"], "type": c["kind"], "why": c.get("reason", ""), "treatment": treatment})
    return rows
