"""Draw FigureData with matplotlib's object API (no pyplot, no global state) into deterministic PNG bytes."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator

from nnopt.report._format import fmt_lr
from nnopt.report._plots import FigureData, Panel

DPI = 100  # pixels = size_in x DPI, exactly (no tight bbox)
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9}


def render_png(data: FigureData) -> bytes:
    """The same FigureData always gives the same bytes: fixed size and dpi, no Software/date metadata."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=data.size_in, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        nrows = max(1, -(-len(data.panels) // data.ncols))
        axes = fig.subplots(nrows, data.ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, data.panels):
            _draw(ax, panel, legend=data.legend == "panels")
        for ax in axes[len(data.panels):]:
            ax.set_visible(False)
        if data.title:
            fig.suptitle(data.title, fontsize=12, fontweight="bold")
        if data.legend == "figure":
            handles = _legend_handles(data.panels)
            if handles:
                fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
                           frameon=False)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _draw(ax, panel: Panel, legend: bool) -> None:
    for line in panel.lines:
        x, y = np.asarray(line.x, dtype=float), np.asarray(line.y, dtype=float)
        if line.lo is not None and line.hi is not None and len(x) > 1:
            ax.fill_between(x, np.asarray(line.lo, dtype=float), np.asarray(line.hi, dtype=float),
                            color=line.color, alpha=0.18, linewidth=0)
        ax.plot(x, y, line.style, color=line.color, linewidth=line.width, alpha=line.alpha, label=line.label,
                marker="o" if line.markers or len(x) == 1 else None, markersize=3.5)
    for point in panel.points:
        if math.isnan(point.y):
            continue
        if point.marker == "x":
            ax.plot([point.x], [point.y], "x", color=point.color, markersize=9, markeredgewidth=2.2)
        else:
            ax.plot([point.x], [point.y], "o", markerfacecolor="none", markeredgecolor=point.color,
                    markersize=11, markeredgewidth=2, label=point.label)
            ax.axvline(point.x, color=point.color, linestyle=":", linewidth=1)
    ax.set_title(panel.title)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.lines and any(v > 0 for line in panel.lines for v in line.x) and panel.xscale == "log":
        ax.set_xscale("log")
    if panel.yscale == "log" and any(v > 0 for line in panel.lines for v in line.y if not math.isnan(v)):
        ax.set_yscale("log")
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":  # 0.6 and 2, not 6×10⁻¹ and 2×10⁰
            axis.set_major_formatter(_PlainLog())
            axis.set_minor_formatter(_PlainLog(labelOnlyBase=False))
    if panel.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    ax.grid(True, which="major", alpha=0.35)
    if panel.yscale == "log":
        ax.grid(True, which="minor", axis="y", alpha=0.12)
    if panel.note:
        ax.text(0.5, 0.5, panel.note, transform=ax.transAxes, ha="center", va="center", color="#777777")
    if legend and any(line.label for line in panel.lines):
        ax.legend(loc="best", frameon=True, framealpha=0.85)


class _PlainLog(LogFormatter):
    """The log formatter's choice of which ticks to label, written as 1e-4, 0.01, 0.6, 2."""

    def __call__(self, x, pos=None):
        return fmt_lr(x) if super().__call__(x, pos) else ""


def _legend_handles(panels: tuple[Panel, ...]) -> list[Line2D]:
    """One entry per labelled line (first occurrence): the optimizer -> colour key shared by all panels."""
    seen: dict[str, Line2D] = {}
    for panel in panels:
        for line in panel.lines:
            if line.label and line.label not in seen:
                seen[line.label] = Line2D([], [], color=line.color, linewidth=2.5, label=line.label)
    if any(p.marker == "x" for panel in panels for p in panel.points):
        seen["diverged"] = Line2D([], [], color="#444444", marker="x", linestyle="none", markersize=8,
                                  markeredgewidth=2, label="diverged")
    return list(seen.values())
