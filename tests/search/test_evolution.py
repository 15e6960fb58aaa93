"""Regularized evolution as an Optuna sampler: population P, tournament of S, one mutation, aging."""

import statistics

import numpy as np
import optuna
import pytest

from nnopt.errors import UsageError
from nnopt.search import RegularizedEvolutionSampler, tune
from nnopt.search._evolution import MUTATED, PARENT, SAMPLE

OPS = ["none", "skip", "conv1x1", "conv3x3", "pool"]
EDGES = [f"edge{i}" for i in range(6)]  # a NAS-Bench-201-shaped cell: 6 edges x 5 operations


def cell_score(params):
    """A synthetic benchmark with a known optimum (conv3x3 everywhere = 1.0) and interactions between edges."""
    rng = np.random.default_rng(7)
    table = rng.uniform(0.0, 0.6, size=(6, 5))
    table[:, OPS.index("conv3x3")] = 1.0
    values = [table[i, OPS.index(params[e])] for i, e in enumerate(EDGES)]
    bonus = 0.2 * sum(params[a] == params[b] == "conv3x3" for a, b in zip(EDGES, EDGES[1:]))
    return (sum(values) + bonus) / (6 + 0.2 * 5)


def _objective(trial):
    return cell_score({e: trial.suggest_categorical(e, OPS) for e in EDGES})


def test_population_tournament_single_mutation_and_aging():
    P, S = 8, 3
    study = optuna.create_study(direction="maximize", sampler=RegularizedEvolutionSampler(P, S, seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(_objective, n_trials=60)
    trials = study.get_trials()
    assert all(PARENT not in t.system_attrs for t in trials[:P])  # the initial population is random
    children = [t for t in trials if PARENT in t.system_attrs]
    assert len(children) == 60 - P
    for child in children:
        before = [t for t in trials if t.number < child.number]  # sequential: all finished before the child
        population = {t.number for t in before[-P:]}  # aged: only the P most recent
        sample = child.system_attrs[SAMPLE]
        assert len(sample) == S and len(set(sample)) == S and set(sample) <= population
        parent = trials[child.system_attrs[PARENT]]
        assert parent.value == max(trials[n].value for n in sample)  # tournament winner
        changed = [k for k in child.params if child.params[k] != parent.params[k]]
        assert changed == [child.system_attrs[MUTATED]]  # exactly one parameter mutated


def test_evolution_beats_random_search_at_equal_budget():
    def best(sampler_name, seed):
        result = tune(cell_score, space={e: {"choices": OPS} for e in EDGES}, sampler=sampler_name,
                      trials=150, seed=seed, **({"sampler_params": {"population": 20, "sample": 5}}
                                               if sampler_name == "evolution" else {}))
        return result.best_value

    evolution = [best("evolution", s) for s in range(5)]
    random = [best("random", s) for s in range(5)]
    assert statistics.median(evolution) > statistics.median(random)
    assert max(evolution) == pytest.approx(1.0)  # the known optimum was found


def test_bad_settings():
    with pytest.raises(UsageError, match="population must be an integer >= 2"):
        RegularizedEvolutionSampler(population=1)
    with pytest.raises(UsageError, match="sample must be an integer in"):
        RegularizedEvolutionSampler(population=5, sample=6)
    with pytest.raises(UsageError, match="optimizes one objective"):
        tune(lambda p: (1.0, 2.0), space={"a": {"choices": [1, 2]}}, directions=["maximize", "minimize"],
             sampler="evolution")


def test_population_and_sample_defaults_scale_with_the_budget():
    from nnopt.search._evolution import default_sizes

    assert default_sizes(30, {}) == {"population": 6, "sample": 2}
    assert default_sizes(150, {}) == {"population": 20, "sample": 5}
    assert default_sizes(10, {}) == {"population": 4, "sample": 2}
    assert default_sizes(1000, {"population": 50}) == {"population": 50, "sample": 5}
    assert default_sizes(30, {"population": 2}) == {"population": 2, "sample": 2}
    result = tune(lambda p: float(p["x"] == "b"), space={"x": {"choices": ["a", "b", "c"]}}, sampler="evolution",
                  trials=12, seed=0)
    assert result.config["sampler_settings"] == {"population": 4, "sample": 2}
