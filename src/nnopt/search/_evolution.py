"""Regularized evolution (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search")
as an Optuna sampler, so it shares Optuna's storages, workers and resume.

The population is the P most recently finished trials (complete ones): adding a child ages out the oldest.
Each new trial draws S members of the population uniformly at random, takes the best as its parent, copies the
parent's parameters and mutates exactly one of them to a different value. Until P trials have finished, trials
are sampled at random (the initial population). Parameters the parent lacks (a conditional parameter whose
condition the mutation switched on) are sampled at random.

Defaults scale with the study's budget N: P = N/5 within [4, 20] and S = P/4 within [2, 5] (P = 20, S = 5 from
100 trials on), so a short study still spends most of its trials evolving; the paper used P = 100, S = 25 over
20,000 models. Set them with sampler_params: {population: P, sample: S}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nnopt.errors import UsageError

PARENT, MUTATED, SAMPLE = "evolution:parent", "evolution:mutated", "evolution:sample"
MAX_POPULATION, MAX_SAMPLE = 20, 5


def default_sizes(n_trials: int, params: dict[str, Any]) -> dict[str, Any]:
    """P and S for a study of n_trials unless given: P = N/5 within [4, 20], S = P/4 within [2, 5] — a
    population of 20 would leave a 30-trial study random for two thirds of its budget."""
    population = params.get("population", min(MAX_POPULATION, max(4, n_trials // 5)))
    sample = params.get("sample", min(MAX_SAMPLE, max(2, population // 4)) if isinstance(population, int) else 2)
    if isinstance(population, int) and isinstance(sample, int) and "sample" not in params:
        sample = min(sample, population)
    return {**params, "population": population, "sample": sample}


class RegularizedEvolutionSampler(BaseSampler):
    def __init__(self, population: int = 20, sample: int = 5, seed: int | None = None):
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise UsageError(f"evolution population must be an integer >= 2; got {population!r}")
        if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= population:
            raise UsageError(f"evolution sample must be an integer in [1, population={population}]; got {sample!r}")
        self.population, self.sample = population, sample
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if len(study.directions) != 1:
            raise UsageError("sampler 'evolution' optimizes one objective; use nsga2 for several")
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if len(finished) < self.population:
            return  # building the initial population at random
        finished.sort(key=lambda t: t.datetime_complete or t.datetime_start)
        population = finished[-self.population:]  # the oldest members have aged out
        drawn = [population[i] for i in self._rng.choice(len(population), self.sample, replace=False)]
        maximize = study.direction == StudyDirection.MAXIMIZE
        parent = (max if maximize else min)(drawn, key=lambda t: t.value)
        mutated = str(self._rng.choice(sorted(parent.params))) if parent.params else ""
        storage = study._storage
        storage.set_trial_system_attr(trial._trial_id, PARENT, parent.number)
        storage.set_trial_system_attr(trial._trial_id, MUTATED, mutated)
        storage.set_trial_system_attr(trial._trial_id, SAMPLE, [t.number for t in drawn])

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        attrs = trial.system_attrs
        if PARENT not in attrs:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        parent = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, attrs[PARENT]))
        if param_name not in parent.params or not param_distribution._contains(
                param_distribution.to_internal_repr(parent.params[param_name])):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        value = parent.params[param_name]
        if param_name != attrs[MUTATED]:
            return value
        return self._mutate(value, param_distribution, study, trial, param_name)

    def _mutate(self, value: Any, distribution: BaseDistribution, study: optuna.Study, trial: FrozenTrial,
                name: str) -> Any:
        """A different value of the same parameter (uniform over the others for choices and steps)."""
        if isinstance(distribution, CategoricalDistribution):
            others = [c for c in distribution.choices if c != value]
            return others[self._rng.randint(len(others))] if others else value
        if isinstance(distribution, IntDistribution) and not distribution.log:
            others = [v for v in range(distribution.low, distribution.high + 1, distribution.step) if v != value]
            return others[self._rng.randint(len(others))] if others else value
        if isinstance(distribution, FloatDistribution) and distribution.step is not None:
            n = int(round((distribution.high - distribution.low) / distribution.step))
            others = [distribution.low + k * distribution.step for k in range(n + 1)]
            others = [v for v in others if not np.isclose(v, value)]
            return others[self._rng.randint(len(others))] if others else value
        for _ in range(16):  # continuous or log-int: a fresh draw, which differs almost surely
            candidate = self._random.sample_independent(study, trial, name, distribution)
            if candidate != value:
                return candidate
        return value
