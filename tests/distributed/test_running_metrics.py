"""Running train metrics in a group of processes: each rank sums the outputs of the rows it trained on, and the
sums of all ranks are added up (one all-reduce per epoch), so every epoch's train_* metrics are those of one
process training on the same global batches."""

from __future__ import annotations

import pytest

import nnopt
from nnopt.train import fit as fit_one_process

HANG_LIMIT_S = 180  # the no_hang fixture in conftest.py


def test_ddp_running_regression_metrics_are_those_of_one_process():
    # diabetes: 309 training rows, batch 64 (the last global batch of 53 rows splits 26 / 27 over the ranks)
    kwargs = dict(optimizer="sgd", batch_size=64, epochs=3, seed=0, device="cpu")
    one = fit_one_process("mlp:16", "diabetes", **kwargs)
    two = nnopt.fit("mlp:16", "diabetes", nproc=2, **kwargs)
    assert two.config["train_metrics"] == "running" and two.config["world_size"] == 2
    for a, b in zip(one.history, two.history, strict=True):
        for name in ("train_mse", "train_mae", "train_r2"):
            assert b[name] == pytest.approx(a[name], rel=1e-5), name
    assert two.metrics["train"]["mse"] == pytest.approx(one.metrics["train"]["mse"], rel=1e-5)  # exact, at the end


def test_hogwild_running_metrics_count_every_workers_rows():
    result = nnopt.fit("mlp:32", "digits", nproc=2, strategy="hogwild", epochs=4, seed=0, device="cpu")
    last = result.history[-1]
    assert last["rows"] == len(result.data.train)  # both workers' shards
    # the running figures trail the final weights, which are scored exactly at the end
    assert 0.85 <= last["train_accuracy"] <= result.metrics["train"]["accuracy"] + 0.02
