"""Tick labels of the log-scale loss axes: on a narrow range every label shown differs and reads back as its tick
(three significant digits once printed 1.08, 1.08, 1.09, 1.09 on a loss between 1.08 and 1.12)."""

from __future__ import annotations

import itertools

import pytest

from nnopt.report._plots import compare_figure, train_figure
from nnopt.report._render import build_figure, render_png


def _history(low: float, high: float, epochs: int = 10) -> list[dict]:
    step = (high - low) / (epochs - 1)
    return [{"epoch": i + 1, "train_loss": high - step * i, "val_loss": high - 0.9 * step * i,
             "val_accuracy": 0.5 + 0.01 * i, "lr": 0.01, "time_s": 0.5 * (i + 1)} for i in range(epochs)]


def _shown_labels(axis, view: tuple[float, float]) -> list[tuple[float, str]]:
    """(tick, label text) of the labelled ticks inside the view, major and minor: what the PNG shows."""
    low, high = sorted(view)
    shown = []
    for minor in (False, True):
        for x, text in zip(axis.get_ticklocs(minor=minor), axis.get_ticklabels(minor=minor)):
            if low <= x <= high and text.get_text():
                shown.append((float(x), text.get_text()))
    return shown


def _check(labels: list[tuple[float, str]]) -> None:
    texts = [text for _, text in labels]
    assert len(texts) >= 2, labels
    assert len(set(texts)) == len(texts), texts  # no label repeated
    ticks = sorted(x for x, _ in labels)
    gap = min(b - a for a, b in itertools.pairwise(ticks))
    for x, text in labels:  # and each one says where its tick is
        assert float(text) == pytest.approx(x, abs=0.01 * gap), (x, text)


@pytest.mark.parametrize("low, high", [(1.08, 1.12), (0.301, 0.303), (2.1, 2.3), (0.0231, 0.0236), (0.2, 0.9)])
def test_train_loss_axis_labels_are_distinct(low, high):
    data = train_figure({"model": "mlp:8", "optimizer": "sgd", "lr": 0.01}, _history(low, high), "accuracy")
    loss = data.panels[0]
    assert loss.yscale == "log"
    fig = build_figure(data)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    _check(_shown_labels(ax.yaxis, ax.get_ylim()))


def test_compare_loss_axes_labels_are_distinct():
    results = {"optimizers": [{"optimizer": "sgd", "lr": 0.1, "rank": 1}, {"optimizer": "adam", "lr": 1e-3, "rank": 2}],
               "runs": [{"optimizer": "sgd", "status": "ok", "history": _history(1.08, 1.12)},
                        {"optimizer": "adam", "status": "ok", "history": _history(1.085, 1.115)}]}
    fig = build_figure(compare_figure({"model": "mlp:8", "data": "iris"}, results, "accuracy"))
    fig.canvas.draw()
    loss_axes = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(loss_axes) == 2  # training loss by epoch and by wall-clock time
    for ax in loss_axes:
        _check(_shown_labels(ax.yaxis, ax.get_ylim()))


def test_wide_ranges_keep_three_significant_digits():
    fig = build_figure(train_figure({}, _history(0.05, 2.3), "accuracy"))
    fig.canvas.draw()
    ax = fig.axes[0]
    texts = [text for _, text in _shown_labels(ax.yaxis, ax.get_ylim())]
    assert "0.1" in texts and "1" in texts and all(len(t) <= 4 for t in texts)


def test_png_of_a_narrow_range_is_deterministic():
    data = train_figure({}, _history(1.08, 1.12), "accuracy")
    assert render_png(data) == render_png(data)
