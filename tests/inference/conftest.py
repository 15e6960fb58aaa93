"""Shared runs for the inference tests: an iris CSV with the species as text, and a train run on it.

Trained once per session through the CLI entry, with few epochs: the tests check that the numbers agree,
not that the model is good."""

import json

import pytest
from use_helpers import cli, write_iris


@pytest.fixture(scope="session")
def iris_csv(tmp_path_factory):
    return write_iris(tmp_path_factory.mktemp("data") / "iris.csv")


@pytest.fixture(scope="session")
def iris_run(iris_csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "iris"
    code, _, err = cli("train", "--data", iris_csv, "--target", "species", "--model", "mlp:16", "--lr", "0.01",
                       "--epochs", "15", "--out", run, "--json")
    assert code == 0, err
    return run


@pytest.fixture(scope="session")
def iris_summary(iris_run):
    return json.loads((iris_run / "summary.json").read_text())
