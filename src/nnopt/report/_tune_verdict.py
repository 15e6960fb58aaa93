"""The plain-language verdict of a tune run: a pure function of its trials, config and importances."""

from __future__ import annotations

from typing import Any

from nnopt.report._format import finite, fmt_lr, fmt_seconds, metric_label
from nnopt.report._tune import TuneStudy, TuneTrial, at_edge, distribution, fmt_param, objective_phrase, \
    param_text, pruning_savings, ranked

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def tune_verdict(data: TuneStudy, config: dict[str, Any], importances: dict[str, float] | None = None) -> list[str]:
    """Sentences answering 'which hyperparameters make this network best?', the answer first."""
    done = ranked(data)
    n = len(data.with_state(*FINISHED))
    if not done:
        sentences = [f"No trial completed (of {_count(n, 'trial')}), so there is nothing to recommend yet; "
                     "see the failed trials below."]
    elif data.multi:
        sentences = _pareto(data, n)
    else:
        best = data.trial(data.best[0]) if data.best else done[0]
        best = best if best is not None and best.values is not None else done[0]
        lead = f"The best of {_count(n, 'trial')}" if n > 1 else "The only trial"
        sentences = [f"{lead} (trial {best.number}) reached "
                     f"{objective_phrase(data.objectives[0], best.values[0])} with {param_text(best, data.params)}; "
                     "reproduce it with nnopt train --config best.yaml."]
        sentences += _edges(best)
    return sentences + verdict_tail(data, config, importances)


def verdict_tail(data: TuneStudy, config: dict[str, Any], importances: dict[str, float] | None) -> list[str]:
    """What follows the answer: pruning, failures, the most important parameter, unfinished trials."""
    sentences = _pruned(data) + _failed(data)
    if importances:
        sentences.append(_importance(data, importances))
    return sentences + _unfinished(data, config, len(data.with_state(*FINISHED)))


def _pareto(data: TuneStudy, n: int) -> list[str]:
    front = [t for t in (data.trial(k) for k in data.best) if t is not None and t.values is not None]
    front = [t for t in ranked(data) if t in front] or ranked(data)[:1]
    names = data.objectives
    objectives = " and ".join(f"{metric_label(m)} ({d})" for m, d in zip(names, data.directions))

    def point(t: TuneTrial) -> str:
        return " with ".join(objective_phrase(m, v) for m, v in zip(names, t.values)) + f" (trial {t.number})"

    if len(front) == 1:
        return [f"Trial {front[0].number} is best on every objective of {_count(n, 'trial')} ({objectives}): "
                f"{point(front[0])}, with {param_text(front[0], data.params)}."]
    return [f"{len(front)} of {_count(n, 'trial')} form the Pareto front of {objectives}: "
            f"from {point(front[0])} to {point(front[-1])}; no trial beats these on every objective."]


def _edges(best: TuneTrial) -> list[str]:
    sentences = []
    for name in best.params:
        side = at_edge(best, name)
        if side is None:
            continue
        dist = distribution(best, name)
        attrs = dist.get("attributes") or {}
        sentences.append(f"The best {name} ({fmt_param(best.params[name], dist)}) lies at the {side} end of its "
                         f"range ({fmt_param(attrs.get('low'), dist)} to {fmt_param(attrs.get('high'), dist)}): "
                         "the optimum may lie beyond it, so widen the range.")
    return sentences


def _pruned(data: TuneStudy) -> list[str]:
    pruned = data.with_state("PRUNED")
    if not pruned:
        return []
    text = f"{_count(len(pruned), 'trial')} {'was' if len(pruned) == 1 else 'were'} pruned early"
    savings = pruning_savings(data)
    if savings and savings[1]:
        saved, total = savings
        text += f", saving {saved:,} of {total:,} epochs ({100 * saved / total:.0f} %)"
    return [text + "."]


def _failed(data: TuneStudy) -> list[str]:
    failed = data.with_state("FAIL")
    if not failed:
        return []
    diverged = [t for t in failed if (t.fail_reason or "").lower().startswith("diverged")]
    text = f"{_count(len(failed), 'trial')} failed"
    if diverged:
        text += " — all diverged" if len(diverged) == len(failed) else f" — {len(diverged)} diverged"
        lrs = [finite(t.params.get("lr")) for t in diverged]
        if lrs and all(v is not None for v in lrs):
            low, high = min(lrs), max(lrs)
            text += f" at lr {fmt_lr(low)}" + (f" to {fmt_lr(high)}" if high > low else "")
    return [text + "; the reasons are listed below."]


def _importance(data: TuneStudy, importances: dict[str, float]) -> str:
    (top, value), *rest = importances.items()
    text = f"{top} mattered most (importance {value:.2f}"
    text += f" for {metric_label(data.objectives[0])})" if data.multi else ")"
    if rest:
        text += ", then " + ", ".join(f"{name} ({v:.2f})" for name, v in rest[:2])
    return text + "."


def _unfinished(data: TuneStudy, config: dict[str, Any], n: int) -> list[str]:
    sentences = []
    running = data.with_state("RUNNING", "WAITING")
    if running:
        sentences.append(f"{_count(len(running), 'trial')} had not finished when trials.json was written; "
                         f"the plots leave {'it' if len(running) == 1 else 'them'} out.")
    asked, timeout = config.get("trials"), finite(config.get("timeout"))
    if isinstance(asked, int) and n < asked and timeout is not None and not running:
        sentences.append(f"The {fmt_seconds(timeout)} timeout stopped the search after {n} of {asked} trials.")
    return sentences


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
