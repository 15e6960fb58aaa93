"""compress of a run trained on streamed data: a torch Dataset's samples (and a memory-mapped array's rows) are read
into memory once, up to a limit, and scored as in-memory rows are; a run whose Dataset is not at hand says how to
give it, in Python and on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

import nnopt
from nnopt.data import Split, in_memory, load_data


class DigitsImages(Dataset):
    """sklearn's digits as (1, 8, 8) images in [0, 1], with torchvision's `.classes`."""

    classes = [str(d) for d in range(10)]

    def __init__(self):
        X, y = load_digits(return_X_y=True)
        self.X, self.y = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]), int(self.y[i])


@pytest.fixture(scope="module")
def dataset_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "digits-ds"
    nnopt.fit("mlp:64", DigitsImages(), epochs=8, seed=0, threads=1, out=run)
    return run


def test_a_run_trained_on_a_dataset_compresses_on_it(dataset_run, tmp_path):
    result = nnopt.compress_model(dataset_run, DigitsImages(), prune=0.5, prune_method="structured",
                                  quantize="int8", finetune_epochs=2, out=tmp_path / "small")
    original, chosen = result.rows[0], result.chosen
    summary = json.loads((dataset_run / "summary.json").read_text())
    # the same seeded test split, scored in memory: the training run's own test accuracy
    assert original["test"] == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-9)
    assert original["test"] > 0.9
    assert chosen["name"] == "structured 50% sparse + int8" and chosen["identical_after_load"]
    assert chosen["test"] >= original["test"] - 0.05 and chosen["params"] < original["params"]
    assert (tmp_path / "small" / "compressed.nnz").is_file()
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    assert config["data_info"]["source"] == "torch-dataset"


def test_without_the_dataset_the_message_says_how_to_give_it(dataset_run, run_cli, tmp_path):
    with pytest.raises(nnopt.UsageError) as caught:
        nnopt.compress_model(dataset_run, quantize="int8")
    assert str(caught.value) == (f"{dataset_run} was trained on a torch Dataset given in memory (<DigitsImages>), "
                                 "which a run does not keep; give data=, the same Dataset")
    code, stdout, err = run_cli("compress", dataset_run, "--quantize", "int8", "--out", tmp_path / "c")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("the command line cannot take one: compress it from Python, "
                                f"nnopt.compress_model('{dataset_run}', dataset, ...)")
    assert not (tmp_path / "c").exists()


def test_streamed_splits_are_read_into_memory_up_to_a_limit(tmp_path):
    data = load_data(DigitsImages(), seed=0)
    assert not isinstance(data.test, Split)
    held = in_memory(data, "nnopt compress")
    assert all(isinstance(getattr(held, s), Split) for s in ("train", "val", "test"))
    digits = DigitsImages()
    test_rows = list(data.test.dataset.indices)
    assert torch.equal(held.test.X, torch.from_numpy(digits.X[test_rows].reshape(len(test_rows), 64)))
    assert held.test.y.tolist() == digits.y[test_rows].tolist() and held.test.y.dtype == torch.int64
    assert in_memory(held, "nnopt compress") is held  # in memory already
    with pytest.raises(nnopt.UsageError, match=r"^nnopt compress reads the rows of DigitsImages into memory: 1797 "
                                               r"samples of 64 values take 0.439 MB, over its 0.000954 MB limit; give data= "):
        in_memory(data, "nnopt compress", max_bytes=1000)
    # a memory-mapped array: its rows scaled as training read them
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    mapped = load_data((str(tmp_path / "X.npy"), y), seed=0)
    loaded = in_memory(mapped, "nnopt compress")
    reference = load_data((X.astype(np.float32), y), seed=0)
    assert torch.allclose(loaded.test.X, reference.test.X, atol=1e-5)
    assert torch.equal(loaded.test.y, reference.test.y)
