"""TuneSpec: loading and validating the tune YAML, per-trial train specs, objectives, round trip."""

from __future__ import annotations

import copy
import json

import optuna
import pytest

from nnopt.config import TrainSpec, spec_from_mapping
from nnopt.errors import ConfigError, UsageError
from nnopt.search._spec import PRUNERS, SAMPLERS, Objective, TuneSpec, load_tune_spec

EXAMPLE_YAML = """\
data: digits            # any data source nnopt train accepts (+ target/task)
model: mlp:{hidden}     # template filled from the space, or a model spec dict
train: {epochs: 20, batch_size: 64}
objective: {metric: val_accuracy, direction: maximize}   # or a list for multi-objective (e.g. + params minimize)
space:
  optimizer: {choices: [sgd, momentum, adam, rmsprop]}
  lr: {type: float, low: 1.0e-5, high: 1.0, log: true}
  momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [sgd, momentum]}}   # conditional
  batch_size: {choices: [16, 32, 64, 128, full]}
  hidden: {type: int, low: 16, high: 512, log: true}
  dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
"""

BASE = {
    "data": "digits",
    "model": "mlp:{hidden}",
    "space": {
        "optimizer": {"choices": ["sgd", "momentum", "adam", "rmsprop"]},
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
        "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd", "momentum"]}},
        "hidden": {"type": "int", "low": 16, "high": 512, "log": True},
    },
}


def spec_with(**changes):
    raw = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def space_with(**params):
    return {**copy.deepcopy(BASE["space"]), **params}


def test_example_yaml_parses(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(EXAMPLE_YAML)
    spec = load_tune_spec(path)
    assert spec.data == "digits" and spec.model == "mlp:{hidden}"
    assert spec.train == {"epochs": 20, "batch_size": 64}
    assert spec.objectives == [Objective("val_accuracy", "maximize")]
    assert spec.space.names() == ["optimizer", "lr", "momentum", "batch_size", "hidden", "dropout"]
    assert spec.sampler is None and spec.trials is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tune.yaml"]  # loading writes nothing


def test_constants():
    assert SAMPLERS == ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2", "evolution")
    assert PRUNERS == ("none", "median", "asha", "hyperband")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text("data: digits\nspace: {lr: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_tune_spec(path)


BAD = [
    (spec_with(sampeler="tpe"), "unknown key 'sampeler' in the tune spec; did you mean 'sampler'? keys: data, target"),
    (spec_with(data=None), "needs data:"),
    (spec_with(space=None), "needs a space:"),
    (spec_with(space={}), "space is empty"),
    (spec_with(task="clasification"), "task must be one of classification, regression"),
    (spec_with(model="mlp:{hiden}"), "model template 'mlp:{hiden}' names {hiden}, which is not in space; add it to "
                                     "space or fix the name; did you mean 'hidden'?"),
    (spec_with(model="mlp:{0}"), "placeholder {0} must be a space parameter name"),
    (spec_with(model="mlp:{hidden"), "malformed model template"),
    (spec_with(model="mlpp:{hidden}"), "unknown model 'mlpp'; did you mean 'mlp'?"),
    (spec_with(model="mlp:{hidden}", space=space_with(hidden={"type": "int", "low": 0, "high": 8})),
     "model template 'mlp:{hidden}' does not give a valid model with hidden=0: model 'mlp:0': layer sizes must be >= 1"),
    (spec_with(model="mlp:{momentum}"), "names {momentum}, which is conditional (when:)"),
    (spec_with(sampler="tpee"), "unknown sampler 'tpee'; did you mean 'tpe'? choices: grid, random, tpe"),
    (spec_with(pruner="medain"), "unknown pruner 'medain'; did you mean 'median'? choices: none, median, asha, hyperband"),
    (spec_with(sampler="grid"), "grid sampler does not support conditional parameters ('momentum' has when:)"),
    (spec_with(sampler="grid", space={"lr": {"type": "float", "low": 0.1, "high": 1}, "hidden": {"choices": [8]}}),
     "grid sampler needs a finite space: 'lr' is a continuous float; give it a step or choices"),
    (spec_with(trials=0), "trials must be an integer >= 1; got 0"),
    (spec_with(trials=2.5), "trials must be an integer >= 1; got 2.5"),
    (spec_with(workers=0), "workers must be an integer >= 1; got 0"),
    (spec_with(timeout=0), "timeout must be a number of seconds > 0; got 0"),
    (spec_with(seed=-1), "seed must be an integer >= 0; got -1"),
    (spec_with(storage=""), "storage must be a non-empty string"),
    (spec_with(sampler_params=[1]), "sampler_params must be a mapping"),
    (spec_with(objective={"metric": "val_accuracy", "direction": "max"}),
     "objective direction for val_accuracy must be maximize or minimize; got 'max'"),
    (spec_with(objective=[]), "objective lists no metrics"),
    (spec_with(objective=[{"metric": "val_loss"}, {"metric": "val_loss", "direction": "minimize"}]),
     "objective lists metric 'val_loss' twice"),
    (spec_with(objective={"metric": "val_acuracy"}), "objective metric 'val_acuracy' does not exist; did you mean "
                                                     "'val_accuracy'?"),
    (spec_with(objective={"metric": "val_loss", "goal": "min"}), "unknown key 'goal' in objective"),
    (spec_with(objective=3), "objective must be {metric: NAME, direction: maximize|minimize}"),
    (spec_with(objective=[{"metric": "val_loss"}, {"metric": "params"}], pruner="median"),
     "pruner 'median' needs a single objective"),
    (spec_with(space=space_with(hiden={"choices": [1, 2]})),
     "space parameter 'hiden' is used nowhere: not a train setting, not a {placeholder} or option of the model, not an "
     "optimizer option (of sgd, momentum, adam, rmsprop); did you mean 'hidden'? rename it or remove it"),
    (spec_with(space={"hidden": {"choices": [8]}, "momentum": {"type": "float", "low": 0.5, "high": 0.9}}),
     "space parameter 'momentum' is used nowhere"),  # adam (the default optimizer) has no momentum
    (spec_with(space={"hidden": {"choices": [8]}, "optimizer": {"choices": ["sgd", "adm"]}}),
     "space parameter 'optimizer': unknown optimizer 'adm'; did you mean 'adam'?"),
    (spec_with(space={"hidden": {"choices": [8]}, "optimizer": {"type": "int", "low": 1, "high": 2}}),
     "'optimizer' must be categorical"),
    (spec_with(space=space_with(lr={"type": "float", "low": 0, "high": 1})),
     "space parameter 'lr' can take 0.0, which training rejects: lr= must be > 0; got 0.0"),
    (spec_with(space=space_with(batch_size={"choices": [0, "full"]})),
     "space parameter 'batch_size' can take 0, which training rejects"),
    (spec_with(space=space_with(batch_size={"choices": [32, "half"]})),
     "space parameter 'batch_size' can take 'half', which training rejects"),
    (spec_with(space=space_with(schedule={"choices": [None, "cosin"]})),
     "space parameter 'schedule': unknown schedule 'cosin'; did you mean 'cosine'?"),
    (spec_with(space=space_with(dropout={"type": "float", "low": 0.0, "high": 1.0})),
     "does not give a valid model with hidden=512, dropout=1.0: model 'mlp:512:dropout=1': dropout must be in [0, 1)"),
    (spec_with(model="linear", space={"dropout": {"choices": [0.1]}, "lr": {"type": "float", "low": 0.1, "high": 1}}),
     "space parameter 'dropout' cannot set the model's dropout"),
    (spec_with(train={"epoch": 3}), "unknown key 'epoch' in train; did you mean 'epochs'?"),
    (spec_with(train={"seed": 3}), "'seed' is not allowed under train:; set it at the top level"),
    (spec_with(train={"out": "x"}), "'out' is not allowed under train:"),
    (spec_with(train={"epochs": 0}), "train: epochs= must be an integer >= 1; got 0"),
    (spec_with(train=[1]), "train: must be a mapping"),
    (spec_with(train={"optimizer": "adam", "optimizer_params": {"momentum": 0.9}}, space={"hidden": {"choices": [8]}}),
     "optimizer 'adam' has no option 'momentum' (train: optimizer_params)"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m[:48] for _, m in BAD])
def test_bad_spec(raw, message):
    with pytest.raises(ConfigError) as info:
        load_tune_spec(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, choices", [("log", ["csv", "tensorboard"]), ("nproc", [1, 2]),
                                           ("strategy", ["ddp", "hogwild"]), ("max_restarts", [0, 1])])
def test_run_settings_are_not_tunable(name, choices):
    """Loggers and process settings say how a run is carried out; a space naming one is an unused parameter."""
    with pytest.raises(ConfigError, match=f"space parameter '{name}' is used nowhere: not a train setting"):
        load_tune_spec(spec_with(space=space_with(**{name: {"choices": choices}})))
    # a model placeholder of that name fills the model and never reaches the trial's train settings
    spec = load_tune_spec(spec_with(model="mlp:{hidden}:dropout={" + name + "}",
                                    space=space_with(**{name: {"choices": [0.1]}})))
    trial = spec.trial_train_spec({"lr": 0.01, "hidden": 8, "optimizer": "sgd", name: 0.1})
    assert name not in trial and trial["model"] == "mlp:8:dropout=0.1"


def test_flag_values_are_usage_errors_named_as_arguments():
    with pytest.raises(UsageError, match=r"^trials= must be an integer >= 1; got 0$") as info:
        load_tune_spec(BASE, {"trials": 0})
    assert not isinstance(info.value, ConfigError)
    with pytest.raises(UsageError, match=r"^timeout= must be a number of seconds > 0; got -1"):
        load_tune_spec(BASE, {"timeout": -1})
    with pytest.raises(UsageError, match=r"^unknown sampler 'tpee' \(sampler=\); did you mean 'tpe'\?"):
        load_tune_spec(BASE, {"sampler": "tpee"})
    with pytest.raises(UsageError, match="^unknown key 'bogus'"):
        load_tune_spec(BASE, {"bogus": 1})


def test_overrides_replace_keys_and_none_is_ignored():
    spec = load_tune_spec(spec_with(trials=5, sampler="tpe"),
                          {"trials": "20", "sampler": None, "pruner": "median", "timeout": "1e3", "workers": 2})
    assert (spec.trials, spec.sampler, spec.pruner, spec.timeout, spec.workers) == (20, "tpe", "median", 1000.0, 2)


def test_yaml_numeric_strings(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text("data: digits\nmodel: mlp:{hidden}\ntimeout: 1e3\ntrain: {lr: 1e-3, epochs: 3}\n"
                    "space:\n  hidden: {type: int, low: 16, high: 64}\n  weight_decay: {choices: [0, 1e-4]}\n")
    spec = load_tune_spec(path)
    assert spec.timeout == 1000.0 and spec.train == {"lr": 1e-3, "epochs": 3}
    assert spec.space["weight_decay"].choices == (0, 1e-4)


def test_model_template_repeated_placeholder_and_fixed_model():
    spec = load_tune_spec(spec_with(model="mlp:{width},{width}:act={act}",
                                    space={"width": {"type": "int", "low": 8, "high": 64},
                                           "act": {"choices": ["relu", "tanh"]}}))
    assert spec.trial_train_spec({"width": 32, "act": "tanh"})["model"] == "mlp:32,32:act=tanh"
    spec = load_tune_spec(spec_with(model="cnn:16,32", space={"lr": {"type": "float", "low": 0.1, "high": 1}}))
    assert spec.trial_train_spec({"lr": 0.5})["model"] == "cnn:16,32"


def test_trial_train_spec():
    spec = load_tune_spec(EXAMPLE_SPEC := spec_with(
        target="y", task="classification", train={"epochs": 20, "batch_size": 64},
        space=space_with(batch_size={"choices": [16, "full"]}, weight_decay={"choices": [0.0, 0.01]},
                         dropout={"type": "float", "low": 0.0, "high": 0.5, "step": 0.05})))
    assert EXAMPLE_SPEC["model"] == "mlp:{hidden}"
    base = {"lr": 0.01, "hidden": 64, "batch_size": "full", "weight_decay": 0.01, "dropout": 0.0}
    momentum = spec.trial_train_spec({**base, "optimizer": "momentum", "momentum": 0.9})
    assert momentum == {
        "data": "digits", "target": "y", "task": "classification", "epochs": 20, "batch_size": "full",
        "model": "mlp:64", "optimizer": "momentum", "lr": 0.01,
        "optimizer_params": {"momentum": 0.9, "weight_decay": 0.01},
    }
    sgd = spec.trial_train_spec({**base, "optimizer": "sgd", "momentum": 0.9})
    assert sgd["optimizer_params"] == {"weight_decay": 0.01}  # nnopt's sgd has no momentum option
    adam = spec.trial_train_spec({**base, "optimizer": "adam", "dropout": 0.25})
    assert adam["optimizer_params"] == {"weight_decay": 0.01} and adam["model"] == "mlp:64:dropout=0.25"
    rmsprop = spec.trial_train_spec({**base, "optimizer": "rmsprop", "momentum": 0.5})
    assert rmsprop["optimizer_params"]["momentum"] == 0.5
    for settings in (momentum, sgd, adam, rmsprop):  # every trial spec is a valid TrainSpec
        spec_from_mapping(TrainSpec, settings).validate()


def test_trial_train_spec_from_a_real_study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_tune_spec(spec_with(train={"optimizer_params": {"weight_decay": 0.001}}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(50):
        trial = study.ask()
        settings = spec.trial_train_spec(spec.space.suggest(trial))
        study.tell(trial, 0.0)
        assert ("momentum" in settings["optimizer_params"]) == (settings["optimizer"] in ("momentum", "rmsprop")
                                                               and "momentum" in trial.params)
        assert settings["optimizer_params"]["weight_decay"] == 0.001
        assert settings["model"] == f"mlp:{trial.params['hidden']}"


def test_model_dict_template():
    spec = load_tune_spec(spec_with(model={"kind": "mlp", "hidden": "{h1},{h2}", "act": "{act}"},
                                    space={"h1": {"type": "int", "low": 8, "high": 64},
                                           "h2": {"type": "int", "low": 8, "high": 64},
                                           "act": {"choices": ["relu", "gelu"]}}))
    assert spec.trial_train_spec({"h1": 32, "h2": 16, "act": "gelu"})["model"] == {
        "kind": "mlp", "hidden": [32, 16], "act": "gelu"}
    spec = load_tune_spec(spec_with(model={"kind": "mlp", "hidden": ["{h1}", 16]},
                                    space={"h1": {"type": "int", "low": 8, "high": 64}}))
    assert spec.trial_train_spec({"h1": 24})["model"] == {"kind": "mlp", "hidden": [24, 16]}


def test_resolve_objectives():
    spec = load_tune_spec(BASE)
    assert spec.objectives is None
    assert spec.resolve_objectives("classification") == [Objective("val_accuracy", "maximize")]
    assert spec.resolve_objectives("regression") == [Objective("val_r2", "maximize")]
    multi = load_tune_spec(spec_with(objective=[{"metric": "val_loss"}, {"metric": "params"}, "flops"]))
    assert multi.resolve_objectives("classification") == [
        Objective("val_loss", "minimize"), Objective("params", "minimize"), Objective("flops", "minimize")]
    with pytest.raises(UsageError, match="objective metric 'val_accuracy' does not exist for regression; choices: val_loss"):
        load_tune_spec(spec_with(objective={"metric": "val_accuracy"})).resolve_objectives("regression")
    with pytest.raises(UsageError, match="'train_r2' does not exist for classification"):
        load_tune_spec(spec_with(objective={"metric": "train_r2"})).resolve_objectives("classification")
    with pytest.raises(ConfigError, match="'train_roc_auc' does not exist; did you mean 'val_roc_auc'"):
        load_tune_spec(spec_with(objective={"metric": "train_roc_auc"}))  # unknown for every task: caught early
    assert load_tune_spec(spec_with(objective={"metric": "train_r2"})).resolve_objectives("regression")[0].metric == "train_r2"


def test_round_trip():
    raw = spec_with(target="y", task="classification", train={"epochs": 3, "optimizer_params": {"weight_decay": 0.01}},
                    objective=[{"metric": "val_loss", "direction": "minimize"}, {"metric": "params", "direction": "minimize"}],
                    sampler="nsga2", pruner="none", trials=10, timeout=60.0, workers=2, storage="sqlite:///x.db",
                    study="s", seed=3, sampler_params={"population_size": 10})
    spec = load_tune_spec(raw)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["objective"][1] == {"metric": "params", "direction": "minimize"}
    again = load_tune_spec(data)
    assert again == spec and again.to_dict() == spec.to_dict()
    assert isinstance(spec, TuneSpec) and load_tune_spec(load_tune_spec(BASE).to_dict()).objectives is None


def test_grid_sampler_spec_parses():
    spec = load_tune_spec(spec_with(sampler="grid", space={
        "optimizer": {"choices": ["sgd", "adam"]}, "hidden": {"type": "int", "low": 16, "high": 64, "step": 16}}))
    assert spec.space.grid() == {"optimizer": ["sgd", "adam"], "hidden": [16, 32, 48, 64]}


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_tune_spec("/nonexistent/tune.yaml")
