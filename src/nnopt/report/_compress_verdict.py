"""The plain-language verdict of a compress run: a pure function of its results and config."""

from __future__ import annotations

from typing import Any

from nnopt.report._compress import Compression, batches, change, fmt_bytes, fmt_change, fmt_drop, fmt_ratio, \
    headline_latency, ratio_of, speed_clause
from nnopt.report._format import finite, fmt_metric, fmt_number, metric_label


def compress_verdict(c: Compression, config: dict[str, Any]) -> list[str]:
    """Sentences answering 'how much smaller and faster, at what cost in accuracy?', the answer first."""
    if c.kept is None:
        return ["The results hold no compressed variant; nothing was kept."]
    sentences = [_headline(c)]
    sentences += _small_batch(c)
    sentences += _ladder(c)
    sentences += _structured(c, config)
    sentences += _runtimes(c)
    if c.kept.get("identical_after_load") is False:
        sentences.append("Warning: compressed.nnz did not give exactly the same outputs after loading as the model "
                         "that was scored; re-run nnopt compress.")
    return sentences


def _headline(c: Compression) -> str:
    kept = c.kept
    ratio = ratio_of(c, kept)
    text = f"{kept['name']}: "
    if ratio is not None and c.original is not None:
        size = f"{fmt_ratio(ratio)} smaller" if ratio >= 1 else f"{fmt_ratio(1 / ratio)} larger"
        text += f"{size} ({fmt_bytes(c.original.get('file_bytes'))} → {fmt_bytes(kept.get('file_bytes'))} bytes)"
    elif finite(kept.get("file_bytes")) is not None:
        text += f"{fmt_bytes(kept['file_bytes'])} bytes"
    scores = []
    for split in ("val", "test"):
        if finite(kept.get(split)) is None:
            continue
        delta = change(c, kept, split)
        scores.append(f"{fmt_metric(c.metric, kept[split])} {metric_label(f'{split}_{c.metric}')}"
                      + (f" ({fmt_change(c, delta)})" if delta is not None else ""))
    if scores:
        text += (" at " if not text.endswith(": ") else "") + " and ".join(scores)
    elif text.endswith(": "):
        text += "no size or score recorded"
    row = headline_latency(c)
    clause = speed_clause(row) if row else None
    if clause:
        text += f"; {clause}"
    return text + "."


def _ladder(c: Compression) -> list[str]:
    if c.max_drop is None:
        return []
    tried = c.compressed
    within = f"a drop of at most {fmt_drop(c, c.max_drop)}"
    if len(tried) <= 1:
        return [f"With {within}, the first setting of the ladder tried ({c.kept['name']}) was already within it."]
    lost = [v for v in tried if v is not c.kept]
    listed = ", ".join(f"{v['name']} ({fmt_change(c, change(c, v, 'val'))})" for v in lost)
    return [f"With {within}, {len(tried)} settings were tried from the most compressed down and the first within "
            f"the limit was kept; {listed} lost more than that."]


def _structured(c: Compression, config: dict[str, Any]) -> list[str]:
    before = config.get("model_spec") or (c.original or {}).get("model_spec")
    after = c.kept.get("model_spec") or config.get("compressed_spec")
    if not before or not after or before == after:
        return []
    params = ""
    if c.original is not None and finite(c.original.get("params")) and finite(c.kept.get("params")):
        params = f" ({fmt_number(c.original['params'])} → {fmt_number(c.kept['params'])} params)"
    if "structured" not in (str(c.settings.get("prune_method")), str(c.kept["name"]).split(" ")[0]):
        return [f"The kept model's architecture changed: {before} → {after}{params}."]
    return [f"Structured pruning removed whole units: {before} → {after}{params}, so the layers are smaller and "
            "dense rather than sparse."]


def _small_batch(c: Compression) -> list[str]:
    """The same comparison at the smallest batch, when more than one batch was timed."""
    sizes = batches(c)
    if len(sizes) < 2 or headline_latency(c) is None:
        return []
    row = headline_latency(c, sizes[0])
    clause = speed_clause(row, "the compressed model in torch") if row else None
    return [clause[:1].upper() + clause[1:] + "."] if clause else []


def _runtimes(c: Compression) -> list[str]:
    """ONNX Runtime's agreement with torch, or why torch alone says nothing about quantized speed."""
    if not c.latency:
        return ["No latency was measured."]
    ort = [r for r in c.latency if r.get("runtime") == "onnxruntime" and finite(r.get("agreement")) is not None]
    if ort and c.metric == "accuracy":
        seen: dict[str, float] = {}
        for r in ort:
            seen.setdefault(str(r.get("file") or r.get("model")), r["agreement"])
        parts = [f"{100 * v:.1f} %{' of the test rows' if i == 0 else ''} with {name}"
                 for i, (name, v) in enumerate(seen.items())]
        return ["ONNX Runtime predicts the same class as the torch compressed model on " + " and ".join(parts) + "."]
    if not ort and c.kept.get("quantize"):
        return ["Latency was measured in torch only (no --export onnx): torch computes quantized weights in fp32, "
                "so quantization saves bytes here but not time; --export onnx times an int8 ONNX Runtime model "
                "for int8."]
    return []
