"""Comparing metrics that a training run computed with those nnopt evaluate computes again.

On the CPU both are computed the same way and must be equal, bit for bit. Where CUDA exists a run trains
(and scores its test split) on the GPU while evaluate scores on the CPU, so the two agree to float32 rounding."""

import math

import torch

ON_GPU = torch.cuda.is_available()


def same_metrics(got, expected):
    """Equal (dicts of metrics or single values); within 1e-5 relative where the run computed them on a GPU."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same_metrics(got[k], expected[k]) for k in got)
    if ON_GPU and isinstance(got, float) and isinstance(expected, float):
        return math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-9)
    return got == expected
