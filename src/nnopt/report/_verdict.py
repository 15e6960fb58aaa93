"""The plain-language verdict of a compare run: a pure function of results.json and config.json."""

from __future__ import annotations

from typing import Any

from nnopt.report._format import LR_SOURCES, base_metric, finite, fmt_batch, fmt_lr, fmt_metric, fmt_seconds, \
    fmt_target, metric_label
from nnopt.report._plots import ranked_rows


def primary_metric(results: dict[str, Any], config: dict[str, Any]) -> str:
    """The base name of the ranking metric: 'accuracy', 'r2', ..."""
    name = results.get("primary_metric") or config.get("primary_metric")
    if not name:
        name = "r2" if config.get("task") == "regression" else "accuracy"
    return base_metric(str(name))


def verdict(results: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Sentences answering 'which optimizer, learning rate and batch mode?', best finding first."""
    rows = ranked_rows(results)
    if not rows:
        return ["The results hold no optimizer; nothing to compare."]
    metric = primary_metric(results, config)
    test_key = f"test_{metric}"
    scored = [r for r in rows if finite(r.get(f"{test_key}_mean")) is not None and not _all_diverged(r)]
    sentences = []
    if not scored:
        sentences.append("Every optimizer diverged or produced no test score; nothing to rank — "
                         "try lower learning rates.")
    else:
        sentences += _ranking(scored, test_key, config)
    sentences += _target(rows, config)
    sentences += _diverged(rows)
    if not config.get("target_metric"):
        sentences += _wall_time(rows)
    return sentences


def _ranking(scored: list[dict[str, Any]], key: str, config: dict[str, Any]) -> list[str]:
    best = scored[0]
    label = metric_label(key)
    score = fmt_metric(key, best.get(f"{key}_mean"), _std(best, key))
    # Scores equal at the precision shown (31.8 % and 31.8 %) are a tie: ranking one of them first or last
    # would claim a difference the reader cannot see.
    shown = [fmt_metric(key, r.get(f"{key}_mean")) for r in scored]
    tied_first = [r["optimizer"] for r, text in zip(scored, shown) if text == shown[0]]
    tied_last = [r["optimizer"] for r, text in zip(scored, shown) if text == shown[-1]]
    if len(scored) == 1:
        first = f"{best['optimizer']} reached {score} {label}"
    elif len(tied_first) == len(scored):
        first = f"{_join(tied_first)} tied with {shown[0]} {label} (equal at the precision shown)"
    else:
        first = (f"{best['optimizer']} ranked first with {score} {label}" if len(tied_first) == 1
                 else f"{_join(tied_first)} tied for first with {shown[0]} {label}")
        first += (f"; {tied_last[0]} was last with {shown[-1]}" if len(tied_last) == 1
                  else f"; {_join(tied_last)} tied for last with {shown[-1]}")
    sentences = [first + "."]
    if len(scored) > 1 and scored[1]["optimizer"] not in tied_first:  # a tie at the shown precision is said above
        runner = scored[1]
        gap = abs(best[f"{key}_mean"] - runner[f"{key}_mean"])
        noise = max(_std(best, key) or 0.0, _std(runner, key) or 0.0)
        if noise > 0 and gap <= noise * (1 + 1e-9):
            sentences.append(f"{runner['optimizer']} ({fmt_metric(key, runner[f'{key}_mean'], _std(runner, key))})"
                             f" is within one standard deviation of {best['optimizer']}: treat them as tied.")
    source = LR_SOURCES.get(str(best.get("lr_source")), None)
    choice = f"Use {best['optimizer']} at lr {fmt_lr(best.get('lr'))}" + (f" ({source})" if source else "")
    batch = best.get("batch_size", config.get("batch_size"))
    if batch == "full":
        choice += " with full-batch steps"
    elif batch is not None:
        choice += f" with batch size {fmt_batch(batch)}"
    sentences.append(choice + ".")
    return sentences


def _target(rows: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    target = config.get("target_metric")
    if not isinstance(target, dict) or not target.get("name"):
        return []
    phrase = fmt_target(str(target["name"]), target.get("value"))
    epochs = config.get("epochs")
    within = f" within {epochs} epochs" if epochs else ""
    reached = sorted((r for r in rows if (finite(r.get("target_reached")) or 0) > 0
                      and finite(r.get("time_to_target_s_mean")) is not None),
                     key=lambda r: r["time_to_target_s_mean"])
    if not reached:
        return [f"No optimizer reached {phrase}{within}."]
    first = reached[0]
    if len(reached) == 1:
        sentences = [f"Only {first['optimizer']} reached {phrase}, after {_when(first)} on average."]
    else:
        slower = [reached[1]] if len(reached) == 2 else [reached[1], reached[-1]]
        others = " and ".join(f"{_ratio(first, r)} sooner than {r['optimizer']} "
                              f"({fmt_seconds(r['time_to_target_s_mean'])})" for r in slower)
        sentences = [f"{first['optimizer']} reached {phrase} first, after {_when(first)} on average: {others}."]
    never = [r["optimizer"] for r in rows if (finite(r.get("target_reached")) or 0) == 0 and not _all_diverged(r)]
    if never:
        sentences.append(f"{_join(never)} never reached it{within}.")
    for r in reached:
        k, n = int(r["target_reached"]), _seeds(r)
        if k < n:
            sentences.append(f"{r['optimizer']} reached it in only {k} of {n} seeds.")
    return sentences


def _when(row: dict[str, Any]) -> str:
    """'1.7 s (13.7 epochs)'."""
    e = finite(row.get("epochs_to_target_mean"))
    return fmt_seconds(row.get("time_to_target_s_mean")) + (f" ({e:.3g} epochs)" if e is not None else "")


def _ratio(fast: dict[str, Any], slow: dict[str, Any]) -> str:
    a, b = fast["time_to_target_s_mean"], slow["time_to_target_s_mean"]
    if a <= 0:
        a, b = finite(fast.get("epochs_to_target_mean")) or 0.0, finite(slow.get("epochs_to_target_mean")) or 0.0
    if a <= 0 or b <= 0:
        return "no slower than"
    ratio = b / a
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"


def _diverged(rows: list[dict[str, Any]]) -> list[str]:
    sentences = []
    for r in rows:
        k, n = int(finite(r.get("diverged")) or 0), _seeds(r)
        if k <= 0:
            continue
        lr = fmt_lr(r.get("lr"))
        if n <= 1:
            sentences.append(f"{r['optimizer']} diverged at lr {lr}; try a lower lr.")
        elif k >= n:
            sentences.append(f"{r['optimizer']} diverged in all {n} seeds at lr {lr}, so it ranks last; "
                             "try a lower lr.")
        else:
            sentences.append(f"{r['optimizer']} diverged in {k} of {n} seeds at lr {lr}.")
    return sentences


def _wall_time(rows: list[dict[str, Any]]) -> list[str]:
    timed = sorted((r for r in rows if finite(r.get("wall_s_mean")) is not None), key=lambda r: r["wall_s_mean"])
    text = "No target metric was set, so time to target was not measured"
    if len(timed) >= 2:
        fast, slow = timed[0], timed[-1]
        text += (f"; a run took {fmt_seconds(fast['wall_s_mean'])} with {fast['optimizer']} and "
                 f"{fmt_seconds(slow['wall_s_mean'])} with {slow['optimizer']} (mean wall-clock)")
    return [text + "."]


def _std(row: dict[str, Any], key: str) -> float | None:
    """The spread over seeds; None unless more than one seed finished."""
    finished = _seeds(row) - int(finite(row.get("diverged")) or 0)
    return finite(row.get(f"{key}_std")) if finished > 1 else None


def _seeds(row: dict[str, Any]) -> int:
    return int(finite(row.get("seeds")) or 0)


def _all_diverged(row: dict[str, Any]) -> bool:
    n = _seeds(row)
    return n > 0 and int(finite(row.get("diverged")) or 0) >= n


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
