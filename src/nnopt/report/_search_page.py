"""The search report: the tune page of the study, plus the architectures (score against params and latency,
the table of the best or Pareto architectures, the kept one) and the candidates constraints rejected."""

from __future__ import annotations

from typing import Any

from nnopt.report import _html as h
from nnopt.report._format import base_metric, finite, fmt_ms, fmt_number, fmt_seconds, metric_label
from nnopt.report._load import Run
from nnopt.report._pages import Pages, _bullets, _data_name, _footer
from nnopt.report._render import render_png
from nnopt.report._search import Candidate, Search, candidate_phrase, constraint_text, fmt_kb, \
    front_figure, load_search, search_verdict
from nnopt.report._tune import fmt_objective, param_text
from nnopt.report._tune_page import _epochs, every_trial_section, failed_sections, plots_section, setup_section, \
    tune_plots
from nnopt.report._tune_verdict import verdict_tail

FIGURE = "architectures.png"
QUESTION = "Which architecture scores best for its size and speed on this data?"
CAPTION = ("Each trained candidate's validation score against its parameter count (left) and its latency at batch 1 "
           "on one thread (right). Red: the Pareto front of each panel (no other candidate scores better at a lower "
           "cost), as a staircase; star: the architecture kept and retrained in best/; dashed: a constraint's "
           "limit. Candidates rejected by a constraint were never trained, so they have no score and are not drawn.")
RANGE_KEYS = ("depth", "blocks")  # [low, high] of an architecture space; the other keys list choices


def build_search_pages(run: Run) -> Pages:
    search = load_search(run)
    data, config = search.study, run.config
    plots = tune_plots(data)
    figure = front_figure(search)
    images = {**({FIGURE: render_png(figure)} if figure else {}), **plots.images}
    verdict = search_verdict(search) + verdict_tail(data, config, plots.importances)
    sections = [h.section("Verdict", _bullets(verdict))]
    if figure:
        sections.append(h.section("Score against size and latency",
                                  h.img(images[FIGURE], "architectures") + f'<p class="note">{h.esc(CAPTION)}</p>'))
    rows = search.table_rows()
    if rows:
        heading = f"Pareto architectures ({len(rows)})" if data.multi else f"Top {len(rows)} architectures"
        sections.append(h.section(heading, _architecture_table(search, rows)))
        kept = search.candidate(search.kept)
        if kept is not None and kept.score is not None:
            sections.append(h.section("Kept architecture", _kept(search, kept)))
    if search.rejected():
        sections.append(h.section(f"Rejected by constraints ({len(search.rejected())})", _rejected_table(search)))
    sections += failed_sections(data)
    sections.append(plots_section(plots))
    sections.append(setup_section(data, config, _setup(search, run), space_title="Sampled parameters"))
    sections.append(every_trial_section(data))
    title = f"Architecture search: {_space(run).get('kind') or 'model'} on {_data_name(config)}"
    return images, h.page(title, "nnopt search report", QUESTION, sections, _footer(run))


def _architecture_table(search: Search, rows: list[Candidate]) -> str:
    data = search.study
    others = [i for i, name in enumerate(data.objectives) if i != search.score_index and name not in
              ("params", "size_kb", "latency_ms")]
    headers = ["rank", "trial", "model", metric_label(search.score_name)]
    headers += [metric_label(data.objectives[i]) for i in others]
    headers += ["params", "size (kB)", "latency (ms)", "epochs", "kept"]
    body = []
    for rank, c in enumerate(rows, 1):
        cells = [rank, c.number, c.model or "—", fmt_objective(search.score_name, c.score)]
        cells += [fmt_objective(data.objectives[i], c.trial.values[i]) for i in others]
        cells += [fmt_number(c.costs.get("params")), fmt_kb(c.costs.get("size_kb")),
                  fmt_ms(c.costs.get("latency_ms")), _epochs(data, c.trial), "yes" if c.number == search.kept else ""]
        body.append(cells)
    return h.table(headers, body, left=3)


def _kept(search: Search, kept: Candidate) -> str:
    test = search.retrained.get("test") if isinstance(search.retrained.get("test"), dict) else {}
    base = base_metric(search.score_name)
    retrained = "best/ (its own report: best/report.html)"
    if finite(test.get(base)) is not None:
        retrained += f"; {metric_label('test_' + base)} {fmt_objective(base, test[base])}"
    facts = [("trial", kept.number), ("model", kept.model), ("score", candidate_phrase(search, kept)),
             ("FLOPs per sample", fmt_number(kept.costs["flops"]) if "flops" in kept.costs else None),
             ("size", f"{fmt_kb(kept.costs['size_kb'])} kB" if "size_kb" in kept.costs else None),
             ("epochs", _epochs(search.study, kept.trial)), ("wall-clock", fmt_seconds(kept.trial.duration_s)),
             ("sampled", param_text(kept.trial, search.study.params) or None), ("retrained in", retrained)]
    return (h.definitions(facts) + '\n<p class="note">Reproduce it: <code>nnopt train --config best.yaml</code> '
            "(best.yaml holds this model and its training settings).</p>")


def _rejected_table(search: Search) -> str:
    rows = [[c.number, c.model or "—", c.trial.fail_reason or "—", fmt_number(c.costs.get("params")),
             fmt_kb(c.costs.get("size_kb")), fmt_ms(c.costs.get("latency_ms"))] for c in search.rejected()]
    return (h.table(["trial", "model", "reason", "params", "size (kB)", "latency (ms)"], rows, left=3)
            + '<p class="note">A constraint is a property of the architecture, so these were measured and '
              "rejected without training; they are not pruned trials.</p>")


def _setup(search: Search, run: Run) -> list[tuple[str, Any]]:
    return [("architecture space", _space_text(_space(run))),
            ("constraints", constraint_text(search) or "none"),
            ("costs", "params and FLOPs per sample counted on the built model; size: the saved model in kB; "
                      "latency: batch 1, 1 thread, median")]


def _space(run: Run) -> dict[str, Any]:
    raw = run.files["trials.json"].get("architecture")
    space = raw if isinstance(raw, dict) else run.config.get("architecture")
    return space if isinstance(space, dict) else {}


def _space_text(space: dict[str, Any]) -> str | None:
    """'mlp: depth 1 to 6, width 16/32/64, act relu/gelu, batchnorm false/true'."""
    if not space:
        return None
    parts = []
    for key, value in space.items():
        if key == "kind":
            continue
        if key in RANGE_KEYS and isinstance(value, list) and len(value) == 2:
            parts.append(f"{key} {value[0]} to {value[1]}")
        else:
            values = value if isinstance(value, list) else [value]
            parts.append(f"{key} {'/'.join(_choice(v) for v in values)}")
    return f"{space.get('kind') or 'model'}: " + ", ".join(parts)


def _choice(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
