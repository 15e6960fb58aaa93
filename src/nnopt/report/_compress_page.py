"""The compress report: Run -> ({png name: bytes}, report.html text), from config.json and results.json only."""

from __future__ import annotations

from typing import Any

from nnopt.report import _html as h
from nnopt.report._compress import TIMING, Compression, batches, change, fmt_bytes, fmt_change, fmt_count, \
    fmt_drop, fmt_ratio, history_figure, latency_rows, load_compression, ratio_of, score_split, size_figure, \
    sparsity_figure
from nnopt.report._compress_verdict import compress_verdict
from nnopt.report._format import finite, fmt_lr, fmt_metric, fmt_ms, fmt_number, metric_label
from nnopt.report._load import Run
from nnopt.report._pages import Pages, _bullets, _data_name, _footer
from nnopt.report._render import render_png

SIZE_PNG, SPARSITY_PNG, HISTORY_PNG = "accuracy_vs_size.png", "sparsity.png", "gradual_pruning.png"
QUESTION = "How much smaller and faster can this network get, and what does it cost in accuracy?"
RUNTIMES = {"torch": "torch", "onnxruntime": "ONNX Runtime"}
PRUNE_METHODS = {"magnitude": "magnitude, per layer", "global": "magnitude, one threshold for all layers",
                 "structured": "structured: whole units removed", "2:4": "2:4 (two of every four weights)"}


def build_compress_pages(run: Run) -> Pages:
    c = load_compression(run)
    config = run.config
    figures = {SIZE_PNG: size_figure(c), SPARSITY_PNG: sparsity_figure(c), HISTORY_PNG: history_figure(c)}
    images = {name: render_png(figure) for name, figure in figures.items() if figure is not None}
    sections = [h.section("Verdict", _bullets(compress_verdict(c, config))),
                h.section("Compression", _variant_table(c)),
                h.section("Latency", _latency_table(c))]
    if SIZE_PNG in images:
        sections.append(h.section("Accuracy against size", h.img(images[SIZE_PNG], "accuracy against size")
                                  + f'<p class="note">{h.esc(_size_caption(c))}</p>'))
    sections.append(h.section("Per-layer sparsity of the kept model", _sparsity(c, images)))
    if HISTORY_PNG in images:
        sections.append(h.section("Gradual pruning", h.img(images[HISTORY_PNG], "gradual pruning")
                                  + '<p class="note">Sparsity rises along a cubic schedule while the network '
                                    "fine-tunes; the score is measured on the validation split after each "
                                    "epoch.</p>"))
    sections.append(h.section("Setup", h.definitions(_setup(c, config)) + _quantized_note(c)))
    title = f"Compression: {config.get('model_spec') or 'model'} on {_data_name(config)}"
    return images, h.page(title, "nnopt compress report", QUESTION, sections, _footer(run))


# ---- tables ------------------------------------------------------------------------------------

def _variant_table(c: Compression) -> str:
    label = metric_label(c.metric)
    specs = {v.get("model_spec") for v in c.variants}
    headers = ["variant"] + (["model"] if len(specs) > 1 else [])
    headers += [f"val {label}", f"test {label}", "val change", "test change", "file bytes", "vs fp32",
                "nonzero / params", "kept"]
    body, classes = [], []
    for v in c.variants:
        cells = [v["name"]] + ([v.get("model_spec") or "—"] if len(specs) > 1 else [])
        own = v is c.original
        cells += [fmt_metric(c.metric, v.get("val")), fmt_metric(c.metric, v.get("test")),
                  "—" if own else fmt_change(c, change(c, v, "val")),
                  "—" if own else fmt_change(c, change(c, v, "test")), fmt_bytes(v.get("file_bytes")),
                  _ratio_text(ratio_of(c, v), own), _nonzero(v), "✓ kept" if v is c.kept else ""]
        body.append(cells)
        classes.append("kept" if v is c.kept else "")
    notes = ["file bytes: the size on disk — the fp32 state dict (torch.save) for the original, the packed "
             "compressed file (.nnz: int codes, sparse weights stored sparse) for each variant."]
    broken = [v["name"] for v in c.compressed if v.get("identical_after_load") is False]
    if broken:
        notes.append(f"Not identical after loading the packed file: {', '.join(broken)}.")
    elif any(v.get("identical_after_load") is True for v in c.compressed):
        notes.append("Each packed file loads back to a model with exactly the same outputs on the test split.")
    if c.max_drop is not None:
        notes.append(f"Tried in order, most compressed first, until the val drop was at most "
                     f"{fmt_drop(c, c.max_drop)}.")
    return h.table(headers, body, left=1 + (len(specs) > 1), row_classes=classes) + _notes(notes)


def _ratio_text(ratio: float | None, reference: bool = False) -> str:
    if ratio is None:
        return "—"
    if reference:
        return f"{fmt_ratio(ratio)} (reference)"
    return f"{fmt_ratio(ratio)} smaller" if ratio >= 1 else f"{fmt_ratio(1 / ratio)} larger"


def _nonzero(v: dict[str, Any]) -> str:
    nonzero, params = finite(v.get("nonzero_params")), finite(v.get("params"))
    if params is None:
        return "—"
    if nonzero is None:
        return fmt_count(params)
    share = f" ({100 * nonzero / params:.1f} %)" if params else ""
    return f"{fmt_count(nonzero)} / {fmt_count(params)}{share}"


def _latency_table(c: Compression) -> str:
    rows = latency_rows(c)
    if not rows:
        return '<p class="note">No latency was measured.</p>'
    headers = ["model", "runtime", "batch", "latency (ms)", "speedup vs torch fp32", "agreement", "file",
               "file bytes"]
    body = [[r.get("model") or "—", RUNTIMES.get(str(r.get("runtime")), r.get("runtime") or "—"),
             fmt_number(r.get("batch")), fmt_ms(r.get("latency_ms")), fmt_ratio(r.get("speedup")),
             "—" if finite(r.get("agreement")) is None else f"{100 * r['agreement']:.1f} %",
             r.get("file") or "—", fmt_bytes(r.get("file_bytes"))] for r in rows]
    notes = [f"Median of {TIMING['repeats']} runs after {TIMING['warmup']} warm-up runs on random input, "
             f"{TIMING['threads']} thread, at each batch size; speedup: the torch fp32 original's latency at the "
             "same batch divided by this one."]
    if any(r.get("runtime") == "onnxruntime" for r in rows):
        notes.append("agreement: the share of test rows on which ONNX Runtime predicts the same class as the "
                     "torch compressed model.")
    else:
        notes.append("Only torch was timed: --export onnx adds ONNX Runtime (and an int8 model for int8).")
    return h.table(headers, body, left=2) + _notes(notes)


def _sparsity(c: Compression, images: dict[str, bytes]) -> str:
    layers = c.layers()
    if not layers:
        return '<p class="note">No per-layer sparsity was recorded.</p>'
    body, classes = [], []
    for r in [*layers, *([c.total()] if c.total() else [])]:
        shape = r.get("shape")
        body.append([r.get("layer") or "—", r.get("kind") or "—",
                     " × ".join(str(d) for d in shape) if isinstance(shape, list) else "—",
                     fmt_count(r.get("params")), fmt_count(r.get("zeros")),
                     "—" if finite(r.get("sparsity")) is None else f"{100 * r['sparsity']:.1f} %",
                     r.get("note") or ""])
        classes.append("kept" if r.get("layer") == "total" else "")
    parts = [h.table(["layer", "kind", "shape", "weights", "zeros", "sparsity", "note"], body, left=2,
                     row_classes=classes)]
    if SPARSITY_PNG in images:
        parts.append(h.img(images[SPARSITY_PNG], "per-layer sparsity"))
    notes = ["Weights of the prunable layers only (biases and normalization are never pruned); zeros: weights "
             "exactly zero in the kept model, pruned or rounded to zero by quantization."]
    if c.kept is not None and c.original is not None and c.kept.get("model_spec") != c.original.get("model_spec"):
        notes.append("Structured pruning made the layers smaller instead of sparse: these are the kept model's "
                     "own shapes.")
    return "\n".join(parts) + _notes(notes)


def _size_caption(c: Compression) -> str:
    split = score_split(c)
    text = (f"Each variant's {'validation' if split == 'val' else 'test'} score against its file size on disk (log "
            "scale); grey square: the fp32 original; star: the kept variant.")
    if split == "test":
        text += " The source model has no validation split, so the test split is shown."
    elif c.max_drop is not None:
        text += f" Dashed: the original's score minus the allowed drop ({fmt_drop(c, c.max_drop)})."
    return text


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="note">{h.esc(n)}</p>' for n in notes)


# ---- setup -------------------------------------------------------------------------------------

def _setup(c: Compression, config: dict[str, Any]) -> list[tuple[str, Any]]:
    s = c.settings
    original = c.original or {}
    source = str(config.get("source") or "—")
    if config.get("model_spec"):
        source += f": {config['model_spec']}"
        if finite(original.get("params")) is not None:
            source += f" ({fmt_number(original['params'])} parameters)"
    compressed = config.get("compressed_spec")
    times = ", ".join(fmt_number(b) for b in batches(c)) or "1, 256"
    return [("source model", source), ("data", h.data_description(config)),
            ("compressed model", compressed if compressed and compressed != config.get("model_spec") else None),
            ("pruning", _pruning(s)), ("quantization", _quantization(s)),
            ("max accuracy drop", fmt_drop(c, c.max_drop) + " (a ladder of settings, most compressed first)"
             if c.max_drop is not None else None),
            ("export", "ONNX (model.onnx; model.int8.onnx: static int8 QDQ through ONNX Runtime, calibrated on "
                       "training rows)" if s.get("export") == "onnx" else s.get("export") or "none"),
            ("fine-tuning", _fine_tuning(c)), ("seed", s.get("seed")),
            ("bytes", "the file size on disk"),
            ("latency", f"median of {TIMING['repeats']} runs after {TIMING['warmup']} warm-up runs, batch {times}, "
                        f"{s.get('threads') or TIMING['threads']} thread, CPU"),
            ("kept", c.kept["name"] if c.kept else None), ("created", config.get("created"))]


def _pruning(s: dict[str, Any]) -> str:
    amount = finite(s.get("prune"))
    if not amount:
        return "none" if s.get("max_accuracy_drop") is None else "chosen by the ladder"
    method = str(s.get("prune_method") or "magnitude")
    text = f"{amount:.0%} of the weights, {PRUNE_METHODS.get(method, method)}"
    schedule = s.get("schedule")
    if schedule == "gradual":
        text += ", gradually (cubic schedule while fine-tuning)"
    elif schedule:
        text += ", one-shot" if schedule == "oneshot" else f", {schedule}"
    return text


def _quantization(s: dict[str, Any]) -> str:
    bits = s.get("quantize")
    if not bits:
        return "none (fp32)" if s.get("max_accuracy_drop") is None else "chosen by the ladder"
    text = f"{bits} weights, per output channel, {s.get('scheme') or 'symmetric'}"
    qat = finite(s.get("qat_epochs"))
    return text + (f", {fmt_number(qat)} epochs of quantization-aware training" if qat else ", round to nearest")


def _fine_tuning(c: Compression) -> str | None:
    s = c.settings
    epochs = finite(s.get("finetune_epochs"))
    if epochs is None and c.kept is not None and c.kept in c.with_history():
        epochs = float(len(c.kept["history"]))
    if not epochs and s.get("schedule") != "gradual" and not finite(s.get("qat_epochs")):
        return None
    text = f"{fmt_number(epochs)} epochs, " if epochs else ""
    text += f"{s.get('optimizer') or 'adam'}" + (f" at lr {fmt_lr(s['lr'])}" if s.get("lr") else "")
    schedule = s.get("lr_schedule")  # the default is written as what it does; runs before it name none
    if not isinstance(schedule, str) or not schedule or (schedule.startswith("lr ") and (epochs or 0) < 2):
        return text  # the default keeps one epoch's lr
    return text + (f", {schedule}" if schedule.startswith("lr ") else f", lr schedule {schedule}")


def _quantized_note(c: Compression) -> str:
    if not any(v.get("quantize") for v in c.compressed):
        return ""
    text = ("How quantized weights are scored: torch evaluates a quantized variant in fp32, on weights that take "
            "exactly the quantized values (the dequantized integer codes), so its accuracy is that of the quantized "
            "model but its speed is that of fp32; the packed file stores the integer codes. ")
    if any("int8" in str(r.get("model")) for r in c.latency):
        text += "The ONNX Runtime int8 model (QDQ) computes in int8, with activations quantized too, which is " \
                "where the int8 speedup comes from; its agreement column shows how often it predicts as torch does."
    else:
        text += "No int8 runtime was timed, so the latency of quantized variants is fp32 latency."
    return f'<p class="note">{h.esc(text)}</p>'


__all__ = ["build_compress_pages"]
