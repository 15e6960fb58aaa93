"""Training: fit() and its loop, metrics, callbacks, checkpoints and the run directory."""

from nnopt.train._callbacks import Callback
from nnopt.train._chunk import scoring_chunk
from nnopt.train._progress import ProgressBar, wants_bar
from nnopt.train._checkpoint import resume_settings
from nnopt.train._importance import (
    IMPORTANCE_MAX_ROWS,
    IMPORTANCE_REPEATS,
    importance_file,
    importance_metric,
    permutation_scores,
)
from nnopt.train._loop import FitResult, fit, fit_spec, run, train_loop
from nnopt.train._outputs import model_meta
from nnopt.train._parallel import Parallel
from nnopt.train._prepare import Prepared, build_for, check_forward, check_output, model_input_shape, prepare, \
    recorded_shape, two_logit_binary
from nnopt.train._lr_find import LRFindResult, find_lr, suggest_lr
from nnopt.train._metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metrics, metric_names
from nnopt.train._setup import training_targets, update_function
from nnopt.train._threads import choose_threads

__all__ = [
    "Callback", "ProgressBar", "wants_bar", "resume_settings", "FitResult", "fit", "fit_spec", "run", "train_loop",
    "prepare",
    "Prepared", "Parallel", "LRFindResult",
    "find_lr", "suggest_lr", "compute_metrics", "metric_names", "CLASSIFICATION_METRICS", "REGRESSION_METRICS",
    "choose_threads", "training_targets", "update_function", "IMPORTANCE_MAX_ROWS", "IMPORTANCE_REPEATS",
    "importance_file", "importance_metric", "permutation_scores", "build_for", "model_input_shape",
    "recorded_shape", "two_logit_binary",
    "scoring_chunk", "model_meta", "check_forward", "check_output",
]
