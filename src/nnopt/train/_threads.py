"""How many CPU threads a training run should use.

Small models are fastest on one thread: intra-op parallelism costs more in synchronisation than
it saves, and with other processes on the machine a second thread can stall the run
(benchmarks/RESULTS.md has the measurements behind the threshold).
"""

from __future__ import annotations

import os

# Forward+backward FLOPs per optimizer step above which a second thread pays off (measured).
PARALLEL_FLOPS_PER_STEP = 30e6


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def choose_threads(flops_per_sample: int, batch_size: int) -> int:
    """1 thread for small steps; otherwise the cores this process may use (at most 8)."""
    step_flops = 3 * flops_per_sample * batch_size  # forward + backward ≈ 3x forward
    if step_flops < PARALLEL_FLOPS_PER_STEP:
        return 1
    return min(8, available_cores())


def can_fork() -> bool:
    """Whether worker processes may start with fork (fast: nothing pickled, data shared copy-on-write).

    Not where CUDA exists: there autograd runs device threads once any backward pass has run, and CUDA cannot
    be initialized again in a forked child, so a forked worker fails ("Unable to handle autograd's threading in
    combination with fork-based multiprocessing"); spawn is used instead."""
    import multiprocessing

    import torch

    return "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_available()
