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
        if line.style == "bar":
            ax.bar(x, y, color=line.color, alpha=line.alpha, label=line.label, width=0.7)
            ax.set_axisbelow(True)  # grid lines behind the bars
            continue
        if line.lo is not None and line.hi is not None and len(x) > 1:
            ax.fill_between(x, np.asarray(line.lo, dtype=float), np.asarray(line.hi, dtype=float),
                            color=line.color, alpha=0.18, linewidth=0)
        fmt, extra = ((), {"linestyle": "none"}) if line.style == "none" else ((line.style,), {})  # no-line fmt
        if line.drawstyle != "default":
            extra["drawstyle"] = line.drawstyle
        ax.plot(x, y, *fmt, color=line.color, linewidth=line.width, alpha=line.alpha, label=line.label,
                marker="o" if line.markers or len(x) == 1 else None, markersize=line.marker_size, **extra)
    for point in panel.points:
        if math.isnan(point.y):
            continue
        if point.marker == "x":
            ax.plot([point.x], [point.y], "x", color=point.color, markersize=9, markeredgewidth=2.2)
        elif point.marker == "*":
            ax.plot([point.x], [point.y], "*", markerfacecolor=point.color, markeredgecolor="#222222",
                    markersize=17, markeredgewidth=1, label=point.label, zorder=5)
        elif point.marker == "s":
            ax.plot([point.x], [point.y], "s", markerfacecolor=point.color, markeredgecolor="#222222",
                    markersize=9, markeredgewidth=1, label=point.label, zorder=4)
        else:
            ax.plot([point.x], [point.y], "o", markerfacecolor="none", markeredgecolor=point.color,
                    markersize=11, markeredgewidth=2, label=point.label)
            ax.axvline(point.x, color=point.color, linestyle=":", linewidth=1)
    for vline in panel.vlines:
        ax.axvline(vline.x, color=vline.color, linestyle=vline.style, linewidth=1.3, label=vline.label)
    for hline in panel.hlines:
        ax.axhline(hline.y, color=hline.color, linestyle=hline.style, linewidth=1.3, label=hline.label)
    if panel.categories:
        ax.set_xticks(range(len(panel.categories)), panel.categories, rotation=30 if len(panel.categories) > 4
                      else 0, ha="right" if len(panel.categories) > 4 else "center")
    ax.set_title(panel.title)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.lines and any(v > 0 for line in panel.lines for v in line.x) and panel.xscale == "log":
        ax.set_xscale("log")
    if panel.yscale == "log" and any(v > 0 for line in panel.lines for v in line.y if not math.isnan(v)):
        ax.set_yscale("log")
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":  # 0.6 and 2, not 6×10⁻¹ and 2×10⁰
            counts = panel.log_counts and axis is ax.xaxis
            axis.set_major_formatter(_PlainLog(counts=counts))
            axis.set_minor_formatter(_PlainLog(labelOnlyBase=False, counts=counts))
    if panel.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    ax.grid(True, which="major", alpha=0.35)
    if panel.yscale == "log":
        ax.grid(True, which="minor", axis="y", alpha=0.12)
    if panel.note:
        ax.text(0.5, 0.5, panel.note, transform=ax.transAxes, ha="center", va="center", color="#777777")
    if legend and (any(line.label for line in panel.lines) or any(p.label for p in panel.points)
                   or any(h.label for h in panel.hlines)):
        ax.legend(loc="best", frameon=True, framealpha=0.85)


class _PlainLog(LogFormatter):
    """The log formatter's choice of which ticks to label, written as 1e-4, 0.01, 0.6, 2 (with `counts`, numbers
    of things from 1,000 up as 2k, 50k, 1.5M)."""

    def __init__(self, *args, counts: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counts = counts

    def __call__(self, x, pos=None):
        if not super().__call__(x, pos):
            return ""
        if self.counts and x >= 1e3:
            return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"
        return fmt_lr(x)


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
