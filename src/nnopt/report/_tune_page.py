"""The tune report: Run -> ({png name: bytes}, report.html text), from config.json and trials.json only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnopt.report import _html as h
from nnopt.report._format import fmt_seconds, metric_label
from nnopt.report._load import Run
from nnopt.report._pages import Pages, _bullets, _data_name, _footer
from nnopt.report._tune import REJECTED, TuneStudy, TuneTrial, distribution, epochs_of, fmt_objective, fmt_param, \
    load_tune, objective_phrase, param_text, ranked
from nnopt.report._tune_render import importance_evaluator, param_importances, quiet_optuna, rebuild_study, \
    tune_images
from nnopt.report._tune_verdict import tune_verdict

TOP = 10
QUESTION = "Which hyperparameters make this network best on this data?"
CAPTIONS = {
    "optimization_history.png": "Each complete trial's score in the order the trials ran; the line is the best so far.",
    "intermediate_values.png": "The validation score after each epoch; orange: trials the pruner stopped early.",
    "param_importances.png": "How much of the score's variation each hyperparameter explains (fANOVA, seed 0).",
    "parallel_coordinate.png": "One line per complete trial through its hyperparameters, coloured by its score.",
    "slice.png": "The score against each hyperparameter; darker points ran later.",
    "pareto_front.png": "Every complete trial by its objectives; red: the Pareto front (no trial beats them on all).",
}


@dataclass(frozen=True)
class TunePlots:
    images: dict[str, bytes]  # png name -> bytes, in page order
    notes: list[str]  # a line for each plot left out
    importances: dict[str, float] | None


def build_tune_pages(run: Run) -> Pages:
    data = load_tune(run)
    config = run.config
    plots = tune_plots(data)
    sections = [h.section("Verdict", _bullets(tune_verdict(data, config, plots.importances)))]
    if ranked(data):
        sections.append(h.section("Pareto trials" if data.multi else "Best trial", _best(data)))
        sections.append(h.section(f"Top {min(TOP, len(ranked(data)))} complete trials", _top_table(data)))
    sections += failed_sections(data)
    sections.append(plots_section(plots))
    sections.append(setup_section(data, config))
    sections.append(every_trial_section(data))
    title = f"Hyperparameter search: {config.get('model') or 'model'} on {_data_name(config)}"
    return plots.images, h.page(title, "nnopt tune report", QUESTION, sections, _footer(run))


def tune_plots(data: TuneStudy) -> TunePlots:
    """Optuna's plots of the study rebuilt from trials.json, and the parameter importances they share."""
    with quiet_optuna():
        study = rebuild_study(data)
        evaluator = importance_evaluator()
        importances = param_importances(study, data, evaluator)
        images, notes = tune_images(data, study, evaluator, importances)
    return TunePlots(images, notes, importances)


def failed_sections(data: TuneStudy) -> list[str]:
    failed = data.with_state("FAIL")
    return [h.section(f"Failed trials ({len(failed)})", _failed_table(data, failed))] if failed else []


def plots_section(plots: TunePlots) -> str:
    parts = [h.img(png, name.removesuffix(".png").replace("_", " "))
             + f'<p class="note">{h.esc(CAPTIONS[name])}</p>' for name, png in plots.images.items()]
    parts += [f'<p class="note">{h.esc(note)}</p>' for note in plots.notes]
    return h.section("Plots", "\n".join(parts))


def setup_section(data: TuneStudy, config: dict[str, Any], extra: Sequence[tuple[str, Any]] = (),
                  space_title: str = "Search space") -> str:
    """The settings (`extra` facts after the data line) and the search space table."""
    facts = _setup(data, config)
    facts[1:1] = extra
    return h.section("Setup", h.definitions(facts) + f"\n<h3>{h.esc(space_title)}</h3>\n"
                     + _space_table(data, config))


def every_trial_section(data: TuneStudy) -> str:
    return (f"<details><summary>Every trial ({len(data.trials)})</summary>\n"
            f"{_trial_table(data, data.trials, reason=True, state=True)}\n</details>")


# ---- trials ------------------------------------------------------------------------------------

def _best(data: TuneStudy) -> str:
    if data.multi:
        front = [t for t in ranked(data) if t.number in data.best]
        return (_trial_table(data, front, pareto=False) + '<p class="note">Each trial on the front is a trade-off '
                "between the objectives; <code>nnopt train --config best.yaml</code> retrains the one best.yaml "
                "holds.</p>")
    best = data.trial(data.best[0]) if data.best else None
    best = best if best is not None and best.values is not None else ranked(data)[0]
    facts = [("trial", best.number), ("score", objective_phrase(data.objectives[0], best.values[0])),
             ("epochs", _epochs(data, best)), ("wall-clock", fmt_seconds(best.duration_s))]
    params = h.table(["hyperparameter", "value"],
                     [[n, fmt_param(best.params[n], distribution(best, n))] for n in _names(data, [best])])
    return (h.definitions(facts) + "\n" + params + '\n<p class="note">Reproduce it: <code>nnopt train --config '
            'best.yaml</code> (best.yaml holds these hyperparameters).</p>')


def _top_table(data: TuneStudy) -> str:
    rows = ranked(data)[:TOP]
    return _trial_table(data, rows, rank=True)


def _trial_table(data: TuneStudy, trials, rank: bool = False, reason: bool = False, state: bool = False,
                 pareto: bool = True) -> str:
    names = _names(data, trials)
    headers = (["rank"] if rank else []) + ["trial"] + (["state"] if state else [])
    headers += [metric_label(m) for m in data.objectives] + names + ["epochs", "wall-clock"]
    pareto = pareto and data.multi and not reason
    headers += ["Pareto"] if pareto else []
    headers += ["reason"] if reason else []
    body, classes = [], []
    for i, t in enumerate(trials, 1):
        cells = ([i] if rank else []) + [t.number] + ([t.state.lower()] if state else [])
        cells += [fmt_objective(m, t.values[k]) if t.values else "—" for k, m in enumerate(data.objectives)]
        cells += [fmt_param(t.params.get(n), distribution(t, n)) for n in names]
        cells += [_epochs(data, t), fmt_seconds(t.duration_s)]
        cells += ["yes" if t.number in data.best else ""] if pareto else []
        cells += [t.fail_reason or ""] if reason else []
        body.append(cells)
        classes.append("bad" if t.state == "FAIL" else "")
    return h.table(headers, body, left=0, row_classes=classes)


def _failed_table(data: TuneStudy, failed: list[TuneTrial]) -> str:
    rows = [[t.number, t.fail_reason or "no reason recorded", param_text(t, data.params) or "—", _epochs(data, t)]
            for t in failed]
    return h.table(["trial", "reason", "hyperparameters", "epochs"], rows, left=3, row_classes=["bad"] * len(rows))


def _names(data: TuneStudy, trials) -> list[str]:
    used = {n for t in trials for n in t.params}
    return [n for n in data.params if n in used]


def _epochs(data: TuneStudy, trial: TuneTrial) -> str:
    run = epochs_of(trial)
    if run is None:
        return "—"
    return f"{run} of {data.epochs}" if data.epochs and run != data.epochs else str(run)


# ---- setup -------------------------------------------------------------------------------------

def _setup(data: TuneStudy, config: dict[str, Any]) -> list[tuple[str, Any]]:
    counts = {s: len(data.with_state(s)) for s in ("COMPLETE", "PRUNED", "FAIL")}
    unfinished = len(data.with_state("RUNNING", "WAITING"))
    asked = config.get("trials")
    rejected = len(data.with_state(REJECTED))
    ran = (f"{counts['COMPLETE']:,} complete, {counts['PRUNED']:,} pruned, {counts['FAIL']:,} failed"
           + (f", {rejected:,} rejected by constraints before training" if rejected else "")
           + (f", {unfinished:,} unfinished" if unfinished else ""))
    trials = f"{asked} asked: {ran}" if asked is not None else ran
    objectives = ", ".join(f"{metric_label(m)} ({d})" for m, d in zip(data.objectives, data.directions))
    timeout = config.get("timeout")
    return [("data", h.data_description(config)), ("model template", config.get("model")),
            ("objectives", objectives), ("sampler", _text(config.get("sampler"))),
            ("pruner", _text(config.get("pruner"))), ("trials", trials),
            ("epochs per trial", data.epochs), ("workers", config.get("workers")),
            ("timeout", fmt_seconds(timeout) if timeout is not None else None),
            ("storage", _text(config.get("storage"))), ("study name", config.get("study_name")),
            ("seed", config.get("seed")), ("environment", h.environment_description(config)),
            ("created", config.get("created"))]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _space_table(data: TuneStudy, config: dict[str, Any]) -> str:
    space = config.get("space") if isinstance(config.get("space"), dict) else {}
    rows = [[name, *_space_row(spec)] for name, spec in space.items()]
    for name in data.params:  # sampled but not in config.json: describe it from a trial's distribution
        if name not in space:
            trial = next(t for t in data.trials if name in t.params)
            rows.append([name, *_distribution_row(distribution(trial, name))])
    return h.table(["hyperparameter", "kind", "range or choices", "scale", "only when"], rows, left=3)


def _space_row(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return ["fixed", str(spec), "—", "—"]
    when = spec.get("when") if isinstance(spec.get("when"), dict) else {}
    condition = " and ".join(f"{k} = {v[0]}" if isinstance(v, list) and len(v) == 1 else
                             f"{k} in {', '.join(map(str, v)) if isinstance(v, list) else v}"
                             for k, v in when.items()) or "—"
    if "choices" in spec:
        return ["categorical", ", ".join(str(c) for c in spec["choices"] or []), "—", condition]
    dist = {"attributes": {"log": spec.get("log")}}
    kind = str(spec.get("type") or "float")
    scale = "log" if spec.get("log") else f"step {spec['step']}" if spec.get("step") else "linear"
    return [kind, f"{fmt_param(spec.get('low'), dist)} to {fmt_param(spec.get('high'), dist)}", scale, condition]


def _distribution_row(dist: dict[str, Any]) -> list[str]:
    attrs = dist.get("attributes") or {}
    if "choices" in attrs:
        return ["categorical", ", ".join(str(c) for c in attrs["choices"]), "—", "—"]
    kind = "int" if str(dist.get("name", "")).startswith("Int") else "float"
    scale = "log" if attrs.get("log") else f"step {attrs['step']}" if attrs.get("step") not in (None, 1) else "linear"
    return [kind, f"{fmt_param(attrs.get('low'), dist)} to {fmt_param(attrs.get('high'), dist)}", scale, "—"]
