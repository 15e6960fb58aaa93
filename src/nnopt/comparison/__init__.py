"""Compare optimizers side by side: each at its own learning rate, K seeds, ranked by the test metric."""

from nnopt.comparison._compare import CompareResult, compare, results_csv
from nnopt.comparison._spec import SEED_OPTIMIZERS, parse_optimizers, parse_target

__all__ = ["CompareResult", "compare", "results_csv", "SEED_OPTIMIZERS", "parse_optimizers", "parse_target"]
