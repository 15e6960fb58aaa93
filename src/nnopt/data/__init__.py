"""Data for nnopt: built-in datasets, file readers (csv, npz, idx, parquet), seeded splits, scaling, batching.

    data = load_data("digits")                       # or a path, or (X, y) arrays
    for xb, yb in epoch_batches(data.train.X, data.train.y, 64, generator):
        ...
"""

from nnopt.data._batches import batch_count, epoch_batches
from nnopt.data._builtin import DATASETS, list_datasets
from nnopt.data._images import image_split
from nnopt.data._in_memory import IN_MEMORY_BYTES, in_memory
from nnopt.data._load import is_frame, load_data
from nnopt.data._prepare import check_fractions, detect_task
from nnopt.data._rows import load_rows, split_positions
from nnopt.data._scale import apply_preprocessing, apply_target, feature_stat
from nnopt.data._table import column_groups, describe_columns, dropped_ids, encode as encode_table, kept_columns
from nnopt.data._memmap import MemmapSplit
from nnopt.data._rescale import feature_scaling_of, scaling_words, with_scaling
from nnopt.data._torch_dataset import DatasetSplit, is_torch_source
from nnopt.data._types import Data, Split
from nnopt.data._values import canonical_text

__all__ = ["DATASETS", "IN_MEMORY_BYTES", "Data", "DatasetSplit", "MemmapSplit", "Split", "apply_preprocessing", "apply_target",
           "batch_count", "canonical_text", "check_fractions", "column_groups", "feature_stat", "describe_columns",
           "detect_task", "dropped_ids",
           "encode_table", "epoch_batches", "image_split", "in_memory", "is_frame", "is_torch_source", "kept_columns",
           "feature_scaling_of", "list_datasets", "load_data", "load_rows", "scaling_words", "split_positions",
           "with_scaling"]
