"""Space: parsing and validation of `space:`, conditional suggestion, grid, round trip."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from nnopt.errors import ConfigError
from nnopt.search._space import Param, Space

EXAMPLE = yaml.safe_load("""
optimizer: {choices: [sgd, momentum, adam, rmsprop]}
lr: {type: float, low: 1.0e-5, high: 1.0, log: true}
momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [sgd, momentum]}}
batch_size: {choices: [16, 32, 64, 128, full]}
hidden: {type: int, low: 16, high: 512, log: true}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
""")


def test_example_space_parses():
    space = Space.parse(EXAMPLE)
    assert space.names() == ["optimizer", "lr", "momentum", "batch_size", "hidden", "dropout"]
    assert space["optimizer"].kind == "categorical" and space["optimizer"].choices == ("sgd", "momentum", "adam", "rmsprop")
    assert space["lr"].log and space["lr"].low == 1e-5
    assert space["momentum"].when == {"optimizer": ("sgd", "momentum")}
    assert space["batch_size"].choices[-1] == "full"
    assert isinstance(space["hidden"].distribution(), optuna.distributions.IntDistribution)
    assert space["dropout"].distribution() == optuna.distributions.FloatDistribution(0.0, 0.5, step=0.05)
    assert isinstance(space["optimizer"].distribution(), optuna.distributions.CategoricalDistribution)


def test_dependencies_are_suggested_first():
    space = Space.parse({
        "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "momentum"}},
        "lr": {"type": "float", "low": 0.1, "high": 1.0},
        "optimizer": {"choices": ["adam", "momentum"]},
    })
    assert space.names() == ["lr", "optimizer", "momentum"]


def test_when_cycle_is_an_error():
    with pytest.raises(ConfigError, match="cycle through when:"):
        Space.parse({"a": {"choices": [1, 2], "when": {"b": 1}}, "b": {"choices": [1, 2], "when": {"a": 1}}})


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_conditional_param_with_fixed_trial(optimizer):
    values = {"optimizer": optimizer, "lr": 0.01, "momentum": 0.9, "batch_size": 32, "hidden": 64, "dropout": 0.1}
    params = Space.parse(EXAMPLE).suggest(optuna.trial.FixedTrial(values))
    assert ("momentum" in params) == (optimizer in ("sgd", "momentum"))
    assert params["optimizer"] == optimizer and params["hidden"] == 64


def test_conditional_param_in_a_real_study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space.parse(EXAMPLE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial):
        params = space.suggest(trial)
        seen.append(params)
        return params["lr"]

    study.optimize(objective, n_trials=200)
    assert len(seen) == 200
    for params, trial in zip(seen, study.trials):
        assert ("momentum" in params) == (params["optimizer"] in ("sgd", "momentum"))
        assert trial.params == params
        assert 16 <= params["hidden"] <= 512 and 0.5 <= params.get("momentum", 0.5) <= 0.99
        assert round(params["dropout"] / 0.05, 6).is_integer()
    assert {p["optimizer"] for p in seen} == {"sgd", "momentum", "adam", "rmsprop"}
    assert "full" in {p["batch_size"] for p in seen}


def test_nested_condition_is_absent_when_its_parent_is():
    space = Space.parse({
        "optimizer": {"choices": ["adam", "momentum"]},
        "momentum": {"choices": [0.9, 0.99], "when": {"optimizer": "momentum"}},
        "dampening": {"type": "float", "low": 0.0, "high": 0.5, "when": {"momentum": 0.9}},
    })
    fixed = {"optimizer": "adam", "momentum": 0.9, "dampening": 0.1}
    assert space.suggest(optuna.trial.FixedTrial(fixed)) == {"optimizer": "adam"}
    fixed["optimizer"] = "momentum"
    assert space.suggest(optuna.trial.FixedTrial(fixed)) == fixed


def test_grid():
    space = Space.parse({
        "optimizer": {"choices": ["sgd", "adam"]},
        "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
        "layers": {"type": "int", "low": 1, "high": 3},
        "dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        "flag": {"choices": [True, False, None]},
    })
    assert space.grid() == {
        "optimizer": ["sgd", "adam"], "hidden": [16, 32, 48, 64], "layers": [1, 2, 3],
        "dropout": [0.0, 0.1, 0.2, 0.3], "flag": [True, False, None],
    }
    optuna.samplers.GridSampler(space.grid())  # accepted by Optuna


def test_grid_errors():
    with pytest.raises(ConfigError, match=r"^grid sampler needs a finite space: 'lr' is a continuous float; "
                                          r"give it a step or choices$"):
        Space.parse({"lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True}}).grid()
    with pytest.raises(ConfigError, match=r"grid sampler does not support conditional parameters \('momentum' "
                                          r"has when:\); use random or tpe"):
        Space.parse(EXAMPLE).grid()
    with pytest.raises(ConfigError, match="'hidden' would take 2001 values"):
        Space.parse({"hidden": {"type": "int", "low": 0, "high": 2000}}).grid()


def test_round_trip_and_json():
    space = Space.parse(EXAMPLE)
    data = space.to_dict()
    assert Space.parse(json.loads(json.dumps(data))) == space
    assert data["lr"] == {"type": "float", "low": 1e-5, "high": 1.0, "log": True}
    assert data["momentum"]["when"] == {"optimizer": ["sgd", "momentum"]}


def test_yaml_numeric_strings():
    raw = yaml.safe_load("""
lr: {type: float, low: 1e-5, high: 1e0, log: true}
wd: {choices: [0, 1e-4, 1e-3]}
dropout: {type: float, low: 0, high: 5e-1, step: 5e-2}
""")
    assert raw["lr"]["low"] == "1e-5"  # what PyYAML (YAML 1.1) does
    space = Space.parse(raw)
    assert (space["lr"].low, space["lr"].high) == (1e-5, 1.0)
    assert space["wd"].choices == (0, 1e-4, 1e-3)
    assert space["dropout"].step == 0.05
    assert Space.parse({"h": {"type": "int", "low": "16", "high": 64.0}})["h"].low == 16


def test_choices_may_mix_types():
    param = Space.parse({"x": {"choices": [2, 2.5, "full", None, True]}})["x"]
    assert param.choices == (2, 2.5, "full", None, True)
    assert param.distribution().choices == (2, 2.5, "full", None, True)


BAD = [
    ({"lr": {"type": "float", "low": 0.1, "hgh": 1}}, "unknown key 'hgh' in space parameter 'lr'; did you mean 'high'? "
                                                      "keys: type, low, high, log, step, choices, when"),
    ({"lr": {"type": "flaot", "low": 0.1, "high": 1}}, "unknown param type 'flaot' for 'lr'; did you mean 'float'? "
                                                       "choices: float, int, categorical"),
    ({"lr": {"type": "float", "low": 1, "high": 0.1}}, "'lr': low must be <= high; got low 1.0, high 0.1"),
    ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "'lr': log scale needs low > 0; got 0"),
    ({"h": {"type": "int", "low": 0, "high": 8, "log": True}}, "'h': log scale needs low > 0; got 0"),
    ({"lr": {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}}, "log and step cannot be combined"),
    ({"x": {"choices": []}}, "'x': choices must be a non-empty list"),
    ({"x": {"choices": "sgd"}}, "'x': choices must be a non-empty list"),
    ({"x": {"choices": [16, 32, 16]}}, "'x': choice 16 is listed twice"),
    ({"x": {"choices": [1, True]}}, "'x': choice True equals 1 to Optuna"),
    ({"x": {"choices": [[64, 32], [128]]}}, "'x': choice [64, 32] is a list"),
    ({"x": {"choices": [1], "low": 0}}, "low/high/log/step do not apply to choices"),
    ({"x": {"type": "int", "choices": [1, 2]}}, "'x': type: int takes low and high, not choices"),
    ({"x": {"type": "float", "low": 0}}, "'x': type: float needs low and high"),
    ({"x": {"low": 0, "high": 1}}, "space parameter 'x' needs choices: [...] or type: float|int"),
    ({"x": {"type": "int", "low": 1.5, "high": 4}}, "'x': low must be an integer for an int param; got 1.5"),
    ({"x": {"type": "float", "low": "abc", "high": 1}}, "'x': low must be a finite number; got 'abc'"),
    ({"x": {"type": "float", "low": 0, "high": 0.52, "step": 0.05}}, "must be a multiple of step 0.05; got low 0.0, "
                                                                     "high 0.52 (use high: 0.5)"),
    ({"x": {"type": "int", "low": 1, "high": 8, "step": 0}}, "'x': step must be > 0; got 0"),
    ({"x": {"type": "float", "low": 0, "high": 1, "log": "yes"}}, "'x': log must be true or false"),
    ({"x": [1, 2]}, "space parameter 'x' must be a mapping"),
    ({"x": 3}, "space parameter 'x' must be a mapping"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"optimzer": ["sgd"]}}, "optimizer": {"choices": ["sgd"]}},
     "'m': when: names 'optimzer', which is not in space; did you mean 'optimizer'?"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"optimizer": ["sgd", "adm"]}},
      "optimizer": {"choices": ["sgd", "adam"]}}, "'m': when: optimizer lists 'adm', which is not among its choices"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"lr": [0.1]}}, "lr": {"type": "float", "low": 0, "high": 1}},
     "conditions can only name categorical or int parameters"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"m": [0.1]}}}, "names 'm' itself"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": "sgd"}}, "'m': when must be a mapping"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {}}}, "'m': when must map other parameters"),
    ({}, "space is empty"),
    ([{"lr": 1}], "space must be a mapping"),
    ({"1x": {"choices": [1]}}, "space parameter name '1x' must be a name"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_space(raw, message):
    with pytest.raises(ConfigError) as info:
        Space.parse(raw)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_param_constructed_directly_is_validated():
    with pytest.raises(ConfigError, match="log scale needs low > 0"):
        Param("lr", "float", low=0.0, high=1.0, log=True)
    assert Param("h", "int", low=1, high=4).distribution() == optuna.distributions.IntDistribution(1, 4)
