"""A tune run's PNGs: the study rebuilt in memory from trials.json, drawn by Optuna's matplotlib backend.

Optuna's plot functions draw with pyplot and `plt.style.use("ggplot")`; every call runs inside
`_pyplot_session()`, which restores rcParams and the interactive state afterwards, closes each figure, keeps
Optuna's logs and ExperimentalWarnings quiet, and picks the Agg backend only when no backend has been chosen
in this process yet (an already chosen one is kept: switching would close the caller's figures). The PNGs
are deterministic: fixed size and dpi, a seeded importance evaluator, no Software metadata; like every
report PNG they carry the plot-areas chunk of _render.png_bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from matplotlib.ticker import LogFormatter

from nnopt.errors import UsageError
from nnopt.report._format import PERCENT_METRICS, base_metric, fmt_lr, metric_label
from nnopt.report._render import STYLE, png_bytes, render_png
from nnopt.report._tune import TuneStudy, intermediate_figure, scored

SEED = 0  # the importance evaluator's forest
# Trees of depth <= 6 (64 leaves): Optuna's fANOVA walks each tree once per split point, so on its default depth
# (64, a leaf per trial) the importances took time quadratic in the trials (18 s at 1000 trials, 2 parameters);
# capped, they take a bounded time and move by <= 0.02 on studies of 50 to 1000 trials.
MAX_DEPTH = 6
# 32 trees instead of Optuna's 64 halve the time (median of 5: 0.55 -> 0.27 s at 1000 trials, 2 parameters) and
# move the importances by <= 0.02 (measured on random studies of 60 x 4, 200 x 6 and 1000 x 2 trials x parameters)
N_TREES = 32
MAX_SLICE_PARAMS = 8


def require_optuna():
    try:
        import optuna
    except ImportError as exc:
        raise UsageError("a tune report needs Optuna; install it with: pip install optuna") from exc
    return optuna


@contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna without its INFO logs and ExperimentalWarnings; the caller's verbosity is restored."""
    optuna = require_optuna()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(verbosity)


def rebuild_study(data: TuneStudy, objective: int | None = None):
    """An in-memory study with one trial per trials.json entry, numbered as in the file; with `objective`, a
    single-objective view of that objective (so Optuna's history, slice and parallel plots draw the best-so-far
    line and colour by it). A RUNNING or WAITING trial, a gap in the numbers, or a trial Optuna refuses becomes
    an empty FAIL placeholder, which no plot draws."""
    optuna = require_optuna()
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    pick = range(len(data.directions)) if objective is None else [objective]
    study = optuna.create_study(directions=[data.directions[i] for i in pick], storage=_read_only_memory())
    study.set_metric_names([metric_label(data.objectives[i]) for i in pick])
    by_number = {t.number: t for t in data.trials}
    frozen = []
    for number in range(max(by_number, default=-1) + 1):
        trial, made = by_number.get(number), None
        if trial is not None and trial.state in ("COMPLETE", "PRUNED", "FAIL"):
            # Optuna gives a pruned single-objective trial its last intermediate value; keep it
            keep = trial.values is not None and (trial.state == "COMPLETE" or trial.state == "PRUNED" and
                                                 not data.multi)
            try:
                made = create_trial(
                    state=TrialState[trial.state], params=trial.params,
                    values=[trial.values[i] for i in pick] if keep else None,
                    distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
                    intermediate_values=dict(trial.intermediate) if trial.state != "FAIL" else None)
            except (ValueError, TypeError, KeyError):
                made = None
        frozen.append(made or create_trial(state=TrialState.FAIL))
    study.add_trials(frozen)
    return study


def _read_only_memory():
    """An InMemoryStorage that hands out its trials without copying them: the rebuilt study is only read (by
    the plots and the importances), and Optuna's history plot deep-copied all of them (50 ms at 1000 trials)."""
    optuna = require_optuna()

    class ReadOnlyMemory(optuna.storages.InMemoryStorage):
        def get_all_trials(self, study_id, deepcopy=True, states=None):
            return super().get_all_trials(study_id, deepcopy=False, states=states)

    return ReadOnlyMemory()


def importance_evaluator():
    """fANOVA with a fixed seed; each distinct (params, target values) is fitted once, so the verdict's
    numbers and the plot's bars come from the same fit (and the forest is not grown twice)."""
    optuna = require_optuna()
    complete = (optuna.trial.TrialState.COMPLETE,)

    class SeededOnce(optuna.importance.BaseImportanceEvaluator):
        def __init__(self) -> None:
            self._inner = optuna.importance.FanovaImportanceEvaluator(seed=SEED, max_depth=MAX_DEPTH,
                                                                     n_trees=N_TREES)
            self._memo: dict[Any, dict[str, float]] = {}

        def evaluate(self, study, params=None, *, target=None):
            trials = study.get_trials(deepcopy=False, states=complete)
            key = (tuple(params or ()), tuple(target(t) if target else tuple(t.values) for t in trials))
            if key not in self._memo:
                self._memo[key] = self._inner.evaluate(study, params=params, target=target)
            return dict(self._memo[key])

    return SeededOnce()


def can_rank_importance(data: TuneStudy) -> bool:
    """fANOVA needs >= 2 complete trials and a parameter, set in all of them, that takes > 1 value."""
    done = scored(data)
    if len(done) < 2:
        return False
    common = set(done[0].params).intersection(*(t.params for t in done[1:]))
    return any(len({repr(t.params[n]) for t in done}) > 1 for n in common)


def param_importances(study, data: TuneStudy, evaluator) -> dict[str, float] | None:
    """Normalised importances for the first objective, largest first; None when they cannot be computed."""
    optuna = require_optuna()
    if not can_rank_importance(data):
        return None
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, target=_target(data),
                                                        normalize=True)
    except (ValueError, RuntimeError):
        return None
    return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))) or None


def _target(data: TuneStudy) -> Callable | None:
    return (lambda t: t.values[0]) if data.multi else None


def _percent(name: str) -> bool:
    return base_metric(name) in PERCENT_METRICS


@contextmanager
def _pyplot_session() -> Iterator[Any]:
    import matplotlib

    try:
        chosen = matplotlib.get_backend(auto_select=False)
    except TypeError:  # matplotlib < 3.10
        chosen = matplotlib.rcParams._get_backend_or_none()
    if chosen is None:
        matplotlib.use("agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(), plt.ioff():
        matplotlib.style.use("default")  # the user's matplotlibrc must not change the bytes
        matplotlib.rcParams.update(STYLE)
        yield plt


def _draw(plt, make: Callable[[], Any], size: tuple[float, float], percent: Callable[[Any], list] | None = None,
          integer_x: bool = False) -> bytes:
    """Call an Optuna plot function in a figure of `size` inches (constrained layout, so colorbars and long
    tick labels fit); `percent(fig)` lists the axes whose values are fractions shown as 94 %."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    with warnings.catch_warnings():
        # one trial gives a zero-width axis range, a crowded figure a layout that cannot fit: both still draw
        warnings.simplefilter("ignore", UserWarning)
        with matplotlib.rc_context({"figure.figsize": size, "figure.constrained_layout.use": True}):
            axes = make()
        fig = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
        try:
            fig.set_size_inches(*size)
            _visible_lines(fig)  # before the formatters: a new colour map resets the colorbar's ticks
            for axis in percent(fig) if percent else []:
                axis.set_major_formatter(PercentFormatter(1.0, symbol=" %"))
            if integer_x:  # trial numbers
                fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
            for ax in fig.axes:  # log axes read 20, 300, 1e-3 (the other plots' style), not 2×10¹
                for axis in (ax.xaxis, ax.yaxis):
                    if axis.get_scale() == "log":
                        axis.set_major_formatter(_LogTicks())
                        axis.set_minor_formatter(_LogTicks(labelOnlyBase=False))
            return png_bytes(fig)
        finally:
            plt.close(fig)


def _visible_lines(fig) -> None:
    """Optuna colours parallel-coordinate lines from the near-white end of Blues for the worst scores, which
    vanish on the white plot: the lightest quarter of the map is left out (the colorbar follows)."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap

    for ax in fig.axes:
        for lines in ax.collections:
            cmap = lines.get_cmap()
            if isinstance(lines, LineCollection) and cmap.name in ("Blues", "Blues_r"):
                shades = np.linspace(0.25, 1.0, cmap.N) if cmap.name == "Blues" else np.linspace(0.0, 0.75, cmap.N)
                lines.set_cmap(ListedColormap(cmap(shades), name=f"{cmap.name} (visible)"))


class _LogTicks(LogFormatter):
    """The log formatter's choice of ticks to label, written 1e-3, 0.01, 20, 300."""

    def __call__(self, x, pos=None):
        if not super().__call__(x, pos):
            return ""
        return f"{x:g}" if 1 <= x < 1e5 else fmt_lr(x)


def _main_y(fig) -> list:
    return [fig.axes[0].yaxis]


def _main_and_colorbar_y(fig) -> list:
    return [ax.yaxis for ax in fig.axes if ax is fig.axes[0] or ax.get_label() == "<colorbar>"]


def tune_images(data: TuneStudy, study, evaluator, importances: dict[str, float] | None
                ) -> tuple[dict[str, bytes], list[str]]:
    """{png name: bytes} for the plots that apply, and a note for each plot left out."""
    name = data.objectives[0]
    label = metric_label(name)
    percent = _percent(name)
    images: dict[str, bytes] = {}
    notes: list[str] = []
    done = scored(data)
    ranked_params = [p for p in (importances or {}) if p in data.params]
    params = (ranked_params + [p for p in data.params if p not in ranked_params])[:MAX_SLICE_PARAMS]
    with quiet_optuna() as optuna, _pyplot_session() as plt:
        vis = optuna.visualization.matplotlib
        first = rebuild_study(data, objective=0) if data.multi else study

        def add(png: str, make: Callable[[], Any], size: tuple[float, float], **kwargs: Any) -> None:
            try:
                images[png] = _draw(plt, make, size, **kwargs)
            except (ValueError, RuntimeError) as exc:  # odd trials must not cost the whole report
                notes.append(f"Optuna could not draw {png}: {exc}")

        if not done:
            notes.append("No trial completed, so there is no optimization history, slice or importance plot.")
        else:
            add("optimization_history.png", lambda: vis.plot_optimization_history(first, target_name=label),
                (8.0, 4.8), percent=_main_y if percent else None, integer_x=True)
        figure = intermediate_figure(data)
        if figure is not None:
            images["intermediate_values.png"] = render_png(figure)
        else:
            notes.append("No trial reported per-epoch values, so there is no intermediate-values plot.")
        if importances:  # several objectives: one bar each, named by the study's metric_names
            add("param_importances.png",
                lambda: vis.plot_param_importances(study, evaluator=evaluator, target_name=label),
                (8.0, max(3.2, 0.45 * len(importances) * len(data.directions) + 2)))
        elif done:
            notes.append("Parameter importances need at least 2 complete trials and a parameter that varies.")
        if len(done) == 1:
            notes.append("Slice and parallel-coordinate plots need at least 2 complete trials.")
        elif done and params:
            add("parallel_coordinate.png",
                lambda: vis.plot_parallel_coordinate(first, params=params, target_name=label),
                (max(8.0, 1.5 * len(params) + 4.5), 5.4), percent=_main_and_colorbar_y if percent else None)
            add("slice.png", lambda: vis.plot_slice(first, params=params, target_name=label),
                (min(20.0, 2.7 * len(params) + 2.0), 4.6), percent=_main_y if percent else None)
            if len(data.params) > len(params):
                notes.append(f"The slice and parallel-coordinate plots show {len(params)} (the most important first) "
                             f"of {len(data.params)} hyperparameters.")
        if data.multi and done:
            if len(data.directions) <= 3:
                add("pareto_front.png",
                    lambda: vis.plot_pareto_front(study, target_names=[metric_label(n) for n in data.objectives]),
                    (7.5, 5.2), percent=_pareto_axes(data) if len(data.directions) == 2 else None)
            else:
                notes.append("A Pareto-front plot needs 2 or 3 objectives.")
    return images, notes


def _pareto_axes(data: TuneStudy) -> Callable[[Any], list]:
    """x: the first objective, y: the second; the fractions among them shown as %."""
    return lambda fig: [axis for axis, name in zip((fig.axes[0].xaxis, fig.axes[0].yaxis), data.objectives)
                        if _percent(name)]
