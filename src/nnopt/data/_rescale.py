"""A recorded feature transform put back on freshly loaded data: a run that continues (train --resume) or a model
compressed later keeps the scaling it was trained with, even where load_data's rule for that data has changed
since (8-bit images divided by 255 before scale="auto" standardized them per channel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from nnopt.errors import CheckpointError
from nnopt.data._memmap import MemmapSplit
from nnopt.data._scale import apply_features
from nnopt.data._types import Data, Split

SPLITS = ("train", "val", "test")


def feature_scaling_of(preprocessing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The feature transform of a preprocessing record: its x_* entries (x_scale and its statistics), or None
    when it records none."""
    found = {k: v for k, v in (preprocessing or {}).items() if k.startswith("x_")}
    return found if "x_scale" in found else None


def scaling_words(scaling: dict[str, Any]) -> str:
    kind = scaling.get("x_scale")
    if kind == "pixel":
        return f"pixels divided by {scaling.get('x_divisor'):g}"
    if kind == "channel":
        return f"standardized per channel ({len(scaling.get('x_mean', []))} channels)"
    return {"standard": "standardized per feature", "minmax": "min-max scaled", "none": "unscaled"}.get(kind, kind)


def with_scaling(data: Data, recorded: dict[str, Any], unscaled: Callable[[], Data], what: str) -> Data:
    """`data` with its features scaled by `recorded` (feature_scaling_of a model file's or checkpoint's
    preprocessing) instead of the transform fitted now, when the two differ. `unscaled()` loads the same data
    with scale="none" (the same split: the split does not depend on the scaling); labels and regression targets
    are kept from `data`. Rows read from a torch Dataset are not rescaled here: a mismatch there is a
    CheckpointError naming both transforms (`what`: the run or file that recorded one)."""
    fresh = feature_scaling_of(data.preprocessing)
    if fresh == recorded:
        return data
    if not all(isinstance(getattr(data, s), (Split, MemmapSplit)) for s in SPLITS):
        raise CheckpointError(f"{what} was trained on features {scaling_words(recorded)}, and these data now load "
                              f"{scaling_words(fresh or {'x_scale': 'none'})}; give the data as arrays or a "
                              "file, or start a new run")
    raw = unscaled()
    if raw is data:  # a Data given as is: there are no raw rows to scale again
        raise CheckpointError(f"{what} was trained on features {scaling_words(recorded)}, and this Data is "
                              f"{scaling_words(fresh or {'x_scale': 'none'})}; give the raw data (arrays, a file "
                              "or a dataset name) so that the recorded scaling can be applied to it")
    parts = {}
    for name in SPLITS:
        mine, theirs = getattr(data, name), getattr(raw, name)
        if isinstance(mine, MemmapSplit):
            parts[name] = replace(mine, x_params=dict(recorded))
        else:
            parts[name] = Split(torch.from_numpy(apply_features(theirs.X.numpy(), recorded)), mine.y)
    kept = {k: v for k, v in data.preprocessing.items() if not k.startswith("x_")}
    return replace(data, preprocessing={**kept, **recorded}, **parts)
