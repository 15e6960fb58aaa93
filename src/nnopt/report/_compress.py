"""A compress run as plain data: the variants (the original and each compressed setting tried), the kept one,
per-layer sparsity and latency per runtime, read from config.json and results.json; the figure data of the
report and the number formats its page and verdict share. No matplotlib and no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnopt.errors import UsageError
from nnopt.report._format import PALETTE, PERCENT_METRICS, finite, fmt_metric, fmt_number, metric_label
from nnopt.report._load import Run
from nnopt.report._plots import FigureData, Line, Panel, Point, RefLine, colors_for, metric_axis

ORIGINAL = "original (fp32)"
KEPT_COLOR = "#ffbf00"
ORIGINAL_COLOR = "#7f7f7f"
LIMIT_COLOR = "#d62728"
# how latency is measured (nnopt.compress: torch_latency_ms / ort_latency_ms)
TIMING = {"repeats": 30, "warmup": 5, "threads": 1}


@dataclass(frozen=True)
class Compression:
    metric: str  # "accuracy" or "r2"
    variants: tuple[dict[str, Any], ...]  # results.json's rows, in the order they were tried (original first)
    original: dict[str, Any] | None
    kept: dict[str, Any] | None
    sparsity: tuple[dict[str, Any], ...]  # per layer, then a "total" row
    latency: tuple[dict[str, Any], ...]
    settings: dict[str, Any]

    @property
    def compressed(self) -> list[dict[str, Any]]:
        """The variants other than the original."""
        return [v for v in self.variants if v is not self.original]

    @property
    def max_drop(self) -> float | None:
        return finite(self.settings.get("max_accuracy_drop"))

    @property
    def percent(self) -> bool:
        return self.metric in PERCENT_METRICS

    def layers(self) -> list[dict[str, Any]]:
        return [r for r in self.sparsity if r.get("layer") != "total"]

    def total(self) -> dict[str, Any] | None:
        return next((r for r in self.sparsity if r.get("layer") == "total"), None)

    def with_history(self) -> list[dict[str, Any]]:
        return [v for v in self.compressed if isinstance(v.get("history"), list) and v["history"]]


def load_compression(run: Run) -> Compression:
    results = run.files["results.json"]
    if not isinstance(results, dict):
        raise UsageError(f"{run.path / 'results.json'} is not a JSON object; re-run nnopt compress")
    variants = tuple(v for v in results.get("variants") or [] if isinstance(v, dict) and v.get("name"))
    if not variants:
        raise UsageError(f"{run.path / 'results.json'} holds no variant; re-run nnopt compress")
    original = next((v for v in variants if v["name"] == ORIGINAL), None)
    if original is None and variants[0].get("prune") is None and variants[0].get("quantize") is None:
        original = variants[0]
    others = [v for v in variants if v is not original]
    kept = next((v for v in others if v.get("chosen") is True), None) \
        or next((v for v in others if v["name"] == results.get("chosen")), None) or (others[-1] if others else None)
    metric = str(results.get("metric") or run.config.get("metric") or "accuracy")
    settings = run.config.get("settings") if isinstance(run.config.get("settings"), dict) else {}
    rows = lambda key: tuple(r for r in results.get(key) or [] if isinstance(r, dict))  # noqa: E731
    return Compression(metric, variants, original, kept, rows("sparsity"), rows("latency"), settings)


# ---- numbers -----------------------------------------------------------------------------------

def change(c: Compression, variant: dict[str, Any], split: str) -> float | None:
    """The score change against the original, in points for a percentage metric (else in the metric's unit)."""
    if c.original is None:
        return None
    new, old = finite(variant.get(split)), finite(c.original.get(split))
    if new is None or old is None:
        return None
    return (new - old) * (100.0 if c.percent else 1.0)


def fmt_change(c: Compression, value: float | None) -> str:
    """'-1.5 pts', '+0.4 pts'; for R²: '-0.012'."""
    if value is None:
        return "—"
    return f"{value:+.1f} pts" if c.percent else f"{value:+.3f}"


def fmt_drop(c: Compression, points: float | None) -> str:
    """The allowed drop (points; R² x 100 for a regression): '1 pt val accuracy', '0.02 val R²'."""
    if points is None:
        return "—"
    label = metric_label(f"val_{c.metric}")
    if c.percent:
        return f"{points:g} pt{'' if points == 1 else 's'} {label}"
    return f"{points / 100:g} {label}"


def floor(c: Compression) -> float | None:
    """The lowest val score the max drop allows (as a fraction, like the scores), when both are known."""
    base = finite(c.original.get("val")) if c.original else None
    if base is None or c.max_drop is None:
        return None
    return base - c.max_drop / 100.0


def fmt_count(value: Any) -> str:
    """A whole number of things: 0, 741, 15,818."""
    v = finite(value)
    return "—" if v is None else f"{v:,.0f}"


fmt_bytes = fmt_count


def fmt_ratio(value: Any) -> str:
    """12.93 -> '12.9×', 1 -> '1.0×'."""
    v = finite(value)
    if v is None:
        return "—"
    return f"{v:.1f}×" if v < 100 else f"{v:,.0f}×"


def ratio_of(c: Compression, variant: dict[str, Any]) -> float | None:
    ratio = finite(variant.get("ratio"))
    if ratio is None and c.original is not None:
        base, own = finite(c.original.get("file_bytes")), finite(variant.get("file_bytes"))
        ratio = base / own if base is not None and own else None
    if ratio is None and variant is c.original:
        ratio = 1.0
    return ratio if ratio is not None and ratio > 0 else None


def speed_phrase(speedup: Any) -> str | None:
    """'3.0× faster than', '1.3× slower than', 'about as fast as' (within 10 %)."""
    v = finite(speedup)
    if v is None or v <= 0:
        return None
    if v >= 1.1:
        return f"{fmt_ratio(v)} faster than"
    if v <= 1 / 1.1:
        return f"{fmt_ratio(1 / v)} slower than"
    return "about as fast as"


def speed_clause(row: dict[str, Any], torch_subject: str = "in torch it") -> str | None:
    """'ONNX Runtime int8 runs 3.0× faster than torch fp32 at batch 256';
    'in torch it runs about as fast as the fp32 original at batch 1 (0.97×)'."""
    phrase = speed_phrase(row.get("speedup"))
    if phrase is None:
        return None
    batch = f"at batch {fmt_number(row.get('batch'))}"
    tail = f" ({row['speedup']:.2f}×)" if phrase == "about as fast as" else ""
    if row.get("runtime") == "onnxruntime":
        kind = "int8" if "int8" in str(row.get("model")) else "fp32"
        return f"ONNX Runtime {kind} runs {phrase} torch fp32 {batch}{tail}"
    return f"{torch_subject} runs {phrase} the fp32 original {batch}{tail}"


def batches(c: Compression) -> list[int]:
    return sorted({int(b) for b in (finite(r.get("batch")) for r in c.latency) if b is not None})


def latency_rows(c: Compression) -> list[dict[str, Any]]:
    """By batch, then in the order measured."""
    return sorted(c.latency, key=lambda r: finite(r.get("batch")) or 0)


def headline_latency(c: Compression, batch: int | None = None) -> dict[str, Any] | None:
    """The deployable form's row at `batch` (default: the largest): ORT int8, else ORT fp32, else torch."""
    sizes = batches(c)
    if not sizes:
        return None
    batch = sizes[-1] if batch is None else batch
    rows = [r for r in c.latency if finite(r.get("batch")) == batch and r.get("model") != ORIGINAL
            and finite(r.get("speedup")) is not None]
    for wanted in ("int8", "onnxruntime", "torch"):
        for r in rows:
            if wanted in str(r.get("model")) or r.get("runtime") == wanted:
                return r
    return None


# ---- figures -----------------------------------------------------------------------------------

def _score_axis(c: Compression, split: str = "val") -> tuple[float, str, str]:
    """(scale, y label, title word): 100, 'val accuracy (%)', 'Validation accuracy'."""
    scale, _ = metric_axis(c.metric)
    label = metric_label(f"{split}_{c.metric}")
    return scale, label + (" (%)" if c.percent else ""), label.replace("val ", "Validation ", 1).replace(
        "test ", "Test ", 1)


def score_split(c: Compression) -> str | None:
    """The split the size figure plots: "val" (what the ladder chose on), else "test" when the source model had
    no validation rows (automl's final model trains on train+val), else None."""
    for split in ("val", "test"):
        if any(finite(v.get(split)) is not None and finite(v.get("file_bytes")) for v in c.variants):
            return split
    return None


def size_figure(c: Compression, split: str | None = None) -> FigureData | None:
    """The `split` score (default: score_split) against file bytes (log x): one point per variant, the original
    a grey square, the kept one starred, the floor of --max-accuracy-drop dashed (on the validation split, the
    one the floor applies to). None when no variant has both a size and that score."""
    split = split or score_split(c)
    if split is None:
        return None
    scale, ylabel, title = _score_axis(c, split)
    drawn = [v for v in c.compressed if finite(v.get("file_bytes")) and finite(v.get(split)) is not None]
    colors = colors_for([v["name"] for v in drawn])
    lines = tuple(Line(v["name"], (float(v["file_bytes"]),), (v[split] * scale,), colors[v["name"]],
                       style="none", markers=True, marker_size=8) for v in drawn)
    points = []
    if c.original is not None and finite(c.original.get("file_bytes")) and finite(c.original.get(split)) is not None:
        points.append(Point(float(c.original["file_bytes"]), c.original[split] * scale, ORIGINAL_COLOR, "s",
                            c.original["name"]))
    if not drawn and not points:
        return None
    if c.kept in drawn:
        points.append(Point(float(c.kept["file_bytes"]), c.kept[split] * scale, KEPT_COLOR, "*",
                            f"kept: {c.kept['name']}"))
    hlines = ()
    low = floor(c) if split == "val" else None
    if low is not None:
        hlines = (RefLine("y", low * scale, f"max drop: {fmt_drop(c, c.max_drop)} ({fmt_metric(c.metric, low)})",
                          LIMIT_COLOR),)
    panel = Panel(f"{title} against file size", "file size in bytes (log scale)", ylabel, lines, tuple(points),
                  xscale="log", log_counts=True, reflines=hlines)
    return FigureData((panel,), ncols=1, size_in=(8.0, 4.8), legend="panels",
                      title="Each variant's score and size on disk: star = kept, square = original")


def sparsity_figure(c: Compression) -> FigureData | None:
    """Per-layer sparsity of the kept model as bars; the overall sparsity dashed. None when no layer has a zero
    weight (bars of height 0 would draw empty axes; the table says it)."""
    layers = c.layers()
    if not any(finite(r.get("sparsity")) for r in layers):
        return None
    names = tuple(str(r.get("layer")) for r in layers)
    values = tuple(100.0 * (finite(r.get("sparsity")) or 0.0) for r in layers)
    lines = (Line(None, tuple(float(i) for i in range(len(layers))), values, PALETTE[0], style="bar"),)
    total = c.total()
    hlines = ()
    if total is not None and finite(total.get("sparsity")) is not None:
        hlines = (RefLine("y", 100.0 * total["sparsity"], f"all layers: {100.0 * total['sparsity']:.1f} %",
                          LIMIT_COLOR),)
    panel = Panel("Zero weights per layer of the kept model", "layer", "sparsity (%)", lines, ylim=(0.0, 100.0),
                  reflines=hlines, categories=names)
    return FigureData((panel,), ncols=1, size_in=(max(6.0, min(12.0, 1.1 * len(layers) + 3.0)), 4.2),
                      legend="panels")


def history_figure(c: Compression) -> FigureData | None:
    """Gradual pruning: sparsity and the val score after each fine-tuning epoch, one line per variant; a panel
    with no finite value is left out, and None when both are."""
    scale, ylabel, title = _score_axis(c)
    variants = c.with_history()
    colors = colors_for([v["name"] for v in c.compressed])
    sparsity, score = [], []
    for v in variants:
        rows = [r for r in v["history"] if isinstance(r, dict) and finite(r.get("epoch")) is not None]
        x = tuple(float(r["epoch"]) for r in rows)
        few = len(rows) <= 30
        sparsity.append(Line(v["name"], x, _values(rows, "sparsity", 100.0), colors[v["name"]], markers=few))
        score.append(Line(v["name"], x, _values(rows, f"val_{c.metric}", scale), colors[v["name"]], markers=few))
    hlines = ()
    base = finite(c.original.get("val")) if c.original else None
    if base is not None:
        hlines = (RefLine("y", base * scale, f"original: {fmt_metric(c.metric, base)}", ORIGINAL_COLOR, ":"),)
    panels = [panel for panel in (
        Panel("Sparsity during gradual pruning", "epoch", "sparsity (%)", tuple(sparsity), integer_x=True,
              ylim=(0.0, 100.0)),
        Panel(f"{title} during gradual pruning", "epoch", ylabel, tuple(score), integer_x=True, reflines=hlines))
        if any(not math.isnan(y) for line in panel.lines for y in line.y)]
    if not panels:
        return None
    return FigureData(tuple(panels), ncols=len(panels), size_in=(5.5 * len(panels), 4.2), legend="panels")


def _values(rows: Sequence[dict[str, Any]], key: str, scale: float) -> tuple[float, ...]:
    return tuple(float("nan") if finite(r.get(key)) is None else finite(r.get(key)) * scale for r in rows)
