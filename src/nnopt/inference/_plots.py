"""The evaluation plots: plain data first (a confusion matrix, residual points), then a PNG from it.

Drawn on matplotlib's Agg canvas directly (no pyplot): no global backend switch, no open figures left behind.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nnopt.fileio import atomic_write

ANNOTATE_UP_TO = 20  # classes; beyond this the counts would not fit in the cells
MAX_POINTS = 20000  # residual points drawn; a seeded subset beyond this keeps the PNG small


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j]: rows of class i predicted as class j."""
    return np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def residual_points(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true - predicted) for every target value, in the target's units."""
    true, pred = np.asarray(true, dtype=np.float64).reshape(-1), np.asarray(pred, dtype=np.float64).reshape(-1)
    return pred, true - pred


def draw_confusion(path: Path, counts: np.ndarray, class_names: list[str], title: str) -> Path:
    from matplotlib.figure import Figure

    k = len(class_names)
    side = min(12.0, 3.0 + 0.45 * k)
    fig = Figure(figsize=(side + 1.2, side), dpi=110)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=class_names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= ANNOTATE_UP_TO:
        top = counts.max() if counts.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if top and counts[i, j] > top / 2 else "black")
    fig.tight_layout()
    return _save(fig, path)


def draw_residuals(path: Path, pred: np.ndarray, residual: np.ndarray, title: str) -> Path:
    from matplotlib.figure import Figure

    if len(pred) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(pred), size=MAX_POINTS, replace=False))
        pred, residual = pred[keep], residual[keep]
    fig = Figure(figsize=(6.4, 4.4), dpi=110)
    ax = fig.add_subplot()
    ax.scatter(pred, residual, s=10, alpha=0.6, color="#1f77b4", edgecolors="none")
    ax.axhline(0.0, color="#444444", linewidth=1, linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true - predicted")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
