"""Sampler and pruner names -> Optuna objects (Optuna is the engine; nothing here re-implements it)."""

from __future__ import annotations

from typing import Any

import optuna

from nnopt.errors import UsageError, param
from nnopt.search._evolution import RegularizedEvolutionSampler
from nnopt.search._storage import experimental_ok


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask/tell loops: it calls study.stop() once the grid is covered, which
    Optuna allows only inside study.optimize(); nnopt's trial loop stops at the grid's size instead."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def make_sampler(name: str, *, seed: int | None, grid: dict[str, list] | None, multi_objective: bool,
                 params: dict[str, Any]) -> optuna.samplers.BaseSampler:
    samplers = optuna.samplers
    if name == "grid":
        return _GridSampler(grid or {}, seed=seed, **params)
    if name == "random":
        return samplers.RandomSampler(seed=seed, **params)
    if name == "tpe":
        # multivariate + group model conditional spaces jointly; constant_liar keeps parallel workers apart
        options = {"multivariate": True, "group": True, "constant_liar": True, **params}
        with experimental_ok():
            return samplers.TPESampler(seed=seed, **options)
    if name == "gp":
        return samplers.GPSampler(seed=seed, **params)
    if name == "cmaes":
        if multi_objective:
            raise UsageError("sampler 'cmaes' optimizes one objective; use nsga2 or tpe for several")
        return samplers.CmaEsSampler(seed=seed, **params)
    if name == "qmc":
        with experimental_ok():
            return samplers.QMCSampler(seed=seed, **params)
    if name == "nsga2":
        return samplers.NSGAIISampler(seed=seed, **params)
    if name == "evolution":
        if multi_objective:
            raise UsageError("sampler 'evolution' optimizes one objective; use nsga2 for several")
        return RegularizedEvolutionSampler(seed=seed, **params)
    raise UsageError(f"unknown sampler '{name}'")


def make_pruner(name: str, *, epochs: int | None, multi_objective: bool,
                params: dict[str, Any]) -> optuna.pruners.BasePruner:
    if name != "none" and multi_objective:
        raise UsageError(f"pruner '{name}' needs a single objective (Optuna cannot prune multi-objective "
                         f"trials); use {param('pruner', 'none')}")
    pruners = optuna.pruners
    if name == "none":
        return pruners.NopPruner()
    if name == "median":
        return pruners.MedianPruner(**{"n_startup_trials": 5, "n_warmup_steps": 1, **params})
    if name == "asha":
        return pruners.SuccessiveHalvingPruner(**{"min_resource": 1, "reduction_factor": 3, **params})
    if name == "hyperband":
        return pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": epochs or "auto",
                                          "reduction_factor": 3, **params})
    raise UsageError(f"unknown pruner '{name}'")
