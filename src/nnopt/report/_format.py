"""Number and name formatting shared by the page, the plots and the verdict (one style everywhere)."""

from __future__ import annotations

import math
from typing import Any

# Metrics that are fractions in the files and read best as percentages.
PERCENT_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc"})
METRIC_NAMES = {"roc_auc": "ROC AUC", "r2": "R²", "mse": "MSE", "mae": "MAE", "f1": "F1"}
LR_SOURCES = {"auto": "LR finder", "grid": "best of grid", "given": "given", "default": "optimizer default"}
# matplotlib's tab10, then the light half of tab20: a fixed optimizer -> colour table, ordered by rank.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, not a number, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def base_metric(name: str) -> str:
    """'test_accuracy' -> 'accuracy' (the split prefix and an aggregate suffix removed)."""
    for suffix in ("_mean", "_std"):
        name = name.removesuffix(suffix)
    for prefix in ("train_", "val_", "test_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def metric_label(name: str) -> str:
    """'val_roc_auc' -> 'val ROC AUC', 'test_accuracy' -> 'test accuracy'."""
    base = base_metric(name)
    split = name[: len(name) - len(base)].rstrip("_").replace("_", " ")
    pretty = METRIC_NAMES.get(base, base.replace("_", " "))
    return f"{split} {pretty}".strip()


def fmt_metric(name: str, value: Any, std: Any = None, unit: bool = True) -> str:
    """96.2 ± 0.4 % for a percentage metric, 0.8123 for r2, 0.0342 for a loss; '—' when missing."""
    v = finite(value)
    if v is None:
        return "—"
    s = finite(std)
    if base_metric(name) in PERCENT_METRICS:
        text = f"{100 * v:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
        return text + (" %" if unit else "")
    return _sig(v) + (f" ± {_sig(s, 2)}" if s is not None else "")


def fmt_target(name: str, value: Any) -> str:
    """The target as a phrase: '95 % val accuracy', 'val R² 0.8'."""
    v = finite(value)
    if v is None:
        return metric_label(name)
    if base_metric(name) in PERCENT_METRICS:
        return f"{100 * v:g} % {metric_label(name)}"
    return f"{metric_label(name)} {v:g}"


def fmt_lr(value: Any) -> str:
    """0.1 -> '0.1', 0.001 -> '1e-3', 0.00316 -> '3.2e-3'."""
    v = finite(value)
    if v is None:
        return "—"
    if v == 0 or 0.01 <= abs(v) < 100:
        return f"{v:.3g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def fmt_seconds(value: Any) -> str:
    v = finite(value)
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f} s"
    return f"{v:.2g} s" if v < 1 else f"{v:.1f} s"


def fmt_number(value: Any, digits: int = 1) -> str:
    """Plain numbers (epochs, steps/s, counts): thousands separated, `digits` decimals below 1000."""
    v = finite(value)
    if v is None:
        return "—" if value is None or not isinstance(value, str) else value
    if v == int(v) and abs(v) >= 1 or abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def fmt_batch(value: Any) -> str:
    if value is None:
        return "optimizer default"
    if value == "full":
        return "full batch"
    return str(value)


def _sig(v: float, digits: int = 4) -> str:
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:.{digits}g}"
    return f"{v:.{digits - 1}e}"


def fmt_ms(value: Any) -> str:
    """Milliseconds to three significant digits: 0.0197, 0.452, 12.3, 1,234 (a dash when missing)."""
    v = finite(value)
    if v is None:
        return "—"
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"
