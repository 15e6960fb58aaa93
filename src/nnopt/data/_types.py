"""The data containers: Split (one part of a dataset as tensors) and Data (the three splits + metadata)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from nnopt.data._table import describe_columns

TASKS = ("classification", "regression")


@dataclass
class Split:
    """One split. X is float32 (n, n_features); y is int64 (n,) for classification, float32 otherwise."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class Data:
    """A dataset ready to train on: train/val/test splits, scaled on train, plus what produced them."""

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    n_features: int
    n_classes: int | None
    input_shape: tuple[int, ...] | None
    feature_names: list[str]
    class_names: list[str] | None
    target_scale: tuple[list[float], list[float]] | None
    preprocessing: dict
    source: str
    # one sample's shape as the source gave it, when it differs from input_shape: (n, C, L) arrays are signals
    # of shape (C, L) to a user's module, while nnopt's cnn reads (n, H, W) arrays as (1, H, W) images
    sample_shape: tuple[int, ...] | None = None
    images: dict | None = None  # an image folder: size, channels, how it was split, files that did not decode
    # the outputs of a network for two classes: 1 logit (BCE), or 2 (cross-entropy) where the network was written
    # with a two-class head (nn.Linear(..., 2), num_classes=2): set by training when the network returns 2
    binary_outputs: int = 1

    @property
    def n_outputs(self) -> int:
        """Width of the model's last layer: one logit for binary classification (BCE; binary_outputs=2: two logits,
        cross-entropy), K for K > 2 classes."""
        if self.task == "regression":
            return int(self.train.y.shape[1]) if self.train.y.dim() == 2 else 1
        return self.binary_outputs if self.n_classes == 2 else int(self.n_classes or 0)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "source": self.source,
            **({"columns": describe_columns(self.preprocessing["table"]),
                "target_missing_rows": self.preprocessing["table"].get("target_missing_rows", 0)}
               if self.preprocessing.get("table") else {}),
            **({"images": self.images} if self.images else {}),
        }

    def without_test(self) -> Data:
        """The same data with an empty test split: for work that must not read it (a search, a screen)."""
        test = Split(self.test.X[:0], self.test.y[:0]) if isinstance(self.test, Split) else self.test.empty()
        return dataclasses.replace(self, test=test)


@dataclass
class RawData:
    """What a reader hands to preparation: unsplit, unscaled numpy arrays plus what the source knows."""

    X: np.ndarray | None  # None for a table: its raw columns are in `columns`
    y: np.ndarray
    source: str
    feature_names: list[str] | None = None
    input_shape: tuple[int, ...] | None = None
    pixel_max: float | None = None  # set when X holds pixels: auto scaling divides by it
    test: tuple[np.ndarray, np.ndarray] | None = None  # a test split the source ships with
    class_names: list[str] | None = None  # names of labels 0..K-1 when the source has them
    target: str | None = None  # the target column of a table
    task: str | None = None  # the task the source is known to be
    columns: dict[str, np.ndarray] | None = None  # a table's feature columns as read (text, numbers, missing)
    paths: list[str] | None = None  # image files: the file of each row (test rows last)
    skipped: list[str] | None = None  # image files that did not decode, with the reason
    splits: list[str] | None = None  # an image folder's given split of each row (train / val / test)
    decimal_comma: list[str] | None = None  # table columns read as numbers written with a decimal comma ("94,71")
    thousands: list[str] | None = None  # table columns read as numbers written with thousands separators ("42,000")
