"""Hogwild on a user's nn.Module instance: a residual CNN written here trains on digits images with 2 workers
sharing its parameters, the instance itself is the trained model, the run directory reloads to the same
predictions; resuming is refused, and data Hogwild cannot take is named as given."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnopt
from nnopt.config import TrainSpec
from nnopt.distributed._hogwild import train_hogwild
from nnopt.errors import UsageError
from nnopt.models import load_model

HANG_LIMIT_S = 120  # the no_hang fixture in conftest.py


class DigitsResNet(nn.Module):
    """A conv stem, one residual block (with BatchNorm), 2x2 max pooling and a linear head on (N, 1, 8, 8)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(width * 16, 10)

    def forward(self, x):
        h = self.stem(x)
        h = torch.relu(h + self.body(h))  # the residual add
        return self.head(self.pool(h).flatten(1))


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y


def test_two_workers_train_a_user_cnn_instance_and_the_run_reloads(tmp_path):
    # Measured: test accuracy 0.933-0.967 after 4 epochs over seeds 0-9 with 2 workers (one process: 0.944-0.959)
    torch.manual_seed(0)
    net = DigitsResNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = tmp_path / "run"
    result = nnopt.fit(net, digits_images(), optimizer="adam", lr=0.003, epochs=4, seed=0, nproc=2,
                       strategy="hogwild", out=out)
    assert result.model is net  # trained in place: the workers stepped the instance's shared parameters
    assert all(p.is_shared() for p in net.parameters())
    assert all(not torch.equal(before[k], v) for k, v in net.state_dict().items() if v.is_floating_point())
    assert result.history[-1]["rows"] == len(result.data.train)  # both workers' shards: every row once
    print(f"hogwild DigitsResNet test accuracy {result.metrics['test']['accuracy']:.4f}")
    assert result.metrics["test"]["accuracy"] >= 0.85
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "hogwild" and config["nproc"] == 2 and config["model"] == "DigitsResNet"
    assert config["model_record"]["program"] is not None
    reloaded, meta = load_model(out)
    X = result.data.test.X.reshape(-1, 1, 8, 8)
    net.eval()
    with torch.no_grad():
        expected = net(X)
        got = reloaded(X)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert meta["sample_shape"] == [1, 8, 8]


def test_spawned_workers_receive_the_instance_through_shared_memory():
    # spawn pickles the module to the workers (its class is importable: this test module); its tensors travel
    # as shared-memory handles, so the workers' steps land in the caller's instance
    torch.manual_seed(0)
    net = DigitsResNet()
    head = net.head.weight.detach().clone()
    spec = TrainSpec(data=digits_images(), optimizer="adam", lr=0.003, epochs=2, seed=0)
    result = train_hogwild(spec, 2, module=net, start_method="spawn")
    assert result.model is net and result.config["start_method"] == "spawn"
    assert not torch.equal(net.head.weight, head)
    assert result.metrics["val"]["accuracy"] > 0.6  # 0.1 by chance


def test_resume_is_refused_with_one_line(tmp_path):
    with pytest.raises(UsageError) as info:
        nnopt.fit(DigitsResNet(), digits_images(), epochs=1, nproc=2, strategy="hogwild", resume=True,
                  out=tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message
    assert message == ("strategy='hogwild' does not resume: it writes no checkpoint, as each worker's optimizer "
                       "state is its own; train again without resume=True, or use strategy='ddp' for a run that "
                       "resumes")
    assert not (tmp_path / "run").exists()


def test_resume_of_a_hogwild_run_directory_is_refused_on_the_command_line(run_cli, tmp_path):
    out = tmp_path / "run"
    args = ("train", "--data", "iris", "--model", "mlp:8", "--epochs", "1", "--strategy", "hogwild", "--nproc", "2")
    assert run_cli(*args, "--out", out)[0] == 0
    code, _, err = run_cli("train", "--out", out, "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a --strategy hogwild run writes none" in err and "run without --resume to start fresh" in err
    code, _, err = run_cli(*args, "--out", out, "--resume")  # the same, with the settings repeated
    assert code == 2 and "a --strategy hogwild run writes none" in err


def test_memory_mapped_data_is_named_in_the_refusal(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    expected = (r"^hogwild needs the training rows in memory, and data= is a memory-mapped \.npy array .*"
                r"np\.load\(path\) without mmap_mode, or an \.npz file\).*strategy='ddp'$")
    with pytest.raises(UsageError, match=expected):
        nnopt.fit("mlp:16", (tmp_path / "X.npy", tmp_path / "y.npy"), epochs=1, nproc=2, strategy="hogwild")


@pytest.mark.parametrize("as_loader, named", [(False, "a torch Dataset"), (True, "a torch DataLoader")])
def test_torch_sources_are_named_in_the_refusal(as_loader, named):
    X, y = digits_images()
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    with pytest.raises(UsageError, match=f"and data= is {named}; pass its samples as arrays"):
        nnopt.fit(DigitsResNet(), DataLoader(data, batch_size=32) if as_loader else data, epochs=1, nproc=2,
                  strategy="hogwild")
