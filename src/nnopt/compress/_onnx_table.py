"""Table models in ONNX: one input per raw column, with the stored table treatment (data/_table.py) built into the
graph in front of the feature scaling and the network, so the file takes rows as users have them.

A table whose kept columns are all numeric takes one float32 input "input" of shape (batch, columns), in column
order (NaN = missing), as a model trained on arrays does. Otherwise inputs are named after the kept columns
(renamed only when a name is empty, "logits" or starts with "nnopt."; metadata "nnopt.inputs" maps input ->
column), shape (batch, 1):
- numeric column: float32, NaN = missing -> IsNaN, Where(train median), and Cast(IsNaN) as the 0/1 indicator
  column when training had missing cells there;
- categorical column: string -> ai.onnx.ml LabelEncoder (text -> row of a constant matrix) -> Gather. One-hot:
  the identity, whose "(other)" row takes rare and unseen levels when training had rare ones, else an extra row
  of zeros takes unseen ones; target encoding: the stored per-level values and the default row for unseen ones.
  A missing cell is "" or nan, na, n/a, null, none, ? in any letter case (nnopt's own missing spellings); it
  takes the "(missing)" level's row, as in `encode`. Text is matched as given, so it must come in nnopt's one
  spelling of a category cell (data/_values.py canonical_text, which table_feed applies): no spaces around it,
  a number as the shortest text that reads back ("3", not "3.0"; "0.5", not "0.50"), true/false as "True" /
  "False"; the graph does not rewrite text. The keys are the stored levels in that spelling.
- date column: float64, seconds since 1970-01-01T00:00:00 UTC (NaN = missing; table_feed reads raw date cells
  into it as training read them, data/_dates.py). The graph derives the parts in float64: days = seconds / 86400,
  weekday = (floor(days) + 3) mod 7, year / month / day by the civil-from-days algorithm, hour = the seconds into
  the day / 3600; then the train medians where the input is NaN, the feature shift subtracted still in float64 (a
  day count in float32 would lose the hour), a Cast to float32 and the 0/1 indicator when training had one.
Then Concat in the encoded column order, Sub / Div by the recorded feature scaling, the float network (any file
from export_onnx or quantize_onnx_int8, input "input"), and for regression Mul / Add back to target units.
Output "logits", as in the float export.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.data import apply_preprocessing, encode_table, feature_stat
# the spellings and level names `encode` uses; nnopt.data does not list them among its public names
from nnopt.data._dates import SECONDS_PER_DAY, date_seconds, shape
from nnopt.data._table import DROPPED_KINDS, MISSING_LEVEL, level_index, spelled
from nnopt.data._values import MISSING_TOKENS, as_numbers, as_text
from nnopt.errors import UsageError

from nnopt.compress._export import OUTPUT_NAME, _check_onnx, _one_line, _write, agreement, ort_session

ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder-2: string keys -> int64 values, an int64 default
PREFIX = "nnopt."
MATRIX_INPUT = "input"  # the one input of an all-numeric table's file: (batch, columns) in column order
UNSEEN_PROBES = ("nnopt-unseen-a", "nnopt-unseen-b")
CHECK_ROWS = 1000  # raw rows a written file is checked on


def missing_spellings() -> list[str]:
    """Every text a categorical input reads as missing: nnopt's tokens in every letter case."""
    out = set()
    for token in MISSING_TOKENS:
        out.update("".join(chars) for chars in itertools.product(*[(c.lower(), c.upper()) for c in token]))
    return sorted(out)


def numbers_only(table: dict) -> bool:
    """Every kept column numeric: the file then takes one float matrix, as a model trained on arrays does."""
    return all(c["kind"] == "numeric" for c in table["columns"] if c["kind"] not in DROPPED_KINDS)


def table_inputs(table: dict) -> list[dict[str, Any]]:
    """The graph's inputs in order, as plain data (what the metadata "nnopt.inputs" holds)."""
    kept = [c for c in table["columns"] if c["kind"] not in DROPPED_KINDS]
    if numbers_only(table):
        return [{"name": MATRIX_INPUT, "columns": [c["name"] for c in kept], "kind": "numeric", "dtype": "float32",
                 "shape": ["batch", len(kept)], "missing": "NaN"}]
    entries, taken = [], {c["name"] for c in kept}
    for i, c in enumerate(kept):
        name = c["name"]
        if not name or name == OUTPUT_NAME or name.startswith(PREFIX):
            name = f"input_{i}"  # ONNX needs non-empty unique names; these would clash with the output or ours
            while name in taken:
                name += "_"
            taken.add(name)
        entry = {"name": name, "column": c["name"], "kind": c["kind"]}
        if c["kind"] == "numeric":
            entry.update(dtype="float32", missing="NaN")
        elif c["kind"] == "date":
            entry.update(dtype="float64", unit="seconds since 1970-01-01T00:00:00 UTC", missing="NaN",
                         parts=list(c["parts"]), format=c["format"], text=shape(c["format"]))
        else:
            entry.update(dtype="string", missing='"" (also nan, na, n/a, null, none, ? in any letter case)',
                         encoding=c["encoding"], levels=[spelled(level) for level in c["levels"]],
                         spelling="numbers as the shortest text that reads back ('3', '0.5'), true/false as "
                                  "'True' / 'False', no surrounding spaces")
            if c["encoding"] == "onehot":
                entry.update(rare=[spelled(level) for level in c["rare"]],
                             unseen="the (other) column" if c["rare"] else "all zeros")
            else:
                entry["unseen"] = "the training mean of the target"
        entries.append(entry)
    return entries


def feature_scaling(preprocessing: Mapping[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) such that scaled = (x - shift) / scale, from the recorded feature transform."""
    shift, scale = np.zeros(n), np.ones(n)
    kind = preprocessing.get("x_scale", "none")
    if kind in ("standard", "channel"):
        shift, scale = feature_stat(preprocessing, "x_mean", n), feature_stat(preprocessing, "x_std", n)
    elif kind == "minmax":
        shift = np.asarray(preprocessing["x_min"], float)
        scale = np.asarray(preprocessing["x_max"], float) - shift
    elif kind == "pixel":
        scale = np.full(n, float(preprocessing["x_divisor"]))
    return shift, scale


def _category_matrix(c: dict) -> tuple[dict[str, int], int, np.ndarray]:
    """(text -> row, row for anything else, matrix) of one categorical column."""
    if c["encoding"] == "onehot":
        width = len(c["levels"]) + bool(c["rare"])
        rows = level_index(c["levels"])
        other = len(c["levels"]) if c["rare"] else width  # no rare levels: unseen -> an extra row of zeros
        for level in c["rare"]:
            rows.setdefault(spelled(level), other)
        matrix = np.vstack([np.eye(width), np.zeros((1, width))])
    else:
        rows = level_index(c["levels"])
        other = len(c["levels"])
        matrix = np.vstack([np.asarray(c["values"], dtype=np.float64).reshape(len(c["levels"]), -1),
                            np.asarray(c["default"], dtype=np.float64).reshape(1, -1)])
    missing = rows.get(MISSING_LEVEL, other)
    for text in missing_spellings():
        rows.setdefault(text, missing)  # a stored level never is a missing spelling: encode reads those as missing
    return rows, other, matrix.astype(np.float32)


def _table_nodes(table: dict, preprocessing: Mapping[str, Any], features: str) -> tuple[list, list, list]:
    """(graph inputs, nodes, initializers) from the raw columns to the scaled feature matrix named `features`."""
    from onnx import TensorProto, helper, numpy_helper

    inputs, nodes, inits, parts = [], [], [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), PREFIX + name))
        return PREFIX + name

    kept = [c for c in table["columns"] if c["kind"] not in DROPPED_KINDS]
    if numbers_only(table):
        _matrix_nodes(kept, inputs, nodes, const)
        parts.append(PREFIX + "matrix")
        kept = []
    flat = None  # the shape (-1,), made once when a categorical column needs it
    shift, scale = feature_scaling(preprocessing, int(preprocessing["n_features"]))
    shift = np.array(shift, dtype=np.float64)  # a copy: a date column's entries are zeroed below
    at = 0  # the column's first encoded position
    for k, (c, entry) in enumerate(zip(kept, table_inputs(table))):
        x, tag = entry["name"], f"{PREFIX}c{k}."
        if c["kind"] == "date":
            inputs.append(helper.make_tensor_value_info(x, TensorProto.DOUBLE, ["batch", 1]))
            width = len(c["parts"])
            parts += _date_nodes(x, c, shift[at:at + width].copy(), tag, nodes, const)
            shift[at:at + width] = 0.0  # subtracted in float64 above
            at += width + bool(c["indicator"])
            continue
        if c["kind"] == "numeric":
            at += 1 + bool(c["indicator"])
            inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 1]))
            nodes.append(helper.make_node("IsNaN", [x], [tag + "absent"]))
            value = x
            if c.get("center"):  # a left-skewed column: its log scale is measured from the train maximum
                nodes.append(helper.make_node("Sub", [x, const(f"c{k}.center", np.array([[c["center"]]],
                                                                                    dtype=np.float32))],
                                              [tag + "centered"]))
                value = tag + "centered"
            value = _signed_log_nodes(value, tag, nodes, const) if c.get("log") else value
            fill = const(f"c{k}.fill", np.array([[c["fill"]]], dtype=np.float32))
            nodes.append(helper.make_node("Where", [tag + "absent", fill, value], [tag + "filled"]))
            parts.append(tag + "filled")
            if c["indicator"]:
                nodes.append(helper.make_node("Cast", [tag + "absent"], [tag + "indicator"], to=TensorProto.FLOAT))
                parts.append(tag + "indicator")
            continue
        inputs.append(helper.make_tensor_value_info(x, TensorProto.STRING, ["batch", 1]))
        rows, other, matrix = _category_matrix(c)
        at += matrix.shape[1]
        nodes.append(helper.make_node("LabelEncoder", [x], [tag + "row2d"], domain=ML_DOMAIN,
                                      keys_strings=list(rows), values_int64s=list(rows.values()),
                                      default_int64=other))
        flat = flat or const("flat", np.array([-1], dtype=np.int64))
        nodes.append(helper.make_node("Reshape", [tag + "row2d", flat], [tag + "row"]))
        nodes.append(helper.make_node("Gather", [const(f"c{k}.matrix", matrix), tag + "row"], [tag + "encoded"],
                                      axis=0))
        parts.append(tag + "encoded")
    nodes.append(helper.make_node("Concat", parts, [PREFIX + "encoded"], axis=1))
    nodes.append(helper.make_node("Sub", [PREFIX + "encoded", const("shift", shift.astype(np.float32))],
                                  [PREFIX + "shifted"]))
    nodes.append(helper.make_node("Div", [PREFIX + "shifted", const("scale", scale.astype(np.float32))],
                                  [features]))
    return inputs, nodes, inits


def _matrix_nodes(kept: list[dict], inputs: list, nodes: list, const: Callable[[str, np.ndarray], str]) -> None:
    """An all-numeric table: one (batch, k) input; NaN -> the medians, the indicator columns after the values they
    flag, as `encode` orders them."""
    from onnx import TensorProto, helper

    inputs.append(helper.make_tensor_value_info(MATRIX_INPUT, TensorProto.FLOAT, ["batch", len(kept)]))
    nodes.append(helper.make_node("IsNaN", [MATRIX_INPUT], [PREFIX + "absent"]))
    value = MATRIX_INPUT
    if any(c.get("log") for c in kept):  # the skewed columns through sign(x) log(1 + |x|), the others as they are
        source = MATRIX_INPUT
        if any(c.get("center") for c in kept):  # left-skewed columns: measured from their train maximum
            centers = np.array([[float(c.get("center") or 0.0) for c in kept]], dtype=np.float32)
            nodes.append(helper.make_node("Sub", [MATRIX_INPUT, const("centers", centers)], [PREFIX + "centered"]))
            source = PREFIX + "centered"
        logged = _signed_log_nodes(source, PREFIX + "m.", nodes, const)
        which = const("logged", np.array([[bool(c.get("log")) for c in kept]]))
        nodes.append(helper.make_node("Where", [which, logged, MATRIX_INPUT], [PREFIX + "values"]))
        value = PREFIX + "values"
    fill = const("fill", np.array([[c["fill"] for c in kept]], dtype=np.float32))
    nodes.append(helper.make_node("Where", [PREFIX + "absent", fill, value], [PREFIX + "filled"]))
    flagged = [k for k, c in enumerate(kept) if c["indicator"]]
    if not flagged:
        nodes.append(helper.make_node("Identity", [PREFIX + "filled"], [PREFIX + "matrix"]))
        return
    nodes.append(helper.make_node("Cast", [PREFIX + "absent"], [PREFIX + "flags"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Concat", [PREFIX + "filled", PREFIX + "flags"], [PREFIX + "both"], axis=1))
    order = []  # value k, then its indicator (column len(kept) + k of "both") where it has one
    for k, c in enumerate(kept):
        order += [k] + ([len(kept) + k] if c["indicator"] else [])
    nodes.append(helper.make_node("Gather", [PREFIX + "both", const("order", np.array(order, dtype=np.int64))],
                                  [PREFIX + "matrix"], axis=1))


def _date_nodes(x: str, c: dict, shift: np.ndarray, tag: str, nodes: list,
                const: Callable[[str, np.ndarray], str]) -> list[str]:
    """A date column, seconds since 1970-01-01 UTC (batch, 1) float64 -> its encoded parts as data._dates computes
    them (float32, then the indicator column); `shift`: the feature shift of the parts, subtracted in float64."""
    from onnx import TensorProto, helper

    names, numbers = iter(range(1_000)), {}

    def op(kind: str, *args: str, **attrs) -> str:
        out = f"{tag}d{next(names)}"
        nodes.append(helper.make_node(kind, list(args), [out], **attrs))
        return out

    def num(value: float) -> str:  # a float64 scalar, one initializer per value
        if value not in numbers:
            numbers[value] = const(f"{tag.removeprefix(PREFIX)}n{value:g}", np.array(value, dtype=np.float64))
        return numbers[value]

    def floor_div(a: str, b: float) -> str:  # floor(a / b): exact for the integers here (all far below 2**53)
        return op("Floor", op("Div", a, num(b)))

    days = op("Div", x, num(SECONDS_PER_DAY))
    day = op("Floor", days)
    # civil_from_days, H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"
    # (https://howardhinnant.github.io/date_algorithms.html, public domain): days since 1970-01-01 -> y, m, d
    # in the proleptic Gregorian calendar, through 400-year eras that start on March 1st
    z = op("Add", day, num(719468))  # days since 0000-03-01
    era = floor_div(z, 146097)  # 146097 days in 400 years
    doe = op("Sub", z, op("Mul", era, num(146097)))  # day of the era [0, 146096]
    yoe = floor_div(op("Sub", op("Add", op("Sub", doe, floor_div(doe, 1460)), floor_div(doe, 36524)),
                       floor_div(doe, 146096)), 365)  # year of the era [0, 399]
    doy = op("Sub", doe, op("Add", op("Mul", yoe, num(365)), op("Sub", floor_div(yoe, 4), floor_div(yoe, 100))))
    mp = floor_div(op("Add", op("Mul", doy, num(5)), num(2)), 153)  # month from March [0, 11]
    values = {"days": days,
              "day": op("Add", op("Sub", doy, floor_div(op("Add", op("Mul", mp, num(153)), num(2)), 5)), num(1)),
              "month": op("Where", op("Less", mp, num(10)), op("Add", mp, num(3)), op("Sub", mp, num(9)))}
    january_february = op("Cast", op("Less", values["month"], num(3)), to=TensorProto.DOUBLE)
    values["year"] = op("Add", op("Add", yoe, op("Mul", era, num(400))), january_february)
    thursday = op("Add", day, num(3))  # 1970-01-01 was a Thursday; Monday = 0
    values["weekday"] = op("Sub", thursday, op("Mul", floor_div(thursday, 7), num(7)))
    values["hour"] = op("Div", op("Sub", x, op("Mul", day, num(SECONDS_PER_DAY))), num(3600))
    stacked = op("Concat", *[values[part] for part in c["parts"]], axis=1)
    absent = op("IsNaN", x)
    fill = const(f"{tag.removeprefix(PREFIX)}fill", np.array([c["fill"]], dtype=np.float64))
    filled = op("Where", absent, fill, stacked)
    shifted = op("Sub", filled, const(f"{tag.removeprefix(PREFIX)}shift", shift.reshape(1, -1).astype(np.float64)))
    out = [op("Cast", shifted, to=TensorProto.FLOAT)]
    if c["indicator"]:
        out.append(op("Cast", absent, to=TensorProto.FLOAT))
    return out


def _signed_log_nodes(x: str, tag: str, nodes: list, const: Callable[[str, np.ndarray], str]) -> str:
    """sign(x) log(1 + |x|), as data.signed_log computes it (NaN stays NaN); returns the output's name."""
    from onnx import helper

    one = const(tag.removeprefix(PREFIX) + "one", np.array(1.0, dtype=np.float32))
    nodes.append(helper.make_node("Abs", [x], [tag + "abs"]))
    nodes.append(helper.make_node("Add", [tag + "abs", one], [tag + "abs1"]))
    nodes.append(helper.make_node("Log", [tag + "abs1"], [tag + "log"]))
    nodes.append(helper.make_node("Sign", [x], [tag + "sign"]))
    nodes.append(helper.make_node("Mul", [tag + "sign", tag + "log"], [tag + "signed_log"]))
    return tag + "signed_log"


def table_onnx(network: str | Path, preprocessing: Mapping[str, Any], path: str | Path) -> Path:
    """Write to `path` the ONNX file `network` (scaled float rows in, outputs as the network gives them) with the
    table's raw-column inputs, feature scaling and, for regression, the target scaling built around it."""
    import onnx
    from onnx import helper, numpy_helper

    table = preprocessing["table"]
    try:
        core = onnx.compose.add_prefix(onnx.load(str(network)), PREFIX + "network/")
    except Exception as exc:
        raise UsageError(f"cannot read ONNX model {network}: {_one_line(exc)}") from None
    initializers = {t.name for t in core.graph.initializer}
    core_input = [i for i in core.graph.input if i.name not in initializers]
    if len(core_input) != 1 or len(core.graph.output) != 1:
        raise UsageError(f"{network} must have one input and one output to take table columns")
    inputs, nodes, inits = _table_nodes(table, preprocessing, core_input[0].name)
    nodes += list(core.graph.node)
    raw_out = core.graph.output[0].name
    y_mean, y_std = preprocessing.get("y_mean"), preprocessing.get("y_std")
    if preprocessing.get("task") == "regression" and y_mean is not None and y_std is not None:
        std = numpy_helper.from_array(np.asarray(y_std, dtype=np.float32), PREFIX + "y_std")
        mean = numpy_helper.from_array(np.asarray(y_mean, dtype=np.float32), PREFIX + "y_mean")
        inits += [std, mean]
        nodes.append(helper.make_node("Mul", [raw_out, std.name], [PREFIX + "unscaled"]))
        nodes.append(helper.make_node("Add", [PREFIX + "unscaled", mean.name], [OUTPUT_NAME]))
    else:
        nodes.append(helper.make_node("Identity", [raw_out], [OUTPUT_NAME]))
    output = onnx.ValueInfoProto()
    output.CopyFrom(core.graph.output[0])
    output.name = OUTPUT_NAME
    graph = helper.make_graph(nodes, "nnopt_table", inputs, [output], initializer=inits + list(core.graph.initializer))
    graph.value_info.extend(core.graph.value_info)
    graph.sparse_initializer.extend(core.graph.sparse_initializer)
    opsets = [o for o in core.opset_import if o.domain != ML_DOMAIN] + [helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=core.ir_version,
                              producer_name=core.producer_name or "nnopt")
    model.functions.extend(core.functions)
    model.metadata_props.add(key="nnopt.inputs", value=json.dumps(table_inputs(table)))
    model.metadata_props.add(key="nnopt.missing_text", value=json.dumps(missing_spellings()))
    blob = model.SerializeToString()
    _check_onnx(blob, "cannot build the table inputs into the ONNX model")
    return _write(path, blob, "write the ONNX model with table inputs")


# ----------------------------------------------------------------------------------------------- running it

def table_feed(inputs: list[dict[str, Any]], columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs (the entries of table_inputs) from raw columns by name, (n, 1) each: numbers as float32
    (missing -> NaN); category cells in nnopt's one spelling (stripped, "3" for 3.0 or "3.0", "True" for TRUE),
    missing cells as ""."""
    feed = {}
    if len(inputs) == 1 and "columns" in inputs[0]:  # an all-numeric table: one float matrix in column order
        entry = inputs[0]
        missing = [name for name in entry["columns"] if name not in columns]
        if missing:
            raise UsageError(f"the rows have no column '{missing[0]}', an input of the model; add it")
        numbers = [as_numbers(np.asarray(columns[name]).ravel()) for name in entry["columns"]]
        bad = [name for name, values in zip(entry["columns"], numbers) if values is None]
        if bad:
            raise UsageError(f"column '{bad[0]}' must hold numbers: the model reads it as numeric")
        feed[entry["name"]] = np.stack(numbers, axis=1).astype(np.float32).reshape(-1, len(numbers))
        return feed
    for entry in inputs:
        if entry["column"] not in columns:
            raise UsageError(f"the rows have no column '{entry['column']}', an input of the model; add it")
        values = np.asarray(columns[entry["column"]]).ravel()
        if entry["kind"] == "numeric":
            numbers = as_numbers(values)
            if numbers is None:
                raise UsageError(f"column '{entry['column']}' must hold numbers: the model reads it as numeric")
            feed[entry["name"]] = numbers.astype(np.float32).reshape(-1, 1)
        elif entry["kind"] == "date":
            feed[entry["name"]] = date_seconds(values, entry["format"], entry["column"]).reshape(-1, 1)
        else:
            cells = ["" if t is None else t for t in as_text(values)]
            feed[entry["name"]] = np.array(cells, dtype=object).reshape(-1, 1)
    return feed


def table_predict(path: str | Path, columns: Mapping[str, Any]) -> np.ndarray:
    """Outputs (float32) of a table ONNX file on raw columns by name (its metadata "nnopt.inputs" says which)."""
    session = ort_session(path)
    inputs = session.get_modelmeta().custom_metadata_map.get("nnopt.inputs")
    if inputs is None:
        raise UsageError(f"{path} has no table inputs (metadata nnopt.inputs); give it rows as a float array")
    return session.run(None, table_feed(json.loads(inputs), columns))[0].astype(np.float32, copy=False)


def table_probe(table: dict, preprocessing: Mapping[str, Any], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Raw rows from a fixed seed that visit every branch of the graph: stored levels, rare ones, unseen text and
    missing spellings for categorical columns; values spread around the median, a tenth of them NaN, for numeric
    ones; for date columns, dates (with times when training had them) spread evenly around the median day, a tenth
    missing (NaT), the turn of a year and a leap day near the median among them. (Dates far from training, such
    as the pre-1970 ones tests feed, would stretch an int8 file's activation ranges and blur what is checked.)"""
    rng = np.random.default_rng(seed)
    _, scale = feature_scaling(preprocessing, int(preprocessing["n_features"]))
    columns, at = {}, 0
    spellings = ["", "NA", "nan", "null", "None", "?", "N/A"]
    for c in table["columns"]:
        if c["kind"] in DROPPED_KINDS:
            continue
        if c["kind"] == "numeric":
            spread = scale[at] if preprocessing.get("x_scale") == "standard" else max(1.0, abs(c["fill"]))
            values = c["fill"] + spread * rng.standard_normal(n)
            if c.get("log"):  # fill and spread are on the log scale: back to raw values
                values = np.sign(values) * np.expm1(np.minimum(np.abs(values), 30.0)) + float(c.get("center") or 0.0)
            values[rng.random(n) < 0.1] = np.nan
            columns[c["name"]] = values.astype(np.float32)
            at += 1 + bool(c["indicator"])
            continue
        if c["kind"] == "date":
            spread = max(30.0, scale[at] if preprocessing.get("x_scale") == "standard" else 365.0)
            # uniform over median ± sqrt(3) spread: the span of evenly spread dates with that spread, so the
            # year part stays near the years training saw
            days = np.floor(c["fill"][0] + spread * rng.uniform(-np.sqrt(3), np.sqrt(3), n))
            fixed = _calendar_turns(c["fill"][0])
            days[:len(fixed)] = fixed[:n]
            seconds = days * 86_400 + rng.integers(0, 86_400, n) * ("hour" in c["parts"])
            stamps = seconds.astype(np.int64).astype("datetime64[s]")
            stamps[rng.random(n) < 0.1] = np.datetime64("NaT")
            columns[c["name"]] = stamps
            at += len(c["parts"]) + bool(c["indicator"])
            continue
        pool = list(c["levels"]) + list(c.get("rare") or []) + list(UNSEEN_PROBES) + spellings
        columns[c["name"]] = np.array(pool, dtype=object)[rng.integers(0, len(pool), n)]
        at += len(c["levels"]) + bool(c.get("rare")) if c["encoding"] == "onehot" else len(c["outputs"])
    return columns


def _calendar_turns(median_day: float) -> list[float]:
    """Days (since 1970) of the turn of the year of `median_day` (Dec 31, Jan 1) and of the leap day nearest it
    (Feb 29, Mar 1): where the graph's calendar arithmetic changes month and year."""
    year = int(np.datetime64(int(np.floor(median_day)), "D").astype("datetime64[Y]").astype(np.int64)) + 1970
    leap = min((y for y in range(year - 4, year + 5) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)),
               key=lambda y: abs(y - year), default=year)
    days = [f"{year}-12-31", f"{year + 1}-01-01", f"{leap}-02-29", f"{leap}-03-01"]
    return [float(np.datetime64(d, "D").astype(np.int64)) for d in days]


def check_table(preprocessing: Mapping[str, Any], reference: Callable[[np.ndarray], np.ndarray],
                exported: Callable[[dict[str, np.ndarray]], np.ndarray], rows: int = CHECK_ROWS) -> dict[str, Any]:
    """Compare an exported file (`exported`: raw columns -> its outputs) with `reference` (encoded, unscaled rows
    -> raw network outputs) on `rows` probe rows: class agreement and the largest probability difference, or the
    largest difference in target units for regression."""
    return compare_outputs(preprocessing.get("task"), *table_outputs(preprocessing, reference, exported, rows))


def compare_outputs(task: str | None, ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """table_outputs' two outputs compared: rows, and class agreement with the largest probability difference, or
    the largest difference in target units for regression."""
    if task == "regression":
        return {"rows": len(ours), "max_abs_diff": float(np.abs(theirs - ours).max())}
    return {"rows": len(ours), "agreement": agreement(ours, theirs),
            "max_proba_diff": float(np.abs(_proba(ours) - _proba(theirs)).max())}


# largest difference from nnopt an exported file may show: in class probability, or in target units per unit of
# the target's scale. fp32 files agree to float rounding (1e-6 and below on the tests' models); a file with
# quantized weights as codes computes them in ONNX Runtime's own kernels
FP32_TOLERANCE = 1e-4
QUANTIZED_TOLERANCE = 1e-3
ROUNDING = 1e-5  # of the largest value: float32 rounding where the target's mean is large against its spread


def output_gap(task: str | None, ours: np.ndarray, theirs: np.ndarray, limit: float,
               target_std: Any = None) -> str | None:
    """How an exported file's outputs (`theirs`) differ from nnopt's (`ours`: logits, or values in target units)
    past `limit`, in words; None when they are close. Classification: class probabilities, or logits relative to
    the largest |logit| (at least 1), further apart than `limit` (probabilities alone miss a logit doubled where
    softmax saturates). Regression: values further apart than `limit` times the target's scale (`target_std`, its
    training standard deviation; 1 when it was not scaled) plus float32 rounding of the largest value."""
    if not len(ours):
        return None
    if task == "classification":
        ours, theirs = ours.reshape(len(ours), -1), theirs.reshape(len(ours), -1)
        proba = float(np.abs(_proba(ours) - _proba(theirs)).max())
        logits = float(np.abs(ours - theirs).max()) / max(1.0, float(np.abs(ours).max()))
        if proba <= limit and logits <= limit:
            return None
        return (f"class probabilities differ from nnopt's by up to {proba:.3g} and its logits by up to {logits:.3g} "
                f"x the largest |logit| (allowed {limit:.0e}; {100 * agreement(ours, theirs):.2f} % same class)")
    scale = float(np.max(np.abs(target_std))) if target_std is not None else 1.0
    allowed = limit * scale + ROUNDING * float(np.abs(ours).max())
    diff = float(np.max(np.abs(theirs.reshape(ours.shape) - ours)))
    if diff <= allowed:
        return None
    return f"values differ from nnopt's by up to {diff:.3g} in target units (allowed {allowed:.3g})"


def table_outputs(preprocessing: Mapping[str, Any], reference: Callable[[np.ndarray], np.ndarray],
                  exported: Callable[[dict[str, np.ndarray]], np.ndarray],
                  rows: int = CHECK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """`reference`'s and `exported`'s outputs (see check_table) on `rows` probe rows, float64: logits, or for
    regression (n, targets) values in target units."""
    table = preprocessing["table"]
    columns = table_probe(table, preprocessing, rows)
    ours = np.asarray(reference(encode_table(columns, table)[0]), dtype=np.float64)
    theirs = np.asarray(exported(columns), dtype=np.float64)
    if preprocessing.get("task") == "regression":
        ours = ours.reshape(len(ours), -1)
        if preprocessing.get("y_mean") is not None and preprocessing.get("y_std") is not None:
            ours = ours * np.asarray(preprocessing["y_std"]) + np.asarray(preprocessing["y_mean"])
        theirs = theirs.reshape(ours.shape)
    return ours, theirs


def table_onnx_checked(network: str | Path, preprocessing: Mapping[str, Any], path: str | Path, model: nn.Module,
                       rows: int = CHECK_ROWS) -> tuple[Path, dict[str, Any]]:
    """table_onnx, then the file checked against the torch `model` (scaled rows in) on `rows` raw rows."""
    written = table_onnx(network, preprocessing, path)

    @torch.inference_mode()
    def reference(X: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            return model(apply_preprocessing(X, preprocessing)).numpy()
        finally:
            model.train(was_training)

    return written, check_table(preprocessing, reference, lambda columns: table_predict(written, columns), rows)


def _proba(logits: np.ndarray) -> np.ndarray:
    if logits.ndim == 1 or logits.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


__all__ = ["FP32_TOLERANCE", "QUANTIZED_TOLERANCE", "ROUNDING", "check_table", "compare_outputs", "feature_scaling",
           "missing_spellings", "output_gap", "table_feed", "table_inputs",
           "table_onnx", "table_onnx_checked", "table_outputs", "table_predict", "table_probe"]
