"""Training loggers (--log csv|tensorboard|mlflow): the metrics.jsonl rows, same names, each epoch once — also
after --resume — and a one-line exit 2 for an unknown name or a missing package."""

import csv
import json
import sys

import pytest

import nnopt
from nnopt.config import LOGGERS, TrainSpec
from nnopt.errors import ConfigError
from nnopt.train import fit
from nnopt.train._loggers import LOGGERS as LOGGER_CLASSES

TRAIN = ["train", "--data", "iris", "--model", "mlp:8", "--epochs", "3", "--seed", "1", "--json"]


def _jsonl(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _csv(run):
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_rows(csv_rows, jsonl_rows):
    assert [int(r["epoch"]) for r in csv_rows] == [r["epoch"] for r in jsonl_rows]
    for got, want in zip(csv_rows, jsonl_rows):
        assert list(got) == list(want)  # header: epoch + the metric names of metrics.jsonl, in its order
        assert all(got[k] == ("" if v is None else str(v)) for k, v in want.items())


def test_the_name_table_matches_the_spec():
    assert list(LOGGER_CLASSES) == list(LOGGERS)


def test_csv_has_one_row_per_epoch_and_resume_appends(run_cli, tmp_path):
    run = tmp_path / "r"
    code, _, err = run_cli(*TRAIN, "--log", "csv", "--out", run)
    assert code == 0, err
    _same_rows(_csv(run), _jsonl(run))
    assert json.loads((run / "config.json").read_text())["log"] == ["csv"]

    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "5", "--json")  # log read back
    assert code == 0, err
    rows = _csv(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    _same_rows(rows, _jsonl(run))


def test_csv_after_a_kill_agrees_with_the_checkpoint(run_cli, tmp_path):
    """A kill can leave metrics.csv behind or ahead of checkpoint.pt; the resumed file has each epoch once."""
    run = tmp_path / "r"
    assert run_cli(*TRAIN, "--log", "csv", "--out", run)[0] == 0
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")  # epoch 3 lost
    assert run_cli("train", "--out", run, "--resume", "--epochs", "4", "--json")[0] == 0
    assert [int(r["epoch"]) for r in _csv(run)] == [1, 2, 3, 4]

    (run / "metrics.csv").write_text((run / "metrics.csv").read_text() + lines[-1].replace("3,", "5,", 1) + "\n")
    assert run_cli("train", "--out", run, "--resume", "--epochs", "5", "--json")[0] == 0  # a stale epoch 5
    rows = _csv(run)
    _same_rows(rows, _jsonl(run))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]


def test_tensorboard_event_files_read_back(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    code, _, err = run_cli(*TRAIN, "--log", "csv,tensorboard", "--out", run)
    assert code == 0, err
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "5", "--json")
    assert code == 0, err
    assert (run / "metrics.csv").is_file()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    history = _jsonl(run)
    names = [k for k in history[0] if k != "epoch" and history[0][k] is not None]
    assert sorted(events.Tags()["scalars"]) == sorted(names)
    for name in names:
        points = events.Scalars(name)
        assert [p.step for p in points] == [1, 2, 3, 4, 5], name  # the resumed epochs once, in order
        assert [p.value for p in points] == pytest.approx([row[name] for row in history], rel=1e-6)
    assert "config/text_summary" in events.Tags()["tensors"]


def test_mlflow_local_store(tmp_path, monkeypatch):
    for name in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_DISABLE_TELEMETRY"):  # the logger sets them; undone after
        monkeypatch.delenv(name, raising=False)
    from mlflow.tracking import MlflowClient

    run = tmp_path / "r"
    first = fit("mlp:8", "iris", epochs=2, seed=1, out=run, log=["mlflow"])
    fit("mlp:8", "iris", epochs=4, seed=1, out=run, log=["mlflow"], resume=True)
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("nnopt")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["optimizer"] == "adam" and params["model"] == "mlp:8" and params["lr"] == str(first.config["lr"])
    assert params["data_info.n_train"] == str(first.config["data_info"]["n_train"])
    history = _jsonl(run)
    for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
        points = sorted(client.get_metric_history(logged.info.run_id, name), key=lambda m: m.step)
        assert [m.step for m in points] == [1, 2, 3, 4]
        assert [m.value for m in points] == pytest.approx([row[name] for row in history])


def test_python_api_and_yaml_take_the_same_option(run_cli, tmp_path):
    result = nnopt.fit("mlp:8", "iris", epochs=2, out=tmp_path / "api", log="csv")
    assert result.config["log"] == ["csv"]
    _same_rows(_csv(tmp_path / "api"), _jsonl(tmp_path / "api"))
    cfg = tmp_path / "train.yaml"
    cfg.write_text("data: iris\nmodel: mlp:8\nepochs: 2\nlog: [csv]\n")
    assert run_cli("train", "--config", cfg, "--json", "--out", tmp_path / "yaml")[0] == 0
    assert len(_csv(tmp_path / "yaml")) == 2


def test_names_are_normalised_and_checked():
    assert TrainSpec(data="iris", log=["CSV", " csv,csv"]).validate().log == ["csv"]
    assert TrainSpec(data="iris", log=None).validate().log == []
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'; did you mean 'tensorboard'"):
        TrainSpec(data="iris", log="csv,tensorbord").validate()
    with pytest.raises(ConfigError, match="log= must be a list"):
        TrainSpec(data="iris", log=3).validate()
    assert TrainSpec(data="iris", log=["csv"], strategy="hogwild", nproc=2).validate().log == ["csv"]
    assert fit("mlp:8", "iris", epochs=1, log=["csv"]).run_dir is None  # no directory: nothing written


@pytest.mark.parametrize("args, message", [
    (["--log", "tensorbord"], ("error: unknown logger 'tensorbord'; did you mean 'tensorboard'? "
                               "choices: csv, mlflow, tensorboard")),
    (["--log", "csv", "--log", "tensorboard"], ("error: --log tensorboard needs the tensorboard package; "
                                                "pip install tensorboard")),
    (["--log", "mlflow"], "error: --log mlflow needs the mlflow package; pip install mlflow"),
])
def test_bad_log_is_one_line_exit_2_and_writes_nothing(run_cli, tmp_path, monkeypatch, args, message):
    for package in ("tensorboard", "mlflow"):  # as if not installed: an import of a None entry fails
        monkeypatch.setitem(sys.modules, package, None)
    code, out, err = run_cli(*TRAIN, *args, "--out", tmp_path / "r")
    assert (code, out, err) == (2, "", message + "\n")
    assert not (tmp_path / "r").exists()
