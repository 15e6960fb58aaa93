"""Hyperparameter search on Optuna: a spec (or any function) over a search space, samplers, pruners,
parallel workers on a journal file or a database, resume after a crash."""

from nnopt.search._evolution import RegularizedEvolutionSampler
from nnopt.search._objective import PruningCallback, objective_value
from nnopt.search._samplers import make_pruner, make_sampler
from nnopt.search._space import Param, Space
from nnopt.search._spec import PRUNERS, SAMPLERS, Objective, TuneSpec, load_tune_spec
from nnopt.search._storage import mask_url, open_storage, storage_for
from nnopt.search._tune import TuneResult, check_feasible, trials_csv, tune
from nnopt.search import nas
from nnopt.search.nas import ArchSpace, evolve

__all__ = [
    "ArchSpace", "PRUNERS", "SAMPLERS", "Objective", "Param", "PruningCallback", "RegularizedEvolutionSampler", "Space", "TuneResult", "TuneSpec",
    "check_feasible", "load_tune_spec", "evolve", "make_pruner", "nas", "make_sampler", "mask_url", "objective_value", "open_storage", "storage_for", "trials_csv",
    "tune",
]
