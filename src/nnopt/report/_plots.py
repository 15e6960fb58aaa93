"""Plain plot data (no matplotlib here): figures -> panels -> lines, built from the run files.

_render.py draws these; tests read them directly. A figure holds only panels with data: a builder leaves an
empty panel out, and returns None when no panel is left (the page then says so in words, not with empty axes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnopt.report._format import PALETTE, PERCENT_METRICS, finite, fmt_lr, metric_label

TIME_POINTS = 200  # common time grid per optimizer, for the min-max band over seeds


@dataclass(frozen=True)
class Line:
    label: str | None
    x: tuple[float, ...]
    y: tuple[float, ...]  # NaN = gap
    color: str
    lo: tuple[float, ...] | None = None  # min-max band over seeds
    hi: tuple[float, ...] | None = None
    style: str = "-"  # a matplotlib line style; "none": the points alone (a scatter); "bar": bars at x
    width: float = 1.8
    alpha: float = 1.0
    markers: bool = False
    marker_size: float = 3.5
    drawstyle: str = "default"  # "steps-post": a staircase (a Pareto front)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    color: str
    marker: str = "o"  # "o" chosen lr, "x" divergence, "*" the kept trial of a search, "s" a reference (labelled)
    label: str | None = None


@dataclass(frozen=True)
class RefLine:
    """A reference line across the panel, dashed by default: at x = `at` (axis "x": a limit such as max_params)
    or at y = `at` (axis "y": a floor such as the original score minus the allowed drop)."""

    axis: str  # "x": a vertical line; "y": a horizontal one
    at: float
    label: str | None
    color: str
    style: str = "--"


@dataclass(frozen=True)
class Panel:
    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Line, ...]
    points: tuple[Point, ...] = ()
    xscale: str = "linear"
    yscale: str = "linear"
    ylim: tuple[float, float] | None = None
    integer_x: bool = False  # epochs: whole-number ticks
    reflines: tuple[RefLine, ...] = ()
    log_counts: bool = False  # a log x axis of counts (params): ticks 2k, 50k, 1.5M
    categories: tuple[str, ...] = ()  # x tick labels at 0, 1, 2, ... (a bar chart of named things)


@dataclass(frozen=True)
class FigureData:
    panels: tuple[Panel, ...]
    ncols: int
    size_in: tuple[float, float]  # width, height in inches (x DPI = pixels)
    title: str | None = None
    legend: str = "figure"  # "figure": one legend above the panels; "panels": one per panel


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A fixed name -> colour mapping in the given (rank) order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def metric_axis(metric: str) -> tuple[float, str]:
    """Percentage metrics are drawn in % (the unit the tables use)."""
    label = metric_label(metric)
    return (100.0, f"{label} (%)") if metric in PERCENT_METRICS else (1.0, label)


def _title(metric: str) -> str:
    label = metric_label(metric)
    return label[:1].upper() + label[1:]


def _series(rows: Sequence[dict[str, Any]], key: str, x_key: str = "epoch",
            scale: float = 1.0) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        x = finite(row.get(x_key)) if x_key else float(i + 1)
        if x is None:
            continue
        y = finite(row.get(key))
        xs.append(x)
        ys.append(math.nan if y is None else y * scale)
    return xs, ys


def _has_data(lines: Sequence[Line]) -> bool:
    return any(not math.isnan(v) for line in lines for v in line.y)


# ---- train -------------------------------------------------------------------------------------

def train_figure(config: dict[str, Any], history: Sequence[dict[str, Any]], metric: str) -> FigureData | None:
    """Loss (log) and the val metric against epoch; the learning rate too when it changes."""
    few = len(history) <= 30
    loss_lines = []
    for key, label, color in (("train_loss", "train", PALETTE[0]), ("val_loss", "validation", PALETTE[1])):
        x, y = _series(history, key)
        if any(not math.isnan(v) for v in y):
            loss_lines.append(Line(label, tuple(x), tuple(y), color, markers=few))
    panels = [Panel("Loss", "epoch", "loss (log scale)", tuple(loss_lines), yscale="log", integer_x=True)]
    metric_lines = []
    scale, ylabel = metric_axis(metric)
    for split, color, style in (("train", PALETTE[0], "--"), ("val", PALETTE[1], "-")):
        x, y = _series(history, f"{split}_{metric}", scale=scale)
        if any(not math.isnan(v) for v in y):
            metric_lines.append(Line("train" if split == "train" else "validation", tuple(x), tuple(y), color,
                                     style=style, markers=few))
    panels.append(Panel(_title(metric), "epoch", ylabel, tuple(metric_lines), integer_x=True))
    x, lrs = _series(history, "lr")
    finite_lrs = {v for v in lrs if not math.isnan(v)}
    if len(finite_lrs) > 1:
        panels.append(Panel("Learning rate", "epoch", "lr (log scale)",
                            (Line(None, tuple(x), tuple(lrs), PALETTE[2], markers=few),), yscale="log",
                            integer_x=True))
    panels = [p for p in panels if _has_data(p.lines)]
    if not panels:
        return None
    title = f"{config.get('model') or 'model'} · {config.get('optimizer', '?')} (lr {fmt_lr(config.get('lr'))}) " \
            f"on {(config.get('data_info') or {}).get('name') or config.get('data', '?')}"
    return FigureData(tuple(panels), ncols=len(panels), size_in=(5.0 * len(panels), 4.2), title=title,
                      legend="panels")


# ---- compare -----------------------------------------------------------------------------------

def epoch_band(histories: Sequence[Sequence[dict[str, Any]]], key: str, scale: float = 1.0):
    """Mean, min and max over seeds at each epoch; a seed that diverged counts until its last epoch."""
    table: dict[float, list[float]] = {}
    for rows in histories:
        for x, y in zip(*_series(rows, key, scale=scale)):
            if not math.isnan(y):
                table.setdefault(x, []).append(y)
    xs = sorted(table)
    values = [np.asarray(table[x]) for x in xs]
    return (tuple(xs), tuple(float(v.mean()) for v in values), tuple(float(v.min()) for v in values),
            tuple(float(v.max()) for v in values))


def time_band(histories: Sequence[Sequence[dict[str, Any]]], key: str, scale: float = 1.0,
              points: int = TIME_POINTS):
    """Each seed interpolated onto one time grid (NaN outside the seed's own time span), then mean/min/max."""
    curves = []
    for rows in histories:
        t, y = _series(rows, key, x_key="time_s", scale=scale)
        keep = [(a, b) for a, b in zip(t, y) if not math.isnan(b)]
        if keep:
            curves.append((np.asarray([a for a, _ in keep]), np.asarray([b for _, b in keep])))
    if not curves:
        return (), (), (), ()
    start = min(float(t[0]) for t, _ in curves)
    end = max(float(t[-1]) for t, _ in curves)
    grid = np.linspace(start, end, points) if end > start else np.asarray([start])
    stack = np.full((len(curves), grid.size), np.nan)
    for i, (t, y) in enumerate(curves):
        inside = (grid >= t[0]) & (grid <= t[-1])
        stack[i, inside] = np.interp(grid[inside], t, y)
    counts = np.sum(~np.isnan(stack), axis=0)
    filled = np.where(np.isnan(stack), 0.0, stack)
    mean = np.where(counts > 0, filled.sum(axis=0) / np.maximum(counts, 1), np.nan)
    lo = np.where(counts > 0, np.where(np.isnan(stack), np.inf, stack).min(axis=0), np.nan)
    hi = np.where(counts > 0, np.where(np.isnan(stack), -np.inf, stack).max(axis=0), np.nan)
    return tuple(grid.tolist()), tuple(mean.tolist()), tuple(lo.tolist()), tuple(hi.tolist())


def ranked_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary rows best first (rank 1); rows without a rank keep their order after the ranked ones."""
    rows = [r for r in results.get("optimizers") or [] if isinstance(r, dict) and r.get("optimizer")]
    return sorted(rows, key=lambda r: (finite(r.get("rank")) is None, finite(r.get("rank")) or 0))


def compare_figure(config: dict[str, Any], results: dict[str, Any], metric: str) -> FigureData | None:
    """2x2: training loss and val `metric` against epoch (top) and wall-clock seconds (bottom); a panel with
    nothing recorded (no validation split, no timings) is left out."""
    rows = ranked_rows(results)
    colors = colors_for([r["optimizer"] for r in rows])
    runs = [r for r in results.get("runs") or [] if isinstance(r, dict)]
    scale, ylabel = metric_axis(metric)
    val_title = _title(f"val_{metric}").replace("Val ", "Validation ")
    specs = [("train_loss", "epoch", "Training loss by epoch", "loss (log scale)", "log", 1.0),
             (f"val_{metric}", "epoch", f"{val_title} by epoch", ylabel, "linear", scale),
             ("train_loss", "time", "Training loss by wall-clock time", "loss (log scale)", "log", 1.0),
             (f"val_{metric}", "time", f"{val_title} by wall-clock time", ylabel, "linear", scale)]
    panels = []
    for key, axis, title, ylabel, yscale, factor in specs:
        lines, points = [], []
        for row in rows:
            name = row["optimizer"]
            mine = [r for r in runs if r.get("optimizer") == name]
            histories = [r.get("history") or [] for r in mine]
            band = epoch_band(histories, key, factor) if axis == "epoch" else time_band(histories, key, factor)
            if not band[0]:
                continue
            label = f"{name} (lr {fmt_lr(row.get('lr'))})"
            lines.append(Line(label, band[0], band[1], colors[name], lo=band[2], hi=band[3],
                              markers=axis == "epoch" and len(band[0]) <= 30))
            for run in mine:  # mark where a diverged seed stopped
                if run.get("status") == "diverged":
                    xs, ys = _series(run.get("history") or [], key, "epoch" if axis == "epoch" else "time_s", factor)
                    last = [(a, b) for a, b in zip(xs, ys) if not math.isnan(b)]
                    if last:
                        points.append(Point(last[-1][0], last[-1][1], colors[name], "x"))
        xlabel = "epoch" if axis == "epoch" else "wall-clock time (s)"
        if _has_data(lines):
            panels.append(Panel(title, xlabel, ylabel, tuple(lines), tuple(points), yscale=yscale,
                                integer_x=axis == "epoch"))
    if not panels:
        return None
    data = (config.get("data_info") or {}).get("name") or config.get("data", "?")
    title = f"{config.get('model') or 'model'} on {data}: mean over seeds, band = min–max"
    if any(p.marker == "x" for panel in panels for p in panel.points):
        title += ", × = diverged"
    ncols = min(2, len(panels))
    return FigureData(tuple(panels), ncols=ncols, size_in=(6.0 * ncols, 0.5 + 4.05 * -(-len(panels) // ncols)),
                      title=title)


# ---- lr finder ---------------------------------------------------------------------------------

def lr_find_figure(lr_find: dict[str, Any], order: Sequence[str] | None = None) -> FigureData | None:
    """Loss against lr (log x) per optimizer: raw loss faint, smoothed loss solid, the suggestion marked; an
    optimizer with no finite loss at a positive lr has no panel."""
    names = [n for n in (order or []) if n in lr_find] + sorted(n for n in lr_find if n not in (order or []))
    colors = colors_for(names)
    panels = []
    for name in names:
        entry = lr_find[name] if isinstance(lr_find[name], dict) else {}
        lrs = [finite(v) for v in entry.get("lrs") or []]
        losses = [finite(v) for v in entry.get("losses") or []]
        smoothed = [finite(v) for v in entry.get("smoothed") or []] or losses
        keep = [i for i, lr in enumerate(lrs) if lr is not None and lr > 0]
        x = tuple(lrs[i] for i in keep)
        pick = lambda seq: tuple(_nan(seq[i]) if i < len(seq) else math.nan for i in keep)  # noqa: E731
        raw, smooth = pick(losses), pick(smoothed)
        lines = [Line("loss", x, raw, colors[name], width=1.0, alpha=0.35),
                 Line("smoothed", x, smooth, colors[name], width=2.2)]
        points = []
        suggested = finite(entry.get("suggested"))
        if suggested is not None and x:
            points.append(Point(suggested, _loss_at(x, smooth, suggested), "#000000", "o",
                                f"suggested lr {fmt_lr(suggested)}"))
        if _has_data(lines):
            panels.append(Panel(f"{name}: suggested lr {fmt_lr(suggested)}", "learning rate (log scale)",
                                "training loss", tuple(lines), tuple(points), xscale="log",
                                ylim=_lr_ylim(smooth, raw)))
    if not panels:
        return None
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    size = (8.0, 5.0) if len(panels) == 1 else (4.6 * ncols + 0.8, 3.8 * nrows + 0.5)
    return FigureData(tuple(panels), ncols=ncols, size_in=size,
                      title="Learning-rate range test", legend="panels")


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _loss_at(x: Sequence[float], y: Sequence[float], at: float) -> float:
    pairs = [(a, b) for a, b in zip(x, y) if not math.isnan(b)]
    if not pairs:
        return math.nan
    logs = np.log10([a for a, _ in pairs])
    return float(np.interp(math.log10(at), logs, [b for _, b in pairs]))


def _lr_ylim(smoothed: Sequence[float], raw: Sequence[float]) -> tuple[float, float] | None:
    """Show the descent, not the blow-up at the end: from the lowest loss to the highest one before it."""
    values = [v for v in smoothed if not math.isnan(v)] or [v for v in raw if not math.isnan(v)]
    if not values:
        return None
    low_at = int(np.argmin(values))
    low, high = min([values[low_at]] + [v for v in raw if not math.isnan(v)]), max(values[: low_at + 1])
    span = max(high - low, abs(high) * 0.05, 1e-12)
    return (low - 0.1 * span, high + 0.25 * span)


__all__ = ["FigureData", "Line", "Panel", "Point", "RefLine", "colors_for", "compare_figure", "epoch_band",
           "lr_find_figure", "ranked_rows", "time_band", "train_figure"]
