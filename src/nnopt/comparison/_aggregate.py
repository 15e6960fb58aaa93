"""From per-seed runs to one ranked row per optimizer: mean ± std of every final metric, time to target."""

from __future__ import annotations

import statistics
from typing import Any

from nnopt.comparison._spec import Target


def time_to_target(history: list[dict[str, Any]], target: Target | None) -> tuple[int | None, float | None]:
    if target is None:
        return None, None
    for row in history:
        if target.reached(row):
            return row["epoch"], row["time_s"]
    return None, None


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else 0.0)


def summarize(runs: list[dict[str, Any]], order: list[str], lr_sources: dict[str, str], primary: str,
              higher_is_better: bool, target: Target | None) -> list[dict[str, Any]]:
    """One row per optimizer (in `order`), ranked by the mean of `primary` (e.g. test_accuracy)."""
    rows = []
    for name in order:
        mine = [r for r in runs if r["optimizer"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        row: dict[str, Any] = {"rank": None, "optimizer": name, "lr": mine[0]["lr"], "lr_source": lr_sources[name],
                               "seeds": len(mine), "diverged": len(mine) - len(ok)}
        keys = sorted({k for r in ok for k in r["final"]})
        for key in keys:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([r["final"].get(key) for r in ok])
        reached = [r for r in ok if r.get("epochs_to_target") is not None]
        row["epochs_to_target_mean"] = _mean_std([r["epochs_to_target"] for r in reached])[0]
        row["time_to_target_s_mean"] = _mean_std([r["time_to_target_s"] for r in reached])[0]
        row["target_reached"] = len(reached) if target is not None else None
        row["steps_per_s_mean"] = _mean_std([r["steps_per_s"] for r in ok])[0]
        row["wall_s_mean"] = _mean_std([r["wall_s"] for r in ok])[0]
        rows.append(row)
    sign = -1 if higher_is_better else 1

    def sort_key(row: dict[str, Any]) -> tuple:
        value = row.get(f"{primary}_mean")
        return (value is None, sign * value if value is not None else 0.0)

    rows.sort(key=sort_key)  # stable: ties keep the order the optimizers were given in
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
