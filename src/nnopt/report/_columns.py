"""The Columns section of a train report on a table: each raw column's type and treatment (config.json's
data_info.columns) with its permutation importance on the validation rows (importance.json), most important first.

An HTML table with a bar per column, not a PNG: the numbers are the content, and the bar only orders them by eye.
"""

from __future__ import annotations

from typing import Any

from nnopt.report import _html as h
from nnopt.report._format import PERCENT_METRICS, base_metric, finite, fmt_metric, fmt_number, metric_label

BAR_PX = 160  # width of the longest bar


def columns_section(config: dict[str, Any], importance: Any) -> str | None:
    """The section, or None for a run that did not train on a table."""
    info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    described = [c for c in info.get("columns") or [] if isinstance(c, dict) and c.get("column") is not None]
    if not described:
        return None
    scored = _scores(importance)
    metric = str(importance.get("metric") or "") if scored else ""
    order = [name for name in scored if any(c["column"] == name for c in described)]
    order += [c["column"] for c in described if c["column"] not in scored]
    by_name = {c["column"]: c for c in described}
    longest = max([finite(e.get("importance_mean")) or 0.0 for e in scored.values()] + [0.0])
    rows = []
    for name in order:
        column, entry = by_name[name], scored.get(name)
        mean = finite(entry.get("importance_mean")) if entry else None
        cells = [name, column.get("type") or "—", column.get("treatment") or "—"]
        if scored:
            cells += [_bar(mean, longest),
                      "—" if entry is None else fmt_metric(metric, mean, entry.get("importance_std"), unit=False)]
        rows.append(cells)
    headers = ["column", "type", "treatment"]
    if scored:
        unit = " (points)" if base_metric(metric) in PERCENT_METRICS else ""
        headers += ["", f"importance: drop in val {metric_label(metric)}{unit}"]
    table = h.table(headers, rows, left=4 if scored else 3, raw_columns=(3,) if scored else ())
    dropped = info.get("target_missing_rows") or 0
    rows_note = (f'<p class="note">{fmt_number(dropped)} row{"" if dropped == 1 else "s"} without a target value '
                 "left out before the split.</p>\n") if dropped else ""
    return h.section("Columns", _note(importance, metric, len(described)) + rows_note + _why_notes(described)
                     + table)


def _why_notes(described: list[dict[str, Any]]) -> str:
    """One line per column whose reading needs a word: a few text cells that kept it from being numbers (named,
    with their count), or numbers written with a decimal comma or thousands separators."""
    lines = [f"<code>{h.esc(str(c['column']))}</code>: {h.esc(str(c['why']))}" for c in described
             if isinstance(c.get("why"), str) and (c["why"].startswith("text: '") or "decimal comma" in c["why"]
                                                   or "thousands separators" in c["why"])]
    return "".join(f'<p class="note">{line}.</p>\n' for line in lines)


def _scores(importance: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(importance, dict) or not isinstance(importance.get("columns"), list):
        return {}
    return {str(e["column"]): e for e in importance["columns"] if isinstance(e, dict) and "column" in e}


def _note(importance: Any, metric: str, n_columns: int) -> str:
    if not _scores(importance):
        return (f'<p class="note">The {fmt_number(n_columns)} columns of the table and what training made of '
                "them. No permutation importance was computed (the run had no validation rows, or did not finish); "
                "<code>nnopt evaluate RUN_DIR --importance</code> computes it on chosen rows.</p>\n")
    baseline = fmt_metric(metric, importance.get("baseline"))
    rows, repeats = fmt_number(importance.get("rows")), fmt_number(importance.get("repeats"))
    return (f'<p class="note">Permutation importance on {rows} validation rows (val {h.esc(metric_label(metric))} '
            f"{h.esc(baseline)}): how much the score drops when a column's values are shuffled across the rows, "
            f"mean ± standard deviation over {repeats} shuffles; a one-hot column's levels and a missing-value "
            "indicator move with their column. Near zero or below: the model does not rely on the column.</p>\n")


def _bar(mean: float | None, longest: float) -> str:
    if mean is None or mean <= 0 or longest <= 0:
        return ""
    width = max(1, round(BAR_PX * mean / longest))
    return (f'<span style="display:inline-block;width:{width}px;height:10px;background:#1f77b4;'
            'border-radius:2px"></span>')
