"""An architecture search as plain data: the tune study plus each candidate's model and measured costs, the
Pareto fronts of score against params and latency, the figure data, and the verdict.

A search is a tune run whose trials carry user_attrs "model", "params", "flops", "size_kb", "latency_ms"; a
candidate that a constraint rejected before training is a PRUNED trial with "infeasible" (state REJECTED here).
No Optuna and no matplotlib here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nnopt.report._format import PERCENT_METRICS, base_metric, finite, fmt_metric, fmt_ms, fmt_number, metric_label
from nnopt.report._load import Run
from nnopt.report._plots import FigureData, Line, Panel, Point, RefLine
from nnopt.report._tune import COLORS, REJECTED, TuneStudy, TuneTrial, load_tune, objective_phrase

TOP = 10
COSTS = ("params", "flops", "size_kb", "latency_ms")  # measured on the built model, not by training
CONSTRAINTS = {"max_params": "params", "max_flops": "flops", "max_size_kb": "size_kb",
               "max_latency_ms": "latency_ms"}
AXES = (("params", "parameters (log scale)", "parameters"),
        ("latency_ms", "latency in ms (batch 1, 1 thread, median; log scale)", "latency"))
KEPT_COLOR = "#ffbf00"
LIMIT_COLOR = "#555555"


@dataclass(frozen=True)
class Candidate:
    trial: TuneTrial
    model: str | None  # the model spec string: "mlp:128,64:act=gelu"
    costs: dict[str, float]  # params, flops, size_kb, latency_ms (those measured)
    score: float | None  # the validation score (None: rejected, failed or unfinished)

    @property
    def number(self) -> int:
        return self.trial.number


@dataclass(frozen=True)
class Search:
    study: TuneStudy
    candidates: tuple[Candidate, ...]  # every trial, by number
    score_index: int  # which objective is the validation score
    constraints: dict[str, float]  # max_params -> 20000, ...
    kept: int | None  # the trial retrained in best/
    retrained: dict[str, Any]  # best/summary.json's metrics ({} when absent)

    @property
    def score_name(self) -> str:
        return self.study.objectives[self.score_index]

    @property
    def maximize(self) -> bool:
        return self.study.directions[self.score_index] == "maximize"

    def trained(self) -> list[Candidate]:
        """Complete candidates with a score, best first (ties: lower trial number)."""
        sign = -1.0 if self.maximize else 1.0
        done = [c for c in self.candidates if c.trial.state == "COMPLETE" and c.score is not None]
        return sorted(done, key=lambda c: (sign * c.score, c.number))

    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.trial.state == REJECTED]

    def candidate(self, number: int | None) -> Candidate | None:
        return next((c for c in self.candidates if c.number == number), None)

    def table_rows(self) -> list[Candidate]:
        """The architecture table: the top TOP trained, or the Pareto set of several objectives (by score)."""
        trained = self.trained()
        if not self.study.multi:
            return trained[:TOP]
        front = set(self.study.best)
        return [c for c in trained if c.number in front] or trained[:1]


def load_search(run: Run) -> Search:
    study = load_tune(run)
    study = dataclasses.replace(study, params=_param_order(study))
    raw = run.files["trials.json"]
    index = next((i for i, name in enumerate(study.objectives) if name not in COSTS), 0)
    candidates = tuple(_candidate(t, index) for t in study.trials)
    limits = raw.get("constraints") if isinstance(raw.get("constraints"), dict) else run.config.get("constraints")
    constraints = {k: v for k, v in ((k, finite(v)) for k, v in (limits or {}).items()) if v is not None}
    kept = raw.get("best_yaml_trial")
    if not isinstance(kept, int) or isinstance(kept, bool) or study.trial(kept) is None:
        kept = study.best[0] if study.best else None
    summary = run.files.get("best/summary.json")
    metrics = summary.get("metrics") if isinstance(summary, dict) and isinstance(summary.get("metrics"), dict) \
        else {}
    search = Search(study, candidates, index, constraints, kept, metrics)
    chosen = search.candidate(kept)
    if chosen is None or chosen.score is None:  # no usable best_trials: the top score
        search = dataclasses.replace(search, kept=search.trained()[0].number if search.trained() else None)
    return search


def _candidate(trial: TuneTrial, index: int) -> Candidate:
    attrs = trial.user_attrs
    costs = {k: v for k, v in ((k, finite(attrs.get(k))) for k in COSTS) if v is not None}
    if "params" not in costs and finite(attrs.get("n_params")) is not None:
        costs["params"] = finite(attrs["n_params"])
    score = trial.values[index] if trial.values is not None and trial.state == "COMPLETE" else None
    return Candidate(trial, str(attrs["model"]) if attrs.get("model") else None, costs, score)


def _param_order(study: TuneStudy) -> tuple[str, ...]:
    """The sampled names in the order the trials list them (depth, width_1, ..., width_6, act, ...): each new
    name goes right after the name before it in its trial."""
    order: list[str] = []
    for trial in study.trials:
        previous = None
        for name in trial.params:
            if name not in order:
                order.insert(order.index(previous) + 1 if previous is not None else len(order), name)
            previous = name
    return tuple(order)


# ---- Pareto fronts ---------------------------------------------------------------------------

def front(candidates: list[Candidate], cost: str, maximize: bool) -> list[Candidate]:
    """The candidates no other beats on both the score and `cost` (lower), by increasing cost."""
    sign = -1.0 if maximize else 1.0
    points = [(c.costs[cost], sign * c.score, c) for c in candidates if cost in c.costs and c.score is not None]
    best = [c for x, y, c in points if not any(a <= x and b <= y and (a, b) != (x, y) for a, b, _ in points)]
    return sorted(best, key=lambda c: (c.costs[cost], sign * c.score, c.number))


def front_figure(search: Search) -> FigureData | None:
    """Score against params and against latency (log x): trained candidates, each panel's front as a staircase,
    the kept trial starred, a constraint's limit dashed. A cost no trained candidate has is left out; None when
    no candidate was trained."""
    name = search.score_name
    scale, unit = (100.0, " (%)") if base_metric(name) in PERCENT_METRICS else (1.0, "")
    label = metric_label(name)
    title = (label[:1].upper() + label[1:]).replace("Val ", "Validation ")
    trained = search.trained()
    kept = search.candidate(search.kept)
    panels = []
    for cost, xlabel, noun in AXES:
        drawn = [c for c in trained if cost in c.costs and c.costs[cost] > 0]
        if not drawn:
            continue
        best = front(drawn, cost, search.maximize)
        lines = [Line(f"trained ({len(drawn)})", tuple(c.costs[cost] for c in drawn),
                      tuple(c.score * scale for c in drawn), COLORS["COMPLETE"], style="none", alpha=0.6,
                      markers=True, marker_size=6),
                 Line(f"Pareto front ({len(best)})", tuple(c.costs[cost] for c in best),
                      tuple(c.score * scale for c in best), COLORS["best"], width=1.6, markers=True, marker_size=6,
                      drawstyle="steps-post")]
        points, vlines = [], []
        if kept is not None and kept in drawn:
            points.append(Point(kept.costs[cost], kept.score * scale, KEPT_COLOR, "*", f"kept (trial {kept.number})"))
        limit = search.constraints.get(f"max_{cost}")
        if limit is not None and limit > 0:
            vlines.append(RefLine("x", limit, f"max_{cost} {fmt_limit(limit)}", LIMIT_COLOR))
        panels.append(Panel(f"{title} against {noun}", xlabel, f"{label}{unit}", tuple(lines), tuple(points),
                            xscale="log", reflines=tuple(vlines), log_counts=cost in ("params", "flops")))
    if not panels:
        return None
    return FigureData(tuple(panels), ncols=len(panels), size_in=(6.0 * len(panels), 4.8), legend="panels",
                      title=f"Trained architectures by {label} and cost: red = Pareto front, star = kept")


# ---- formatting ------------------------------------------------------------------------------

def fmt_limit(value: Any) -> str:
    """20000 -> '20,000', 0.05 -> '0.05'."""
    v = finite(value)
    if v is None:
        return "—"
    return f"{v:,.0f}" if v == int(v) else f"{v:g}"


def fmt_kb(value: Any) -> str:
    v = finite(value)
    return "—" if v is None else f"{v:,.1f}"


def candidate_phrase(search: Search, c: Candidate) -> str:
    """'84.4 % val accuracy, 9,610 params, 0.027 ms'."""
    parts = [objective_phrase(search.score_name, c.score)]
    if "params" in c.costs:
        parts.append(f"{fmt_number(c.costs['params'])} params")
    if "latency_ms" in c.costs:
        parts.append(f"{fmt_ms(c.costs['latency_ms'])} ms")
    return ", ".join(parts)


def rejections(search: Search) -> dict[str, int]:
    """constraint -> how many candidates it rejected (a candidate over two limits counts for both)."""
    counts = dict.fromkeys(search.constraints, 0)
    by_metric = {metric: key for key, metric in CONSTRAINTS.items()}
    for c in search.rejected():
        broken = {by_metric.get(part.strip().split(" ")[0]) for part in (c.trial.fail_reason or "").split(";")}
        for key in sorted(k for k in broken if k is not None):
            counts[key] = counts.get(key, 0) + 1
    return counts


def constraint_text(search: Search, keys: Iterable[str] | None = None) -> str:
    """'max_params 20,000 and max_latency_ms 0.05'."""
    keys = list(search.constraints if keys is None else keys)
    named = [f"{k} {fmt_limit(search.constraints[k])}" if k in search.constraints else k for k in keys]
    return " and ".join(named)


# ---- verdict ---------------------------------------------------------------------------------

def search_verdict(search: Search) -> list[str]:
    """The answer first: the best (kept) architecture, its score, size and latency, and what was trained or
    rejected; then, for several objectives, the front's range."""
    trained, rejected = search.trained(), search.rejected()
    counts = f"{len(trained):,} trained, {_rejected_text(search, rejected)}"
    kept = search.candidate(search.kept)
    if kept is None or kept.score is None:
        lead = f"No candidate finished training ({len(trained):,} trained"
        return [f"{lead}, {_rejected_text(search, rejected)}); there is no architecture to recommend yet"
                + ("; loosen the constraints or search smaller architectures." if rejected else ".")]
    head = "Kept" if search.study.multi else "Best"
    sentences = [f"{head}: {kept.model or f'trial {kept.number}'} — {candidate_phrase(search, kept)}; {counts}."]
    sentences += _retrained(search)
    if search.study.multi:
        sentences += _pareto(search, trained)
    else:
        sentences += _trade_off(search, kept, trained)
    return sentences


def _rejected_text(search: Search, rejected: list[Candidate]) -> str:
    if not search.constraints and not rejected:
        return "none rejected (no constraints were set)"
    if not rejected:
        return f"none rejected by {constraint_text(search)}"
    used = {k: n for k, n in rejections(search).items() if n}
    if len(used) <= 1:
        return f"{len(rejected):,} rejected by {constraint_text(search, used or None) or 'constraints'} before training"
    detail = ", ".join(f"{n:,} over {constraint_text(search, [k])}" for k, n in used.items())  # may overlap
    return f"{len(rejected):,} rejected before training ({detail})"


def _retrained(search: Search) -> list[str]:
    test = search.retrained.get("test") if isinstance(search.retrained.get("test"), dict) else {}
    base = base_metric(search.score_name)
    value = finite(test.get(base))
    if value is None:
        return []
    return [f"Retrained in best/, it scores {fmt_metric(base, value)} {metric_label('test_' + base)} on the held-out "
            "test split (its own report: best/report.html; nnopt train --config best.yaml reproduces it)."]


def _pareto(search: Search, trained: list[Candidate]) -> list[str]:
    rows = search.table_rows()
    objectives = " and ".join(f"{metric_label(m)} ({d})" for m, d in zip(search.study.objectives,
                                                                         search.study.directions))
    if len(rows) < 2:
        return []

    def point(c: Candidate) -> str:
        return f"{c.model or f'trial {c.number}'} ({candidate_phrase(search, c)})"

    return [f"{len(rows)} of {len(trained):,} trained architectures form the Pareto front of {objectives}, "
            f"from {point(rows[0])} to {point(rows[-1])}."]


def _trade_off(search: Search, kept: Candidate, trained: list[Candidate]) -> list[str]:
    """The next smaller architecture on the score-params front, when there is one."""
    steps = front(trained, "params", search.maximize)
    if kept not in steps or steps.index(kept) == 0:
        return []
    smaller = steps[steps.index(kept) - 1]
    ratio = smaller.costs["params"] / kept.costs["params"]
    return [f"The next smaller architecture on the front, {smaller.model or f'trial {smaller.number}'}, reaches "
            f"{objective_phrase(search.score_name, smaller.score)} with {fmt_number(smaller.costs['params'])} params "
            f"({ratio:.2g}× as many)."]
