"""What a candidate network costs before it is trained: size on disk and CPU inference latency.

Architecture search ranks candidates by these; they are measured, not estimated, and leave no trace:
the global RNG, torch's thread count and the model's train/eval mode are as they were afterwards.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nnopt.errors import ConfigError
from nnopt.models._count import count_params, flops_per_sample, sample_dims

_INPUT_SEED = 0  # latency inputs come from their own generator, never the global RNG


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: the fp32 model's size on disk."""
    state = model.state_dict()
    if any(isinstance(v, torch.Tensor) and v.device.type != "cpu" for v in state.values()):
        on_cpu = type(state)((k, v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items())
        if hasattr(state, "_metadata"):  # pickled with the dict; keep it so the size matches a CPU model's
            on_cpu._metadata = state._metadata  # type: ignore[attr-defined]
        state = on_cpu
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def measure_latency_ms(
    model: nn.Module,
    sample_shape: int | Sequence[int],
    *,
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
) -> float:
    """Median CPU forward time in ms over `repeats` timed calls, after `warmup` untimed ones.

    The input is `batch` random samples of `sample_shape`: an int for flat rows of that many features, or the
    shape a module takes per sample ((3, 32, 32) images). The model runs in eval mode under inference_mode with `threads` intra-op threads; a model on
    another device is timed on a CPU copy, so the latency is always the CPU's.
    """
    dims = sample_dims(sample_shape, "latency sample_shape")
    for name, value, least in (("batch", batch, 1), ("repeats", repeats, 1), ("warmup", warmup, 0),
                               ("threads", threads, 1)):
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"latency {name} must be an integer >= {least}; got {value!r}")
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        model = copy.deepcopy(model).cpu()
    generator = torch.Generator().manual_seed(_INPUT_SEED)
    x = torch.randn(batch, *dims, generator=generator)
    was_training = model.training
    previous_threads = torch.get_num_threads()
    times_ns: list[int] = []
    try:
        if threads != previous_threads:
            torch.set_num_threads(threads)
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                start = time.perf_counter_ns()
                model(x)
                times_ns.append(time.perf_counter_ns() - start)
    finally:
        model.train(was_training)
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)
    return statistics.median(times_ns) / 1e6


def model_costs(model: nn.Module, sample_shape: int | Sequence[int], *, latency: bool = True) -> dict[str, Any]:
    """{"params", "flops", "size_kb", "latency_ms"} of a model taking samples of `sample_shape` (an int: flat
    rows). latency_ms is None when `latency` is False; flops and latency_ms are None when the module cannot be
    run on such a sample ("not countable")."""
    flops = flops_per_sample(model, sample_shape)
    latency_ms = None
    if latency:
        try:
            latency_ms = measure_latency_ms(model, sample_shape)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - a module that does not run on this input is not measurable, not a crash
            latency_ms = None
    return {"params": count_params(model), "flops": flops, "size_kb": serialized_bytes(model) / 1024,
            "latency_ms": latency_ms}
