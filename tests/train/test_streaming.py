"""Streamed data on the one loop: torch Datasets, IterableDatasets and DataLoaders through fit and tune, labels
read without a pass when the source states them, training metrics from the batches already computed (exact
__getitem__ counts), and class names from `.classes` through predict."""

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import nnopt
from nnopt.errors import DataError, UsageError
from nnopt.train._metrics import compute_metrics
from nnopt.train._running import RunningMetrics

DIGITS = load_digits()
X = torch.tensor(DIGITS.data / 16, dtype=torch.float32)
Y = torch.tensor(DIGITS.target)


class Counted(Dataset):
    """Digits, counting __getitem__ calls per index."""

    def __init__(self, n=len(X), targets=False, classes=None):
        self.n, self.calls = n, Counter()
        if targets:
            self.targets = Y[:n].tolist()
        if classes:
            self.classes = classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls[int(i)] += 1
        return X[i], int(Y[i])


class Stream(IterableDataset):
    """Digits in a seeded order; with workers, each reads its own share (torch's get_worker_info)."""

    def __init__(self, n=len(X)):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(start, self.n, step):
            yield X[i], Y[i]


def reads(ds, indices):
    return [ds.calls[int(i)] for i in indices]


@pytest.mark.parametrize("given", ["task", "targets", "pass"])
def test_getitem_counts_one_read_per_training_sample_per_epoch(given):
    ds = Counted(600, targets=given == "targets")
    options = {"task": "classification", "n_classes": 10} if given == "task" else {}
    epochs = 3
    result = nnopt.fit("mlp:16", ds, epochs=epochs, seed=0, **options)
    label_pass = 1 if given == "pass" else 0
    train, val, test = (result.data.train.dataset.indices, result.data.val.dataset.indices,
                        result.data.test.dataset.indices)
    assert (len(train), len(val), len(test)) == (420, 90, 90)
    probe = ds.calls[0]  # the one sample read to learn the shape
    ds.calls[0] -= 1
    assert probe >= 1
    # training: every sample once an epoch (no second pass, no final pass), plus the label pass when one is needed
    assert reads(ds, train) == [epochs + label_pass] * len(train)
    # validation: once an epoch (the final metrics are the last epoch's: the same weights); test once at the end
    assert reads(ds, val) == [epochs + label_pass] * len(val)
    assert reads(ds, test) == [1 + label_pass] * len(test)
    assert sum(ds.calls.values()) == (epochs + label_pass) * 420 + (epochs + label_pass) * 90 + \
        (1 + label_pass) * 90
    assert result.metrics["val"] == {k[4:]: v for k, v in result.history[-1].items() if k.startswith("val_")}
    row = result.history[-1]
    assert {"train_accuracy", "train_f1", "val_accuracy"} <= set(row)
    assert result.metrics["train"]["accuracy"] == row["train_accuracy"]  # the last epoch's running value
    assert result.metrics["train"]["loss"] == row["train_loss"]


def test_dataset_classes_name_the_classes_through_predict(tmp_path):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    ds = Counted(classes=names)
    result = nnopt.fit("mlp:32", ds, epochs=8, seed=0, out=tmp_path / "run")
    # no label pass: .classes says classification with 10 classes; the probe, 8 epochs, val each epoch (the final
    # val metrics are the last epoch's), test at the end
    n_train, n_val, n_test = (len(result.data.train), len(result.data.val), len(result.data.test))
    assert sum(ds.calls.values()) == 1 + 8 * n_train + 8 * n_val + n_test
    assert result.data.class_names == names and result.metrics["test"]["accuracy"] >= 0.9
    predicted = nnopt.predict(tmp_path / "run", X[:200].numpy())
    assert predicted.class_names == names
    truth = np.array(names)[DIGITS.target[:200]]
    assert np.mean(predicted.predictions == truth) >= 0.9


def test_evaluate_and_predict_read_a_dataset_or_dataloader_in_order(tmp_path):
    names = [f"d{k}" for k in range(10)]
    result = nnopt.fit("mlp:32", Counted(classes=names), epochs=4, seed=0, out=tmp_path / "run")
    subset = torch.utils.data.Subset(Counted(classes=names), range(300))  # labels are class indices, named by .classes
    by_dataset = nnopt.evaluate(tmp_path / "run", subset)
    by_loader = nnopt.evaluate(tmp_path / "run", DataLoader(Counted(300, classes=names), batch_size=32))
    by_arrays = nnopt.evaluate(tmp_path / "run", (X[:300].numpy(), np.array(names)[DIGITS.target[:300]]))
    assert by_dataset.rows == by_loader.rows == 300
    assert by_dataset.metrics == by_loader.metrics == by_arrays.metrics and by_dataset.metrics["accuracy"] >= 0.9
    predicted = nnopt.predict(tmp_path / "run", TensorDataset(X[:300]))  # features alone: no labels needed
    assert predicted.predictions.tolist() == nnopt.predict(tmp_path / "run", X[:300].numpy()).predictions.tolist()
    with pytest.raises(DataError, match=r"^the samples of data= must be \(features, label\) pairs; got features "
                                         r"alone \(evaluate needs the labels; nnopt.predict takes features alone\)$"):
        nnopt.evaluate(tmp_path / "run", TensorDataset(X[:30]))


def test_no_label_pass_when_task_and_n_classes_are_given_exact_calls():
    ds = Counted(300)
    data = nnopt.load_data(ds, task="classification", n_classes=10)
    assert sum(ds.calls.values()) == 1 and data.n_classes == 10  # the shape probe only
    ds = Counted(300, classes=[str(i) for i in range(10)])
    nnopt.load_data(ds)
    assert sum(ds.calls.values()) == 1
    ds = Counted(300)
    nnopt.load_data(ds)
    assert sum(ds.calls.values()) == 301  # one pass for the labels, and the probe


def test_iterable_dataset_with_val_data_and_two_workers():
    result = nnopt.fit("mlp:32", Stream(1400), task="classification", n_classes=10, epochs=10, seed=0,
                       num_workers=2, val_data=TensorDataset(X[1400:], Y[1400:]))
    assert len(result.data.train) == 1400 and len(result.data.val) == len(X) - 1400
    # the last 397 digits are the hard ones: a shuffled map-style Dataset of the first 1400 reaches 0.88 on them
    assert result.metrics["val"]["accuracy"] >= 0.85 and result.metrics["test"] == {}
    assert [r["epoch"] for r in result.history] == list(range(1, 11))
    assert result.history[-1]["train_accuracy"] >= 0.85


def test_dataloader_with_two_workers_keeps_its_batch_size_unless_given():
    loader = DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True, num_workers=2)
    result = nnopt.fit("mlp:32", loader, epochs=4, seed=0)
    assert result.config["batch_size"] == 32 and result.data.n_classes == 10
    assert result.metrics["train"]["accuracy"] >= 0.9 and result.metrics["val"] == {}
    assert "val_loss" not in result.history[-1]
    result = nnopt.fit("mlp:32", loader, epochs=1, seed=0, batch_size=128)
    assert result.config["batch_size"] == 128


def test_dataset_and_dataloader_through_tune():
    spec = {"data": Counted(900), "model": "mlp:{width}", "train": {"epochs": 2, "num_workers": 2},
            "space": {"width": {"type": "int", "low": 8, "high": 32}}}
    result = nnopt.tune(spec, trials=2, sampler="random", seed=0, report=False)
    assert result.counts()["complete"] == 2
    loader = DataLoader(TensorDataset(X[:900], Y[:900]), batch_size=64, shuffle=True, num_workers=2)
    spec = {"data": loader, "model": "mlp:{width}", "objective": "train_accuracy", "train": {"epochs": 2},
            "space": {"width": {"type": "int", "low": 8, "high": 32}}}
    result = nnopt.tune(spec, trials=2, sampler="random", seed=0, report=False)
    assert result.counts()["complete"] == 2


@pytest.mark.parametrize("task", ["classification", "binary", "regression"])
def test_running_metrics_equal_the_metrics_of_the_outputs_trained_on(task):
    g = torch.Generator().manual_seed(0)
    if task == "regression":
        outputs, targets = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
        scale = ([1.0, -2.0], [3.0, 0.5])
        running = RunningMetrics("regression", 2, None, ("loss", "mse", "mae", "r2"), scale, torch.device("cpu"))
    else:
        k = 1 if task == "binary" else 4
        outputs = torch.randn(500, k, generator=g)
        targets = torch.randint(0, 2 if k == 1 else k, (500,), generator=g)
        targets = targets.float().reshape(-1, 1) if k == 1 else targets
        scale = None
        running = RunningMetrics("classification", k, 2 if k == 1 else k, ("loss", "accuracy", "precision",
                                                                          "recall", "f1"), None,
                                 torch.device("cpu"))
    for i in range(0, 500, 64):
        running.add(outputs[i:i + 64], targets[i:i + 64])
    names = running.names
    expected = compute_metrics(running.task, outputs, targets, 0.0, names, scale)
    expected.pop("loss")
    assert running.values() == pytest.approx(expected, rel=1e-9)


class Bad(Dataset):
    def __init__(self, sample, n=10):
        self.sample, self.n = sample, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.sample


class NoLength(IterableDataset):
    def __iter__(self):
        yield X[0], Y[0]


def test_bad_torch_sources_name_the_parameter():
    with pytest.raises(DataError, match=r"samples of data= must be \(features, label\) pairs"):
        nnopt.load_data(Bad((X[0], 1, 2)))
    with pytest.raises(DataError, match="no samples in data=: Bad has length 0"):
        nnopt.load_data(Bad((X[0], 1), n=0))
    with pytest.raises(DataError, match="a label of data= is 9, outside 0..2 for n_classes=3"):
        nnopt.load_data(Counted(50, targets=True), n_classes=3)
    with pytest.raises(DataError, match="labels of an IterableDataset cannot be read before training; give task= "
                                        "and, for classification, n_classes="):
        nnopt.load_data(Stream(50))
    with pytest.raises(DataError, match="IterableDataset without __len__"):
        nnopt.load_data(NoLength(), task="classification", n_classes=10)
    with pytest.raises(DataError, match="a label of data= is 9, outside 0..4 for 5 classes; give n_classes="):
        nnopt.fit("mlp:8", Stream(100), task="classification", n_classes=5, epochs=1)
    with pytest.raises(UsageError, match="early_stopping= watches the validation loss.*give val_data="):
        nnopt.fit("mlp:8", Stream(100), task="classification", n_classes=10, epochs=2, early_stopping=1)
    with pytest.raises(UsageError, match="num_workers= applies to a torch Dataset.*in-memory rows"):
        nnopt.fit("mlp:8", (X.numpy(), Y.numpy()), epochs=1, num_workers=2)
    with pytest.raises(UsageError, match="num_workers= applies to a torch Dataset.*a DataLoader brings its own"):
        nnopt.fit("mlp:8", DataLoader(TensorDataset(X, Y), batch_size=8), epochs=1, num_workers=2)
    with pytest.raises(DataError, match="n_classes= applies to a torch Dataset"):
        nnopt.load_data((X.numpy(), Y.numpy()), n_classes=10)
    with pytest.raises(DataError, match="the samples of val_data= have 3 features, those of data= 64"):
        nnopt.load_data(Counted(50), val_data=TensorDataset(torch.zeros(5, 3), torch.zeros(5)))
    with pytest.raises(UsageError, match="n_classes= must be an integer >= 2"):
        nnopt.fit("mlp:8", Counted(50), n_classes=1)
