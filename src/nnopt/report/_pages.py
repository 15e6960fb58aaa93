"""One builder per run kind: Run -> ({png name: bytes}, report.html text)."""

from __future__ import annotations

from typing import Any

from nnopt.errors import UsageError
from nnopt.report import _html as h
from nnopt.report._columns import columns_section
from nnopt.report._format import LR_SOURCES, finite, fmt_batch, fmt_lr, fmt_metric, fmt_number, fmt_seconds, \
    fmt_target, metric_label
from nnopt.report._load import Run
from nnopt.report._plots import colors_for, compare_figure, lr_find_figure, ranked_rows, train_figure
from nnopt.report._render import render_png
from nnopt.report._verdict import primary_metric, verdict

Pages = tuple[dict[str, bytes], str]
LR_MODES = {"auto": "auto: the LR finder picks one per optimizer", "grid": "grid: the best of a short run each",
            "given": "given", "default": "each optimizer's default"}
METRIC_ORDER = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc", "mse", "mae", "r2")


def build_pages(run: Run) -> Pages:
    return {"train": _train, "compare": _compare, "lr-find": _lr_find}[run.kind](run)


def _footer(run: Run) -> str:
    used = ", ".join(["config.json", *run.files])
    created = run.config.get("created")
    return f"Built by nnopt report from {used}" + (f"; run created {created}." if created else ".")


def _data_name(config: dict[str, Any]) -> str:
    info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    return str(info.get("name") or config.get("data") or "data")


# ---- train -------------------------------------------------------------------------------------

def train_metric(config: dict[str, Any], history: list[dict[str, Any]]) -> str:
    info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    task = config.get("task") or info.get("task")
    if task is None:
        task = "regression" if any("val_r2" in row or "train_r2" in row for row in history) else "classification"
    return "r2" if task == "regression" else "accuracy"


def _train(run: Run) -> Pages:
    config, history = run.config, run.files["metrics.jsonl"]
    summary = run.files.get("summary.json") or {}
    metric = train_metric(config, history)
    figure = train_figure(config, history, metric)
    images = {"curves.png": render_png(figure)} if figure else {}
    splits = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    if not splits and history:  # unfinished run: the last epoch's numbers, no test split yet
        last = history[-1]
        splits = {s: {k[len(s) + 1:]: v for k, v in last.items() if k.startswith(s + "_")} for s in ("train", "val")}
    names = [m for m in METRIC_ORDER if any(m in (splits.get(s) or {}) for s in splits)]
    names += sorted({m for s in splits.values() if isinstance(s, dict) for m in s} - set(names))
    rows = [[metric_label(m)] + [fmt_metric(m, (splits.get(s) or {}).get(m)) for s in ("train", "val", "test")]
            for m in names]
    test = (splits.get("test") or {}).get(metric)
    val = (splits.get("val") or {}).get(metric)
    epochs = summary.get("epochs", len(history))
    wall = summary.get("wall_s", history[-1].get("time_s") if history else None)
    scores = [f"test {metric_label(metric)} {fmt_metric(metric, test)}"] if finite(test) is not None else []
    if finite(val) is not None:
        scores.append(f"validation {'' if scores else metric_label(metric) + ' '}{fmt_metric(metric, val)}")
    answer = [f"After {fmt_number(epochs)} epoch{'' if epochs == 1 else 's'} in {fmt_seconds(wall)}: "
              + (", ".join(scores) or f"no {metric_label(metric)} recorded") + "."]
    if summary.get("stopped_early"):
        answer.append("Training stopped early: the validation loss stopped improving.")
    if not summary:
        answer.append("summary.json is missing (the run did not finish); the numbers are from the last epoch.")
    columns = columns_section(config, run.files.get("importance.json"))
    sections = [
        h.section("Answer", _bullets(answer)),
        h.section("Metrics", h.table(["metric", "train", "validation", "test"], rows)),
        h.section("Curves", h.img(images["curves.png"], "training curves") if images else
                  '<p class="note">No epoch finished with a finite loss or score, so there are no curves.</p>'),
        *([columns] if columns else []),
        h.section("Setup", h.definitions([
            ("data", h.data_description(config)), ("model", h.model_description(config)),
            ("optimizer", _optimizer_text(config)), ("learning rate", fmt_lr(config.get("lr"))),
            ("schedule", config.get("schedule")), ("batch size", _batch(config)),
            ("epochs", _epochs_text(config, summary)), ("seed", config.get("seed")),
            ("device", _device_text(config)), ("environment", h.environment_description(config)),
            ("created", config.get("created"))])),
    ]
    title = f"Training run: {config.get('model') or 'model'} · {config.get('optimizer', '?')} on {_data_name(config)}"
    question = "How well did this network train with this optimizer on this data?"
    return images, h.page(title, "nnopt train report", question, sections, _footer(run))


def _optimizer_text(config: dict[str, Any]) -> str | None:
    name = config.get("optimizer")
    params = config.get("optimizer_params")
    if name and params:
        return f"{name} ({', '.join(f'{k}={v}' for k, v in params.items())})"
    return name


def _epochs_text(config: dict[str, Any], summary: dict[str, Any]) -> str | None:
    planned, done = config.get("epochs"), summary.get("epochs")
    if done is not None and planned is not None and done != planned:
        return f"{done} of {planned}"
    return None if planned is None else str(planned)


def _device_text(config: dict[str, Any]) -> str | None:
    device, threads = config.get("device"), config.get("threads")
    if device is None:
        return None
    return f"{device}" + (f", {threads} thread(s)" if threads else "")


def _batch(config: dict[str, Any]) -> str | None:
    return fmt_batch(config["batch_size"]) if "batch_size" in config else None


def _bullets(sentences: list[str]) -> str:
    return '<ul class="verdict">' + "".join(f"<li>{h.esc(s)}</li>" for s in sentences) + "</ul>"


# ---- compare -----------------------------------------------------------------------------------

def _compare(run: Run) -> Pages:
    config, results = run.config, run.files["results.json"]
    if not isinstance(results, dict):
        results = {}
    metric = primary_metric(results, config)
    rows = ranked_rows(results)
    order = [r["optimizer"] for r in rows]
    colors = colors_for(order)
    images = {}
    curves = compare_figure(config, results, metric)
    if curves:
        images["curves.png"] = render_png(curves)
    lr_find = run.files.get("lr_find.json")
    lr_figure = lr_find_figure(lr_find, order) if isinstance(lr_find, dict) and lr_find else None
    if lr_figure:
        images["lr_find.png"] = render_png(lr_figure)
    target = config.get("target_metric") if isinstance(config.get("target_metric"), dict) else None
    sections = [h.section("Verdict", _bullets(verdict(results, config))),
                h.section("Ranking", _ranking_table(rows, metric, colors, target) +
                          f'<p class="note">Ranked by mean test {h.esc(metric_label(metric))} over seeds '
                          f'(± one standard deviation).</p>'),
                h.section("Curves", h.img(images["curves.png"], "training curves per optimizer") if curves else
                          '<p class="note">No run finished an epoch with a finite loss or score, so there are no '
                          "curves.</p>")]
    if isinstance(lr_find, dict) and lr_find:
        sections.append(h.section("Learning-rate finder", (h.img(images["lr_find.png"], "learning-rate finder")
                                                           if lr_figure else "") + _lr_find_table(lr_find, rows)))
    sections.append(h.section("Setup", h.definitions(_compare_setup(config, results, target))))
    sections.append(_runs_details(results, metric))
    title = f"Optimizer comparison: {config.get('model') or 'model'} on {_data_name(config)}"
    question = "Which optimizer, learning rate and batch mode for this network on this data?"
    return images, h.page(title, "nnopt compare report", question, sections, _footer(run))


def _ranking_table(rows: list[dict[str, Any]], metric: str, colors: dict[str, str], target: dict | None) -> str:
    headers = ["rank", "optimizer", "lr", "lr source", f"test {metric_label(metric)}", f"val {metric_label(metric)}",
               "final train loss"]
    if target:
        headers += ["epochs to target", "time to target", "reached target"]
    headers += ["steps/s", "wall-clock / run", "diverged"]
    body, classes = [], []
    for r in rows:
        n = r.get("seeds")
        cells = [fmt_number(r.get("rank")), h.swatch(colors[r["optimizer"]], r["optimizer"]), fmt_lr(r.get("lr")),
                 LR_SOURCES.get(str(r.get("lr_source")), r.get("lr_source") or "—"),
                 fmt_metric(metric, r.get(f"test_{metric}_mean"), _std(r, f"test_{metric}")),
                 fmt_metric(metric, r.get(f"val_{metric}_mean"), _std(r, f"val_{metric}")),
                 fmt_metric("loss", r.get("train_loss_mean"), _std(r, "train_loss"))]
        if target:
            reached = r.get("target_reached")
            cells += [fmt_number(r.get("epochs_to_target_mean")), fmt_seconds(r.get("time_to_target_s_mean")),
                      "—" if reached is None else f"{reached} of {n}"]
        cells += [fmt_number(r.get("steps_per_s_mean"), 0), fmt_seconds(r.get("wall_s_mean")),
                  f"{r.get('diverged') or 0} of {n}"]
        body.append(cells)
        classes.append("bad" if n and (r.get("diverged") or 0) >= n else "")
    return h.table(headers, body, left=2, row_classes=classes, raw_columns=(1,))


def _std(row: dict[str, Any], key: str) -> Any:
    """The spread over seeds, shown only when more than one seed finished."""
    finished = (finite(row.get("seeds")) or 0) - (finite(row.get("diverged")) or 0)
    return row.get(f"{key}_std") if finished > 1 else None


def _lr_find_table(lr_find: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    chosen = {r["optimizer"]: r for r in rows}
    order = [r["optimizer"] for r in rows if r["optimizer"] in lr_find] + sorted(set(lr_find) - set(chosen))
    body = []
    for name in order:
        entry = lr_find[name] if isinstance(lr_find[name], dict) else {}
        row = chosen.get(name, {})
        body.append([name, fmt_lr(entry.get("suggested")), fmt_lr(row.get("lr")), _finder_rule(entry)])
    return h.table(["optimizer", "suggested lr", "lr used", "rule"], body, left=1)


def _finder_rule(entry: dict[str, Any]) -> str:
    """How the finder reached its suggestion: its rule, or, where the loss never fell or was measured on fixed
    rows, its note (lr_find.json "note"; files written before it have none)."""
    note = str(entry.get("note") or "").strip()
    if note and entry.get("descent") is False:
        return note
    rule = str(entry.get("rule") or "").strip()
    return "; ".join(part for part in (rule, note) if part) or "—"


def _compare_setup(config: dict[str, Any], results: dict[str, Any], target: dict | None) -> list[tuple[str, Any]]:
    grid = config.get("lr_grid")
    lr_mode = config.get("lr_mode")
    lr_mode = LR_MODES.get(lr_mode, lr_mode)
    if lr_mode and grid:
        lr_mode += f" ({', '.join(fmt_lr(v) for v in grid)})"
    seeds = config.get("seeds")
    return [("data", h.data_description(config)), ("model", h.model_description(config)),
            ("optimizers", ", ".join(str(o) for o in config.get("optimizers") or []) or None),
            ("learning rates", lr_mode), ("batch size", _batch(config)),
            ("epochs", config.get("epochs")),
            ("seeds", ", ".join(str(s) for s in seeds) if isinstance(seeds, list) else seeds),
            ("target", fmt_target(target["name"], target.get("value")) if target and target.get("name") else "none"),
            ("ranked by", f"{metric_label(str(results.get('primary_metric') or ''))} "
                          f"({'higher' if results.get('higher_is_better', True) else 'lower'} is better)"),
            ("workers", config.get("workers")), ("environment", h.environment_description(config)),
            ("created", config.get("created"))]


def _runs_details(results: dict[str, Any], metric: str) -> str:
    runs = [r for r in results.get("runs") or [] if isinstance(r, dict)]
    body, classes = [], []
    for r in runs:
        final = r.get("final") if isinstance(r.get("final"), dict) else {}
        body.append([r.get("optimizer", "?"), r.get("seed", "—"), fmt_lr(r.get("lr")), r.get("status", "—"),
                     fmt_metric(metric, final.get(f"test_{metric}")), fmt_metric(metric, final.get(f"val_{metric}")),
                     fmt_metric("loss", final.get("train_loss")), fmt_number(r.get("epochs")),
                     fmt_seconds(r.get("wall_s")), fmt_number(r.get("steps_per_s"), 0),
                     fmt_number(r.get("epochs_to_target")), r.get("error") or ""])
        classes.append("bad" if r.get("status") not in (None, "ok") else "")
    table = h.table(["optimizer", "seed", "lr", "status", f"test {metric_label(metric)}",
                     f"val {metric_label(metric)}", "train loss", "epochs", "wall-clock", "steps/s",
                     "epochs to target", "error"], body, left=1, row_classes=classes)
    return f"<details><summary>Every run ({len(runs)})</summary>\n{table}\n</details>"


# ---- lr-find -----------------------------------------------------------------------------------

def _lr_find(run: Run) -> Pages:
    config, lr_find = run.config, run.files["lr_find.json"]
    if not isinstance(lr_find, dict) or not lr_find:
        raise UsageError(f"{run.path / 'lr_find.json'} holds no optimizer; re-run nnopt lr-find")
    optimizer = config.get("optimizer") or next(iter(lr_find))
    order = [optimizer] if optimizer in lr_find else []
    figure = lr_find_figure(lr_find, order)
    images = {"lr_find.png": render_png(figure)} if figure else {}
    answer = []
    for name in order + sorted(set(lr_find) - set(order)):
        entry = lr_find[name] if isinstance(lr_find[name], dict) else {}
        suggested = finite(entry.get("suggested"))
        text = (f"Suggested lr for {name}: {fmt_lr(suggested)}." if suggested is not None
                else f"No lr could be suggested for {name}: the loss never fell clearly.")
        note = str(entry.get("note") or "").strip()
        if note and entry.get("descent") is False:  # the suggestion is the default lr, not the rule's
            text += f" {note[0].upper()}{note[1:]}."
        elif entry.get("rule"):
            rule = str(entry["rule"]).strip()
            text += f" Rule: {rule}" + ("" if rule.endswith((".", "!", "?")) else ".")
            if note:
                text += f" {note[0].upper()}{note[1:]}."
        answer.append(text)
    sections = [h.section("Answer", _bullets(answer)),
                h.section("Loss against learning rate", h.img(images["lr_find.png"], "learning-rate finder")
                          if figure else '<p class="note">No finite loss was recorded, so there is no curve.</p>'),
                h.section("Setup", h.definitions([
                    ("data", h.data_description(config)), ("model", h.model_description(config)),
                    ("optimizer", _optimizer_text(config)), ("batch size", _batch(config)),
                    ("seed", config.get("seed")), ("environment", h.environment_description(config)),
                    ("created", config.get("created"))]))]
    title = f"Learning-rate finder: {optimizer} · {config.get('model') or 'model'} on {_data_name(config)}"
    question = f"Which learning rate should {optimizer} use for this network on this data?"
    return images, h.page(title, "nnopt lr-find report", question, sections, _footer(run))
