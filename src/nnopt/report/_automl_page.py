"""The automl report: the story of one run from automl.json and its stages' run directories.

What was tried (the optimizer screen, the search), what won and why (the architectures against size and latency,
the kept one), what compression did (the ladder, the kept setting), and a model card. Each stage's own report
stays in its directory; the figures here are drawn again from the same files, so this page is self-contained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnopt.report import _html as h
from nnopt.report._compress import fmt_bytes, load_compression, size_figure
from nnopt.report._format import (
    finite,
    fmt_lr,
    fmt_metric,
    fmt_ms,
    fmt_number,
    fmt_seconds,
    metric_label,
)
from nnopt.report._load import FILES, Run, load_run
from nnopt.report._pages import Pages, _bullets, _data_name, _footer
from nnopt.report._render import render_png
from nnopt.report._search import front_figure, load_search

QUESTION = "What is the best small, fast network for this data that the budget allows?"
STAGE_TEXT = {
    "screen": "optimizers, each at the lr its LR range test suggests, short runs of mlp:128,64",
    "search": "architecture, optimizer, lr and batch size jointly (TPE; ASHA stops weak trials)",
    "retrain": "the kept configuration on train (for the compression choice) and on train+val (final)",
    "compress": "the smallest pruning / quantization setting within the accuracy drop",
    "export": "ONNX files and latency per runtime",
    "test": "test metrics of the final models (no earlier decision reads the test split)",
}


def build_automl_pages(run: Run) -> Pages:
    state = run.files["automl.json"]
    stages = state.get("stages") if isinstance(state, dict) and isinstance(state.get("stages"), dict) else {}
    config = run.config
    images: dict[str, bytes] = {}
    sections = [h.section("Verdict", _bullets(_verdict(config, stages)))]
    sections.append(h.section("Model card", h.definitions(_card(config, stages))))
    sections.append(h.section("Where the budget went", _timeline(config, state, stages)))
    if "screen" in stages:
        sections.append(h.section("1 · Optimizer screen", _screen(stages["screen"], config)))
    search_dir = run.path / "search"
    if "search" in stages and _has(search_dir, "search"):
        figure = front_figure(load_search(load_run(search_dir)))
        shown = ""
        if figure is not None:
            images["architectures.png"] = render_png(figure)
            shown = h.img(images["architectures.png"], "architectures") + (
                '<p class="note">Each trained candidate\'s validation score against its parameter count and its '
                "batch-1 latency; red: the Pareto front; star: the configuration kept. Full study: "
                "search/report.html.</p>")
        sections.append(h.section("2 · Architecture and hyperparameter search", _search(stages["search"]) + shown))
    ladder = (stages.get("compress") or {}).get("ladder")
    if ladder:
        sections.append(h.section("3 · Compression ladder (chosen on validation rows the model never trained on)",
                                  _ladder(ladder, _metric(stages))))
    if _has(run.path / "compressed", "compress"):
        compression = load_compression(load_run(run.path / "compressed"))
        # the final model trained on the validation rows too: its variants have test scores only
        figure = size_figure(compression, "test")
        shown = ""
        if figure is not None:
            images["compressed.png"] = render_png(figure)
            shown = h.img(images["compressed.png"], "test score against size")
        sections.append(h.section("4 · The final model compressed", _variants(compression) + shown))
    sections.append(h.section("Files", h.definitions(_files(run.path))))
    title = f"AutoML on {_data_name(config)}"
    return images, h.page(title, "nnopt automl report", QUESTION, sections, _footer(run))


def _has(path: Path, kind: str) -> bool:
    return all((path / name).is_file() for name in ("config.json", *FILES[kind][0]))


def _metric(stages: dict[str, Any]) -> str:
    return str((stages.get("test") or {}).get("metric") or "accuracy")


def _verdict(config: dict[str, Any], stages: dict[str, Any]) -> list[str]:
    if "test" not in stages:
        done = [name for name in stages]
        return [f"Unfinished: stages done so far: {', '.join(done) or 'none'}. Re-run the same command to "
                "continue."]
    test, compress, retrain = stages["test"], stages.get("compress") or {}, stages.get("retrain") or {}
    metric = _metric(stages)
    size = (f"{fmt_bytes(test.get('compressed_bytes'))} bytes instead of {fmt_bytes(compress.get('fp32_bytes'))} "
            f"({fmt_number(compress.get('ratio'))}x smaller)")
    if test.get("no_test"):  # test_fraction 0: the final model trained on every row; there is no test score
        lines = [f"{retrain.get('model')}, trained on every row of the data, compressed ({compress.get('name')}) to "
                 f"{size}.", f"{test['no_test']}."]
    else:
        lines = [f"{retrain.get('model')} reached test {metric_label(metric)} "
                 f"{fmt_metric(metric, test.get('final_test'))} in full precision and "
                 f"{fmt_metric(metric, test.get('compressed_test'))} compressed ({compress.get('name')}), {size}."]
    search = stages.get("search") or {}
    counts = search.get("counts") or {}
    if counts:
        lines.append(f"It won a search of {counts.get('complete', 0) + counts.get('pruned', 0)} candidates "
                     f"({counts.get('complete', 0)} trained to the end, {counts.get('pruned', 0)} stopped early or "
                     f"rejected by a constraint) with validation {search.get('objective')} "
                     f"{fmt_number(search.get('best_value'), 4)}: {search.get('why') or 'the best score'}.")
    if compress.get("how"):
        lines.append(f"Compression: {compress['how']}.")
    for name, check in (test.get("constraints") or {}).items():
        lines.append(f"{name.replace('_', ' ')} {check.get('limit')}: the final model has "
                     f"{fmt_number(check.get('value'), 3)} — {'met' if check.get('ok') else 'NOT met'}.")
    return lines


def _card(config: dict[str, Any], stages: dict[str, Any]) -> list[tuple[str, Any]]:
    test, retrain = stages.get("test") or {}, stages.get("retrain") or {}
    search = stages.get("search") or {}
    train = search.get("train") or {}
    metric = _metric(stages)
    latency = (stages.get("export") or {}).get("latency_ms") or {}
    fastest = min(((k, v) for k, v in latency.items() if "batch 1" in k and "compressed" in k),
                  key=lambda kv: kv[1], default=None)
    return [("data", h.data_description(config) or config.get("data")),
            ("target", config.get("target")),
            ("task", config.get("task")),
            ("model", retrain.get("model")),
            ("parameters", fmt_number(test.get("params"), 0) if test.get("params") is not None else None),
            ("training", f"{train.get('optimizer')} lr {fmt_lr(train.get('lr'))}, batch {train.get('batch_size')}, "
                         f"{train.get('epochs')} epochs on "
                         f"{'every row (train+val, no test split)' if train.get('test_fraction') == 0 else 'train+val'}"
             if train else None),
            (f"test {metric_label(metric)}", test.get("no_test") or
             f"{fmt_metric(metric, test.get('final_test'))} (fp32), "
             f"{fmt_metric(metric, test.get('compressed_test'))} (compressed)" if test else None),
            ("file size", f"{fmt_bytes(test.get('compressed_bytes'))} bytes compressed.nnz; "
                          f"{fmt_bytes((stages.get('compress') or {}).get('fp32_bytes'))} bytes fp32" if test else None),
            ("latency, batch 1", f"{fmt_ms(fastest[1])} ms ({fastest[0]}, one thread, median)" if fastest else None),
            ("limits", ", ".join(f"{k.replace('_', ' ')} {config[k]:g}" for k in
                                 ("max_params", "max_flops", "max_size_kb", "max_latency_ms")
                                 if finite(config.get(k)) is not None) or None),
            ("intended use", f"predictions on data like {_data_name(config)}: same features, same preprocessing "
                             "(stored in the model file and applied by nnopt predict)")]


def _timeline(config: dict[str, Any], state: dict[str, Any], stages: dict[str, Any]) -> str:
    """Time per stage in a narrow table; what each stage does and what came of it below, as wrapping text."""
    budget = finite(config.get("budget_s"))
    rows, notes = [], []
    for name, text in STAGE_TEXT.items():
        stage = stages.get(name)
        seconds = finite(stage.get("seconds")) if isinstance(stage, dict) else None
        share = f"{100 * seconds / budget:.0f} %" if seconds is not None and budget else "—"
        rows.append([name, fmt_seconds(seconds) if seconds is not None else "not run", share])
        outcome = stage.get("summary") if isinstance(stage, dict) else None
        notes.append(f"<li><strong>{h.esc(name)}</strong>: {h.esc(text)}"
                     + (f" — {h.esc(outcome)}" if outcome else "") + "</li>")
    spent = finite(state.get("spent_s")) if isinstance(state, dict) else None
    note = (f'<p class="note">{fmt_seconds(spent)} spent of a {fmt_seconds(budget)} budget, the probe and the '
            "reports included.</p>") if spent is not None and budget else ""
    return h.table(["stage", "time", "of budget"], rows) + note + f"<ul>{''.join(notes)}</ul>"


def _screen(screen: dict[str, Any], config: dict[str, Any]) -> str:
    kept = set(screen.get("kept") or [])
    rows = [[r.get("optimizer"), fmt_lr(r.get("lr")), fmt_number(r.get("val"), 4),
             "kept" if r.get("optimizer") in kept else ""] for r in screen.get("optimizers") or []]
    rows.sort(key=lambda r: r[3] != "kept")
    return (h.table(["optimizer", "lr (LR finder)", "validation score", ""], rows)
            + f'<p class="note">{screen.get("epochs")} epochs each, one seed; the kept optimizers and the range '
              "around their learning rates form the search space. Full comparison: screen/report.html.</p>")


def _search(search: dict[str, Any]) -> str:
    train = search.get("train") or {}
    counts = search.get("counts") or {}
    return h.definitions([
        ("candidates", f"{counts.get('complete', 0)} trained to the end, {counts.get('pruned', 0)} stopped early "
                       f"or rejected, {counts.get('fail', 0)} failed"),
        ("epochs per trial", search.get("epochs_per_trial")),
        ("rounds", search.get("rounds")),
        ("kept", f"trial {search.get('best_trial')}: {search.get('model')}"
                 + (f" ({fmt_number(search['params'], 0)} parameters)" if search.get("params") is not None else "")),
        ("why", search.get("why")),
        ("its settings", f"{train.get('optimizer')}, lr {fmt_lr(train.get('lr'))}, batch {train.get('batch_size')}"),
        (f"validation {search.get('objective')}", fmt_number(search.get("best_value"), 4)),
    ])


def _ladder(rows: list[dict[str, Any]], metric: str) -> str:
    label = metric_label(metric)
    body = [[r.get("name"), fmt_metric(metric, r.get("original_val")), fmt_metric(metric, r.get("val")),
             fmt_number(r.get("drop_pts"), 2), fmt_bytes(r.get("file_bytes")), "kept" if r.get("kept") else ""]
            for r in rows]
    return (h.table(["setting", f"val {label} before", f"val {label} after", "drop (points)", "file bytes", ""],
                    body)
            + '<p class="note">Each setting was applied to the model trained on the train split alone (search/best), '
              "smallest expected file first; the first within the allowed drop was applied to the final model.</p>")


def _variants(c: Any) -> str:
    """The final model trained on the validation rows too, so it is shown with test scores."""
    label = metric_label(c.metric)
    if all(finite(v.get("test")) is None for v in c.variants):  # test_fraction 0: no test rows to score
        rows = [[v["name"], fmt_bytes(v.get("file_bytes")), "kept" if v is c.kept else ""] for v in c.variants]
        return (h.table(["variant", "file bytes", ""], rows)
                + '<p class="note">No test split (test_fraction 0): the variants have no test score here.</p>')
    rows = [[v["name"], fmt_metric(c.metric, v.get("test")), fmt_bytes(v.get("file_bytes")),
             "kept" if v is c.kept else ""] for v in c.variants]
    return h.table(["variant", f"test {label}", "file bytes", ""], rows)


def _files(path: Path) -> list[tuple[str, Any]]:
    described = {"model.onnx": "the compressed model for ONNX Runtime",
                 "model.int8.onnx": "int8 (QDQ) for ONNX Runtime",
                 "compressed.nnz": "the compressed model for nnopt (nnopt.load, nnopt predict)",
                 "model.pt": "the full-precision final model", "best.yaml": "nnopt train --config best.yaml "
                                                                         "reproduces the final model"}
    return [(name, text) for name, text in described.items() if (path / name).is_file()]
