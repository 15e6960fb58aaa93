"""Callbacks: the hooks' order and counts (steps per epoch exact), what they receive, stopping from a callback,
the older hook names, and no call at all per step when nothing overrides on_step_end — in one process and
through Hogwild's workers, which run the same loop."""

from __future__ import annotations

import json
import math

import pytest
import torch

import nnopt
from nnopt.config import TrainSpec
from nnopt.distributed._hogwild import train_hogwild
from nnopt.train import Callback, ProgressBar
from nnopt.train._callbacks import step_callbacks
from nnopt.train._loggers import LOGGERS


class Recorder(Callback):
    def __init__(self):
        self.events: list[tuple] = []
        self.step_losses: dict[int, list[float]] = {}

    def on_train_start(self, info):
        self.events.append(("train_start", info["epochs"], info["steps_per_epoch"]))

    def on_epoch_start(self, epoch):
        self.events.append(("epoch_start", epoch))

    def on_step_end(self, epoch, step, loss):
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and not loss.requires_grad
        self.events.append(("step", epoch, step))
        self.step_losses.setdefault(epoch, []).append(float(loss))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch_end", epoch, logs["epoch"]))

    def on_train_end(self, result):
        self.events.append(("train_end", result.epochs))


def expected_events(epochs: int, steps: int) -> list[tuple]:
    events: list[tuple] = [("train_start", epochs, steps)]
    for epoch in range(1, epochs + 1):
        events.append(("epoch_start", epoch))
        events += [("step", epoch, step) for step in range(1, steps + 1)]
        events.append(("epoch_end", epoch, epoch))
    return events + [("train_end", epochs)]


def test_hooks_run_in_the_documented_order_with_exact_step_counts():
    recorder = Recorder()
    result = nnopt.fit("mlp:32", "digits", optimizer="adam", epochs=3, batch_size=64, seed=0, device="cpu",
                       callbacks=[recorder])
    n_train = len(result.data.train)
    assert n_train % 64 not in (0, 1)  # so the count below is plain ceil, a last smaller batch included
    steps = math.ceil(n_train / 64)
    assert recorder.events == expected_events(3, steps)
    for row in result.history:  # the loss each step handed on is the loss the epoch's train_loss averages
        assert sum(recorder.step_losses[row["epoch"]]) / steps == pytest.approx(row["train_loss"], rel=1e-6)


def test_batch_size_one_calls_on_step_end_once_per_row():
    recorder = Recorder()
    result = nnopt.fit("mlp:8", "iris", optimizer="sgd", epochs=2, batch_size=1, seed=0, device="cpu",
                       callbacks=[recorder])
    n_train = len(result.data.train)
    assert [len(recorder.step_losses[e]) for e in (1, 2)] == [n_train, n_train]


def test_a_callback_stops_training_after_its_epoch(tmp_path):
    class StopAtTwo(Recorder):
        def on_epoch_end(self, epoch, logs):
            super().on_epoch_end(epoch, logs)
            return epoch == 2

    recorder = StopAtTwo()
    out = tmp_path / "run"
    result = nnopt.fit("mlp:16", "digits", epochs=10, seed=0, device="cpu", out=out, callbacks=[recorder])
    assert result.epochs == 2 and result.stopped_early
    assert [e for e in recorder.events if e[0] == "epoch_start"] == [("epoch_start", 1), ("epoch_start", 2)]
    assert recorder.events[-1] == ("train_end", 2)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["stopped_early"] is True


def test_older_hook_names_are_still_called():
    class Old(Callback):
        def __init__(self):
            self.calls = []

        def on_fit_start(self, info):
            self.calls.append("start")

        def on_fit_end(self, result):
            self.calls.append("end")

    old = Old()
    nnopt.fit("mlp:8", "iris", epochs=2, device="cpu", callbacks=[old])
    assert old.calls == ["start", "end"]


def test_on_step_end_is_not_called_when_no_callback_overrides_it(monkeypatch):
    calls = []
    # the base hook itself counts: a loop that called every callback's on_step_end would reach it
    monkeypatch.setattr(Callback, "on_step_end", lambda self, *args: calls.append(args))

    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs):
            return None

    callbacks = [EpochOnly(), ProgressBar(enabled=False)]
    assert step_callbacks(callbacks) == []
    assert all(logger.on_step_end is Callback.on_step_end for logger in LOGGERS.values())
    result = nnopt.fit("mlp:8", "iris", epochs=2, device="cpu", callbacks=callbacks)
    assert result.epochs == 2 and calls == []


def test_hogwild_main_process_runs_the_same_hooks():
    # worker 0 is the main process: its callbacks see its own shard's steps, every epoch, in the same order
    recorder = Recorder()
    spec = TrainSpec(data="digits", model="mlp:32", optimizer="sgd", lr=0.1, epochs=2, batch_size=64, seed=0)
    result = train_hogwild(spec, 2, callbacks=[recorder])
    n_train = len(result.data.train)
    shard0 = len(range(0, n_train, 2))
    steps = math.ceil(shard0 / 64) - (1 if shard0 % 64 == 1 else 0)
    assert recorder.events == expected_events(2, steps)
    assert [row["steps"] for row in result.history] == [2 * steps] * 2  # both workers' steps
