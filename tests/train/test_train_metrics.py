"""train_metrics=: an epoch's train_* metrics from the batches it trained on ("running", the default) or from
scoring the training split again ("exact"); the run's final train metrics are exact either way."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error

import nnopt
from nnopt.errors import UsageError


def _by_hand(result):
    """Accuracy and macro F1 of the returned model on its training split, computed here."""
    with torch.no_grad():
        pred = result.model(result.data.train.X).argmax(dim=1).numpy()
    y = result.data.train.y.numpy()
    return float(np.mean(pred == y)), float(f1_score(y, pred, average="macro"))


def test_running_and_exact_train_the_same_weights_and_report_close_train_metrics():
    kwargs = dict(epochs=6, seed=0, device="cpu")
    running = nnopt.fit("mlp:64", "digits", **kwargs)
    exact = nnopt.fit("mlp:64", "digits", train_metrics="exact", **kwargs)
    assert running.config["train_metrics"] == "running" and exact.config["train_metrics"] == "exact"
    # scoring is not training: the same weights, the same losses and held-out metrics
    for a, b in zip(running.model.state_dict().values(), exact.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for r, e in zip(running.history, exact.history, strict=True):
        assert r["train_loss"] == e["train_loss"] and r["val_accuracy"] == e["val_accuracy"]
    # the running figures trail the end-of-epoch weights (measured: 26 points after epoch 1, 5 after epoch 2, then
    # 0.6-1.6 points)
    for r, e in zip(running.history[2:], exact.history[2:], strict=True):
        for name in ("accuracy", "precision", "recall", "f1"):
            assert abs(r[f"train_{name}"] - e[f"train_{name}"]) <= 0.03
    assert running.history[-1]["train_accuracy"] >= 0.9
    # the final train metrics are scored exactly in both
    assert running.metrics == exact.metrics


def test_exact_train_metrics_are_those_of_the_epochs_weights_computed_by_hand():
    result = nnopt.fit("mlp:32", "digits", epochs=3, seed=1, device="cpu", train_metrics="exact")
    accuracy, f1 = _by_hand(result)  # no early stopping: the returned weights are the last epoch's
    assert result.history[-1]["train_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.history[-1]["train_f1"] == pytest.approx(f1, rel=1e-9)
    assert result.metrics["train"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_running_final_train_metrics_are_scored_exactly_once_at_the_end():
    result = nnopt.fit("mlp:32", "digits", epochs=3, seed=1, device="cpu")
    accuracy, f1 = _by_hand(result)
    assert result.metrics["train"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.metrics["train"]["f1"] == pytest.approx(f1, rel=1e-9)
    assert result.history[-1]["train_accuracy"] != result.metrics["train"]["accuracy"]  # the epoch's running value


@pytest.mark.parametrize("data, names", [("digits", ("accuracy", "precision", "recall", "f1")),
                                         ("diabetes", ("mse", "mae", "r2"))])
def test_running_metrics_of_a_full_batch_epoch_are_the_exact_ones_of_the_weights_before_its_step(data, names):
    # gd: one step per epoch on every training row, so epoch e's running outputs are those of the weights epoch
    # e-1 ended with, which exact mode scores (no dropout, no batch normalization: train and eval mode agree)
    kwargs = dict(optimizer="gd", lr=0.05, epochs=4, seed=0, device="cpu")
    running = nnopt.fit("mlp:16", data, **kwargs)
    exact = nnopt.fit("mlp:16", data, train_metrics="exact", **kwargs)
    for r, e in zip(running.history[1:], exact.history[:-1], strict=True):
        for name in names:
            assert r[f"train_{name}"] == pytest.approx(e[f"train_{name}"], rel=1e-5, abs=1e-9), name


def test_final_regression_train_metrics_are_exact_and_in_the_targets_units():
    result = nnopt.fit("mlp:16", "diabetes", optimizer="gd", lr=0.05, epochs=2, seed=0, device="cpu")
    X, y = result.data.train.X, result.data.train.y.numpy().astype(np.float64)
    mean, std = result.data.target_scale  # the split holds the standardized target
    with torch.no_grad():
        pred = result.model(X).numpy().reshape(-1) * std[0] + mean[0]
    y = y * std[0] + mean[0]
    assert result.metrics["train"]["mse"] == pytest.approx(mean_squared_error(y, pred), rel=1e-5)
    assert result.metrics["train"]["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
    assert 1000 < result.history[-1]["train_mse"] < 40000  # diabetes' target is in the tens to hundreds


def test_a_bad_train_metrics_value_is_a_usage_error(run_cli, tmp_path):
    with pytest.raises(UsageError, match=r"^train_metrics= must be one of running, exact; got 'fast'$"):
        nnopt.fit("mlp:16", "iris", epochs=1, train_metrics="fast")
    code, out, err = run_cli("train", "--data", "iris", "--epochs", "1", "--train-metrics", "fast", "--out",
                             tmp_path / "run")
    assert code == 2 and out == ""
    assert err.strip() == "error: --train-metrics must be one of running, exact; got 'fast'"


def test_train_metrics_may_change_on_resume(tmp_path):
    first = nnopt.fit("mlp:16", "iris", epochs=2, seed=0, out=tmp_path / "run")
    assert first.config["train_metrics"] == "running"
    resumed = nnopt.fit("mlp:16", "iris", epochs=4, seed=0, out=tmp_path / "run", resume=True,
                        train_metrics="exact")
    straight = nnopt.fit("mlp:16", "iris", epochs=4, seed=0, train_metrics="exact")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history[2:] == [{**r, "time_s": a["time_s"]} for r, a in zip(straight.history[2:],
                                                                              resumed.history[2:])]


def test_roc_auc_equals_scikit_learns_with_ties_binary_and_multiclass():
    from sklearn.metrics import roc_auc_score

    from nnopt.train._metrics import _roc_auc

    rng = np.random.default_rng(0)
    y2 = rng.integers(0, 2, 500)
    score = np.round(rng.random(500), 1)  # ten distinct values: many ties
    assert _roc_auc(y2, score) == pytest.approx(roc_auc_score(y2, score), abs=1e-12)
    y4 = rng.integers(0, 4, 500)
    proba = rng.multinomial(20, [0.25] * 4, 500) / 20  # rows sum to 1, scores in steps of 0.05: ties
    assert _roc_auc(y4, proba) == pytest.approx(roc_auc_score(y4, proba, multi_class="ovr"), abs=1e-12)
    assert _roc_auc(np.zeros(5, dtype=int), np.linspace(0, 1, 5)) is None  # one class only: undefined
