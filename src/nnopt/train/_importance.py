"""Permutation importance: how much a score drops when one column's values are shuffled across rows.

The method of scikit-learn's `sklearn.inspection.permutation_importance` (Breiman 2001), with the same
permutations for the same seed, extended to groups of columns: the encoded columns of one raw table column (its
value and missing indicator, or every one-hot level) are permuted together, with the same row order, so a
categorical column gets one importance and a permuted row never holds two levels at once. scikit-learn's function
permutes one column at a time, hence this loop; for single columns it gives scikit-learn's numbers.

Permuting rows commutes with nnopt's per-column scaling, so the scaled inputs are permuted as they are.
`write_importance` runs at the end of a training run on a table: K forward passes over the validation rows
(at most IMPORTANCE_MAX_ROWS of them) per column, written to the run directory's importance.json for the
report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.data import Data, column_groups
from nnopt.errors import UsageError, did_you_mean, param
from nnopt.fileio import atomic_write_json
from nnopt.train._chunk import scoring_chunk
from nnopt.train._metrics import HIGHER_IS_BETTER, compute_metrics, metric_names
from nnopt.train._setup import default_loss, make_loss, training_targets

IMPORTANCE_REPEATS = 5
# rows scored per permutation; more are sampled (seeded), as scikit-learn's max_samples samples
IMPORTANCE_MAX_ROWS = 10_000


def importance_metric(task: str, metric: str | None) -> str:
    """The metric whose drop is measured: accuracy or R² unless one of the task's metrics is named."""
    if metric is None:
        return "accuracy" if task == "classification" else "r2"
    names = metric_names(task)
    if metric not in names:
        raise UsageError(f"{param('metric')} '{metric}' is not a {task} metric{did_you_mean(str(metric), names)} "
                         f"choices: {', '.join(names)}")
    return metric


def permutations(n: int, repeats: int, seed: int) -> np.ndarray:
    """(repeats, n) row orders: scikit-learn's for `random_state=seed` — one seed drawn from RandomState(seed), then
    one index array shuffled in place per repeat and applied to the column as permuted so far."""
    state = np.random.RandomState(np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1))
    index, order, out = np.arange(n), np.arange(n), np.empty((repeats, n), dtype=np.int64)
    for r in range(repeats):
        state.shuffle(index)
        order = order[index]
        out[r] = order
    return out


def permutation_scores(forward: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, Y: torch.Tensor,
                       groups: Mapping[str, Sequence[int]], *, task: str, n_outputs: int,
                       target_scale: Any = None, metric: str | None = None, repeats: int = IMPORTANCE_REPEATS,
                       seed: int = 0, max_rows: int | None = IMPORTANCE_MAX_ROWS) -> list[dict[str, Any]]:
    """One entry per group, most important first: {column, importance_mean, importance_std, metric, baseline}.

    forward: scaled inputs -> raw outputs; X: scaled inputs (n, features); Y: targets as the loss takes them
    (train.training_targets). The importance is the drop in `metric` (accuracy / R² by default) when the group's
    columns are permuted, or the rise for a lower-is-better metric (loss, mse, mae); mean and (population) std
    over `repeats` permutations."""
    metric = importance_metric(task, metric)
    if max_rows is not None and len(X) > max_rows:
        rows = torch.from_numpy(np.sort(np.random.RandomState(seed).choice(len(X), max_rows, replace=False)))
        X, Y = X[rows], Y[rows]
    loss_fn = make_loss(default_loss(task, n_outputs), task, n_outputs)
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0

    def score(inputs: torch.Tensor) -> float | None:
        outputs = forward(inputs)
        loss = float(loss_fn(outputs, Y)) if metric == "loss" else 0.0
        return compute_metrics(task, outputs, Y, loss, [metric], target_scale).get(metric)

    baseline = score(X)
    if baseline is None:
        raise UsageError(f"{metric} cannot be computed on these {len(X)} rows; give more rows or another "
                         f"{param('metric')}")
    orders = torch.from_numpy(permutations(len(X), repeats, seed))
    results = []
    for name, columns in groups.items():
        where = torch.as_tensor(list(columns), dtype=torch.long)
        drops = []
        for order in orders:
            permuted = X.clone()
            permuted[:, where] = X[:, where][order]  # one row order for every column of the group
            value = score(permuted)
            drops.append(np.nan if value is None else sign * (baseline - value))
        drops = np.asarray(drops, dtype=np.float64)
        results.append({"column": name, "importance_mean": _clean(drops.mean()), "importance_std": _clean(drops.std()),
                        "metric": metric, "baseline": baseline})
    # most important first; ties keep the columns' order, a score that could not be computed goes last
    return sorted(results, key=lambda e: np.inf if e["importance_mean"] is None else -e["importance_mean"])


def forward_of(net: nn.Module, chunk: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network in eval mode over rows in chunks (None: scoring_chunk's, as training scores), without
    autograd."""
    sizes: dict[tuple[int, ...], int] = {}

    @torch.inference_mode()
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        net.eval()
        shape = tuple(inputs.shape[1:])
        if not chunk and shape not in sizes:  # measured once: every permutation scores rows of this shape
            sizes[shape] = scoring_chunk(net, shape, inputs.dtype)
        step = chunk or sizes[shape]
        return torch.cat([net(inputs[i:i + step]) for i in range(0, len(inputs), step)])
    return forward


def write_importance(run_dir: Path, net: nn.Module, data: Data, seed: int = 0) -> Path | None:
    """importance.json for a run on a table: each raw column's importance on the validation rows.

    Nothing is written for data that is not a table, or with fewer than two validation rows (and an earlier
    run's file in the directory is removed, so the report never shows another run's columns)."""
    table = (data.preprocessing or {}).get("table")
    if not table or len(data.val) < 2:
        (run_dir / "importance.json").unlink(missing_ok=True)
        return None
    device = next(net.parameters(), torch.zeros(0)).device
    X = data.val.X.to(device).reshape(len(data.val), -1)
    Y = training_targets(data.val.y.to(device), data.task, data.n_outputs)
    columns = permutation_scores(forward_of(net), X, Y, column_groups(table), task=data.task,
                                 n_outputs=data.n_outputs, target_scale=data.target_scale, seed=seed)
    rows = min(len(X), IMPORTANCE_MAX_ROWS)
    return atomic_write_json(run_dir / "importance.json",
                             importance_file(columns, "val", rows, IMPORTANCE_REPEATS, seed))


def importance_file(columns: list[dict[str, Any]], split: str, rows: int, repeats: int, seed: int) -> dict[str, Any]:
    """The content of importance.json (a train run's, or an evaluation's)."""
    return {"method": "permutation", "split": split, "rows": rows, "repeats": repeats, "seed": seed,
            "metric": columns[0]["metric"] if columns else None,
            "baseline": columns[0]["baseline"] if columns else None, "columns": columns}


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
