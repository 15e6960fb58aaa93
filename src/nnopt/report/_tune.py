"""A tune run as plain data: trials.json parsed into TuneTrial rows, and the numbers the page and verdict use.

No Optuna and no matplotlib here (the study is rebuilt for plotting in `_tune_render.py`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nnopt.errors import UsageError
from nnopt.report._format import PERCENT_METRICS, base_metric, finite, fmt_lr, fmt_metric, fmt_number, metric_label
from nnopt.report._load import Run
from nnopt.report._plots import FigureData, Line, Panel, Point

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
# Not an Optuna state: a PRUNED trial with user_attrs "infeasible", which a constraint (max_params, ...) rejected
# before training; it is counted as rejected, never as pruned by the pruner.
REJECTED = "REJECTED"
COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "best": "#d62728"}
EDGE = 0.05  # a best value within 5 % of its range's end (log scale for log ranges) sits "at the edge"


@dataclass(frozen=True)
class TuneTrial:
    number: int
    state: str  # one of STATES, or REJECTED
    values: tuple[float, ...] | None
    params: dict[str, Any]
    distributions: dict[str, str]  # name -> optuna.distributions.distribution_to_json(...) text
    intermediate: tuple[tuple[int, float], ...]  # (epoch, val objective), sorted by epoch
    duration_s: float | None
    epochs_run: int | None
    fail_reason: str | None  # FAIL: user_attrs fail_reason; REJECTED: user_attrs infeasible ("params 25,104 > 20,000")
    user_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuneStudy:
    directions: tuple[str, ...]  # "maximize" / "minimize", one per objective
    objectives: tuple[str, ...]  # metric names: "val_accuracy", "params"
    trials: tuple[TuneTrial, ...]  # by number
    best: tuple[int, ...]  # the best trial, or the Pareto front
    epochs: int | None  # epochs a trial trains when not pruned (config train.epochs)
    params: tuple[str, ...] = field(default=())  # space order, then any other sampled name

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def with_state(self, *states: str) -> list[TuneTrial]:
        return [t for t in self.trials if t.state in states]

    def trial(self, number: int) -> TuneTrial | None:
        return next((t for t in self.trials if t.number == number), None)


def load_tune(run: Run) -> TuneStudy:
    """trials.json (+ config.json for the space order and epochs) -> TuneStudy; bad shapes are UsageErrors."""
    raw = run.files["trials.json"]
    where = run.path / "trials.json"
    if not isinstance(raw, dict) or not isinstance(raw.get("trials"), list):
        raise UsageError(f"{where} holds no 'trials' list; re-run nnopt tune")
    config = run.config
    objectives = [o for o in config.get("objectives") or [] if isinstance(o, dict)]
    directions = raw.get("directions") or [o.get("direction", "maximize") for o in objectives] or ["maximize"]
    names = raw.get("objective_names") or [o.get("metric") for o in objectives]
    names = [str(n) if n else f"objective {i}" for i, n in
             enumerate(list(names) + [None] * (len(directions) - len(names)))][: len(directions)]
    if any(d not in ("maximize", "minimize") for d in directions):
        raise UsageError(f"{where}: directions must be 'maximize' or 'minimize'; got {directions}")
    trials = sorted((_trial(t, len(directions), where) for t in raw["trials"]), key=lambda t: t.number)
    study = TuneStudy(tuple(directions), tuple(names), tuple(trials), (),
                      epochs=_int((config.get("train") or {}).get("epochs") if isinstance(config.get("train"), dict)
                                  else None) or _int(config.get("epochs")))
    best = tuple(n for n in raw.get("best_trials") or [] if isinstance(n, int) and study.trial(n)) \
        or best_numbers(study)
    space = config.get("space") if isinstance(config.get("space"), dict) else {}
    seen = {name for t in trials for name in t.params}
    order = tuple(n for n in space if n in seen) + tuple(sorted(seen - set(space)))
    return TuneStudy(study.directions, study.objectives, study.trials, best, study.epochs, order)


def _trial(raw: Any, n_objectives: int, where) -> TuneTrial:
    if not isinstance(raw, dict) or not isinstance(raw.get("number"), int):
        raise UsageError(f"{where}: every trial needs an integer 'number'; got {str(raw)[:80]}")
    state = str(raw.get("state", "")).upper()
    if state not in STATES:
        raise UsageError(f"{where}: trial {raw['number']} has state {raw.get('state')!r}; "
                         f"expected one of {', '.join(STATES)}")
    values = raw.get("values")
    values = tuple(float(v) for v in values) if isinstance(values, list) and len(values) == n_objectives and all(
        finite(v) is not None for v in values) else None
    steps = []
    for key, value in (raw.get("intermediate_values") or {}).items():
        step, v = _int(key), finite(value)
        if step is not None and v is not None:
            steps.append((step, v))
    attrs = raw.get("user_attrs") if isinstance(raw.get("user_attrs"), dict) else {}
    reason = attrs.get("fail_reason")
    if state == "PRUNED" and attrs.get("infeasible"):
        state, reason = REJECTED, attrs["infeasible"]
    return TuneTrial(number=raw["number"], state=state, values=values,
                     params=dict(raw.get("params") or {}), distributions=dict(raw.get("distributions") or {}),
                     intermediate=tuple(sorted(steps)), duration_s=finite(raw.get("duration_s")),
                     epochs_run=_int(attrs.get("epochs_run")),
                     fail_reason=str(reason) if reason else None, user_attrs=dict(attrs))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


# ---- ranking ---------------------------------------------------------------------------------

def scored(study: TuneStudy) -> list[TuneTrial]:
    return [t for t in study.with_state("COMPLETE") if t.values is not None]


def ranked(study: TuneStudy) -> list[TuneTrial]:
    """Complete trials, best first by the first objective (ties: lower trial number)."""
    sign = -1.0 if study.directions[0] == "maximize" else 1.0
    return sorted(scored(study), key=lambda t: (sign * t.values[0], t.number))


def best_numbers(study: TuneStudy) -> tuple[int, ...]:
    """The best trial, or the non-dominated trials when there are several objectives."""
    done = ranked(study)
    if not study.multi:
        return (done[0].number,) if done else ()
    signs = [1.0 if d == "minimize" else -1.0 for d in study.directions]
    costs = [[s * v for s, v in zip(signs, t.values)] for t in done]
    front = [t.number for t, c in zip(done, costs)
             if not any(all(a <= b for a, b in zip(o, c)) and o != c for o in costs)]
    return tuple(sorted(front))


def epochs_of(trial: TuneTrial) -> int | None:
    """Epochs a trial trained: user_attrs epochs_run, else its last reported epoch."""
    if trial.epochs_run is not None:
        return trial.epochs_run
    return trial.intermediate[-1][0] if trial.intermediate else None


def pruning_savings(study: TuneStudy) -> tuple[int, int] | None:
    """(epochs saved by pruning, epochs complete + pruned trials would have trained unpruned)."""
    pruned = study.with_state("PRUNED")
    if not pruned or not study.epochs:
        return None
    runs = [epochs_of(t) for t in pruned]
    if any(r is None for r in runs):
        return None
    saved = sum(max(0, study.epochs - r) for r in runs)
    return saved, study.epochs * (len(pruned) + len(study.with_state("COMPLETE")))


# ---- formatting ------------------------------------------------------------------------------

def fmt_objective(name: str, value: Any, unit: bool = True) -> str:
    """97.2 % for accuracy-like metrics, 17,226 for counts (params), 0.0342 otherwise."""
    v = finite(value)
    if v is not None and base_metric(name) not in PERCENT_METRICS and v == int(v) and abs(v) >= 1:
        return fmt_number(v)
    return fmt_metric(name, value, unit=unit)


def objective_phrase(name: str, value: Any) -> str:
    """'97.2 % val accuracy', 'val loss 0.0342', '17,226 params'."""
    text, v = fmt_objective(name, value), finite(value)
    if base_metric(name) in PERCENT_METRICS or v is not None and v == int(v) and abs(v) >= 1:
        return f"{text} {metric_label(name)}"
    return f"{metric_label(name)} {text}"


def distribution(trial: TuneTrial, name: str) -> dict[str, Any]:
    """The parsed distribution JSON: {"name": "FloatDistribution", "attributes": {...}} (empty when unknown)."""
    text = trial.distributions.get(name)
    try:
        parsed = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def fmt_param(value: Any, dist: dict[str, Any] | None = None) -> str:
    """lr 0.0031 -> '3.1e-3' (log ranges), 0.9 -> '0.9', 128 -> '128', 'adam' -> 'adam'."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    attrs = (dist or {}).get("attributes") or {}
    if attrs.get("log") or value != 0 and not 1e-3 <= abs(value) < 1e4:
        return fmt_lr(value)
    return f"{value:.3g}"


def param_text(trial: TuneTrial, order: Sequence[str]) -> str:
    """'optimizer adam, lr 3.1e-3, hidden 128'."""
    names = [n for n in order if n in trial.params] + sorted(set(trial.params) - set(order))
    return ", ".join(f"{n} {fmt_param(trial.params[n], distribution(trial, n))}" for n in names)


def at_edge(trial: TuneTrial, name: str) -> str | None:
    """'upper' / 'lower' when a numeric value lies within EDGE of its range's end, else None."""
    attrs = distribution(trial, name).get("attributes") or {}
    value, low, high = finite(trial.params.get(name)), finite(attrs.get("low")), finite(attrs.get("high"))
    if value is None or low is None or high is None or high <= low or "choices" in attrs:
        return None
    if attrs.get("log") and low > 0 and value > 0:
        value, low, high = math.log(value), math.log(low), math.log(high)
    position = (value - low) / (high - low)
    return "upper" if position >= 1 - EDGE else "lower" if position <= EDGE else None


# ---- the intermediate-values plot (Optuna's own puts every trial in a legend and hides pruning) -----

def intermediate_figure(study: TuneStudy) -> FigureData | None:
    """The val objective per epoch: complete trials blue, pruned orange ending in ×, the best trial(s) red."""
    name = study.objectives[0]
    scale, unit = (100.0, " (%)") if base_metric(name) in PERCENT_METRICS else (1.0, "")
    drawn = [t for t in study.with_state("COMPLETE", "PRUNED") if t.intermediate]
    if not drawn:
        return None
    best = set(study.best)
    lines, points, labelled = [], [], set()
    for trial in sorted(drawn, key=lambda t: t.number in best):  # best trials drawn last, on top
        x = tuple(float(s) for s, _ in trial.intermediate)
        y = tuple(v * scale for _, v in trial.intermediate)
        if trial.number in best:
            label = f"best (trial {trial.number})" if len(best) == 1 else "Pareto trials"
            kind, width, alpha = "best", 2.4, 1.0
        else:
            label, kind, width, alpha = trial.state.lower(), trial.state, 1.1, 0.55
        lines.append(Line(label if label not in labelled else None, x, y, COLORS[kind], width=width, alpha=alpha,
                          markers=len(x) <= 30))
        labelled.add(label)
        if trial.state == "PRUNED":
            points.append(Point(x[-1], y[-1], COLORS["PRUNED"], "x"))
    if not any(math.isfinite(v) for line in lines for v in line.y):
        return None
    n_pruned = sum(t.state == "PRUNED" for t in drawn)
    label = metric_label(name)
    title = f"{label[:1].upper()}{label[1:]} per epoch of each trial".replace("Val ", "Validation ")
    if n_pruned:
        title += f" (× = pruned, {n_pruned} trial{'s' if n_pruned != 1 else ''})"
    panel = Panel(title, "epoch", f"{metric_label(name)}{unit}", tuple(lines), tuple(points), integer_x=True)
    return FigureData((panel,), ncols=1, size_in=(8.0, 4.8), legend="panels")
