"""fit() on real data: accuracy reached, parameters recovered, determinism, callbacks, divergence."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

import nnopt
from nnopt.errors import DivergedError, UsageError
from nnopt.train import Callback


def test_mlp_on_digits_reaches_95_percent():
    result = nnopt.fit("mlp:128,64", "digits", optimizer="adam", epochs=30, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.95
    assert set(result.metrics["test"]) == {"loss", "accuracy", "precision", "recall", "f1", "roc_auc"}
    assert len(result.history) == 30 and result.run_dir is None


def test_linear_gd_recovers_slope_and_intercept():
    result = nnopt.fit("linear", "linear", optimizer="gd", epochs=300, scale="none", seed=0)
    layer = result.model
    assert result.config["batch_size"] == len(result.data.train)  # gd is full-batch
    assert abs(float(layer.weight.detach()) - 3.0) < 0.05
    assert abs(float(layer.bias.detach()) - 2.0) < 0.05


def test_regression_matches_least_squares_in_target_units():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    result = nnopt.fit("linear", "diabetes", optimizer="adam", lr=1e-2, epochs=100, seed=0)
    test = result.metrics["test"]
    assert set(test) == {"loss", "mse", "mae", "r2"}
    (mean,), (std,) = result.data.target_scale
    data = result.data
    reference = LinearRegression().fit(data.train.X.numpy(), data.train.y.numpy() * std + mean)
    best_r2 = r2_score(data.test.y.numpy() * std + mean, reference.predict(data.test.X.numpy()))
    assert abs(test["r2"] - best_r2) < 0.02  # gradient descent reaches the least-squares fit
    assert test["mse"] > 1000  # diabetes targets span 25..346: errors are reported unscaled
    y = result.data.test.y.numpy() * result.data.target_scale[1][0] + result.data.target_scale[0][0]
    pred = result.model(result.data.test.X).detach().numpy().ravel() * result.data.target_scale[1][0] \
        + result.data.target_scale[0][0]
    assert test["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-4)


def test_binary_classification_uses_one_logit():
    result = nnopt.fit("mlp:32", "breast_cancer", epochs=20, seed=0)
    assert result.data.n_outputs == 1
    assert result.metrics["test"]["accuracy"] >= 0.93
    assert result.metrics["test"]["roc_auc"] >= 0.97


def test_cnn_on_digits_learns():
    result = nnopt.fit("cnn:8,16", "digits", epochs=8, lr=3e-3, seed=0)
    assert result.metrics["test"]["accuracy"] >= 0.9


def test_same_seed_same_weights_other_seed_differs():
    def weights(seed):
        model = nnopt.fit("mlp:32:dropout=0.2", "iris", epochs=5, batch_size=8, seed=seed).model
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))


def test_batch_modes():
    full = nnopt.fit("linear", "iris", optimizer="sgd", batch_size="full", epochs=2)
    assert len(full.history) == 2 and full.config["batch_size"] == len(full.data.train)
    pure = nnopt.fit("linear", "iris", optimizer="sgd", batch_size=1, epochs=1)
    assert pure.config["batch_size"] == 1
    with pytest.raises(UsageError, match="full-batch gradient descent"):
        nnopt.fit("linear", "iris", optimizer="gd", batch_size=8)


def test_metrics_per_epoch_and_selection():
    result = nnopt.fit("linear", "wine", epochs=3, metrics=["accuracy"])
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                      "time_s"}
    with pytest.raises(UsageError, match="metric 'r2' does not exist for classification"):
        nnopt.fit("linear", "wine", epochs=1, metrics=["r2"])


def test_metrics_match_sklearn():
    from sklearn import metrics as skm

    result = nnopt.fit("mlp:16", "wine", epochs=3, seed=0)
    with torch.no_grad():
        proba = torch.softmax(result.model(result.data.test.X), 1).numpy()
    y = result.data.test.y.numpy()
    pred = proba.argmax(1)
    test = result.metrics["test"]
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert test["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert (test["precision"], test["recall"], test["f1"]) == pytest.approx((p, r, f))
    assert test["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-6)


def test_early_stopping_stops_and_restores_best():
    result = nnopt.fit("mlp:256,256", "iris", optimizer="adam", lr=0.05, epochs=200, batch_size=8,
                       early_stopping=3, seed=0)
    assert result.stopped_early and len(result.history) < 200
    best = min(row["val_loss"] for row in result.history)
    assert result.metrics["val"]["loss"] == pytest.approx(best, rel=1e-5)


def test_gradient_clipping_bounds_the_step():
    clipped = nnopt.fit("linear", "diabetes", optimizer="gd", lr=1.0, epochs=1, clip_grad=0.01, seed=0)
    start = nnopt.fit("linear", "diabetes", optimizer="gd", lr=1e-12, epochs=1, seed=0).model
    delta = torch.cat([(a - b).flatten() for a, b in zip(clipped.model.parameters(), start.parameters())])
    assert 0 < float(delta.detach().norm()) <= 0.01 + 1e-6


def test_divergence_raises_with_epoch_and_step():
    with pytest.raises(DivergedError, match=r"diverged at epoch 1 step \d+ \(loss=(nan|inf)\); try a lower lr="):
        nnopt.fit("mlp:64", "diabetes", optimizer="sgd", lr=1e4, epochs=3, seed=0)


def test_weights_that_overflow_after_a_finite_step_are_a_divergence():
    # full-batch gd at lr 5: every step's loss is finite, but the weights the 4th step leaves give inf outputs
    # (once a scikit-learn "Input contains infinity" ValueError from the epoch's metrics)
    with pytest.raises(DivergedError, match=r"diverged at epoch 4 step 1 \(loss=(nan|inf)\); try a lower lr="):
        nnopt.fit("mlp:128,64", "diabetes", optimizer="gd", lr=5.0, epochs=10, seed=0)


def test_callbacks_see_every_epoch_and_can_stop():
    class Recorder(Callback):
        def __init__(self):
            self.epochs, self.started, self.ended = [], None, None

        def on_fit_start(self, info):
            self.started = info

        def on_epoch_end(self, epoch, logs):
            self.epochs.append(epoch)
            return epoch == 3

        def on_fit_end(self, result):
            self.ended = result

    rec = Recorder()
    result = nnopt.fit("linear", "iris", epochs=10, callbacks=[rec])
    assert rec.epochs == [1, 2, 3] and rec.started["epochs"] == 10 and rec.ended is result
    assert result.stopped_early


def test_torch_dataset_through_a_dataloader():
    digits = load_digits()
    X = torch.tensor(digits.data / 16, dtype=torch.float32).reshape(-1, 1, 8, 8)
    ds = TensorDataset(X, torch.tensor(digits.target))
    result = nnopt.fit("mlp:64", ds, epochs=10, seed=0)
    assert result.data.input_shape == (1, 8, 8) and result.data.n_classes == 10
    assert result.metrics["test"]["accuracy"] >= 0.9


def test_custom_module_and_arrays():
    X = np.random.default_rng(0).normal(size=(300, 4)).astype("float32")
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    result = nnopt.fit(net, (X, y), epochs=40, lr=1e-2, seed=0)
    assert result.model is net and result.metrics["test"]["accuracy"] >= 0.9


@pytest.mark.parametrize("name", ["gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam",
                                  "radam", "adamax", "adadelta", "adafactor", "muon", "lion", "schedulefree"])
def test_every_optimizer_trains_through_fit(name):
    result = nnopt.fit("mlp:32", "digits", optimizer=name, epochs=3, seed=0)
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert last < first or name == "gd"  # gd takes one step per epoch
    assert np.isfinite(result.metrics["test"]["loss"])


@pytest.mark.parametrize("schedule", ["constant", "step", "exponential", "cosine", "warmup-cosine", "one-cycle",
                                      "reduce-on-plateau"])
def test_every_schedule_runs(schedule):
    result = nnopt.fit("linear", "iris", epochs=4, schedule=schedule)
    assert len(result.history) == 4
    if schedule == "cosine":
        assert result.history[-1]["lr"] < result.history[0]["lr"]
