"""The tune spec: the YAML file of `nnopt tune` (data, model template, fixed train settings, objective, space).

`load_tune_spec` reads it, applies CLI overrides and validates everything once, before anything is written:
problems in the file are ConfigError, problems in a flag are UsageError (both exit 2, one line).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnopt.config import TABLE_KEYS, TASKS, TrainSpec, column_names, load_yaml, spec_from_mapping
from nnopt.errors import ConfigError, UsageError, did_you_mean, param
from nnopt.models import ArchSpec, factory_signature
from nnopt.optim import OPTIMIZERS, SCHEDULES
from nnopt.train import metric_names

from ._space import Param, Space
from .nas import ArchSpace

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2", "evolution")
PRUNERS = ("none", "median", "asha", "hyperband")
DIRECTIONS = ("maximize", "minimize")
SPEC_KEYS = ("data", "target", "task", *TABLE_KEYS, "model", "architecture", "train", "objective", "space", "constraints",
             "sampler", "pruner", "trials", "timeout", "workers", "storage", "study", "seed", "sampler_params",
             "pruner_params")
MODEL_OPTIONS = ("act", "dropout", "batchnorm", "residual", "kernel", "head", "pool")  # ArchSpec options a space may set
MODEL_METRICS = ("params", "flops", "size_kb", "latency_ms")  # measured on the built model, not by training
# constraint -> the model metric it bounds (never exceeded by a trained trial: infeasible ones are not trained)
CONSTRAINTS = {"max_params": "params", "max_flops": "flops", "max_size_kb": "size_kb",
               "max_latency_ms": "latency_ms"}
_LOWER_IS_BETTER = ("loss", "mse", "mae", "params", "flops", "kb", "ms")
_TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSpec))
_TOP_LEVEL_ONLY = ("data", "target", "task", *TABLE_KEYS, "model", "seed")  # TrainSpec fields the tune spec sets itself
# TrainSpec fields a space parameter may tune directly (the rest are fixed per run or set by nnopt tune; the
# loggers and the process settings are how a run is carried out, not hyperparameters).
TUNABLE_TRAIN_FIELDS = tuple(f for f in _TRAIN_FIELDS
                             if f not in (*_TOP_LEVEL_ONLY, "out", "optimizer_params", "schedule_params", "log",
                                          "nproc", "strategy", "max_restarts", "progress", "num_workers",
                                          "pin_memory", "val_data", "n_classes", "train_metrics"))


@dataclass
class Objective:
    metric: str  # val_accuracy, val_loss, val_r2, train_loss, params, flops, ...
    direction: str  # "maximize" | "minimize"

    def to_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "direction": self.direction}


@dataclass
class TuneSpec:
    """A hyperparameter search: what to train, what to vary, what to optimize, and how to search."""

    data: Any = None
    target: str | None = None
    task: str | None = None
    drop: list[str] | None = None  # a table's columns, as for nnopt train (docs/data.md)
    categorical: list[str] | None = None
    numeric: list[str] | None = None
    sep: str | None = None
    image_size: Any = None  # an image folder's decoding, as for nnopt train
    strict: bool | None = None
    # a string (or dict) whose strings may hold {space param} placeholders: "mlp:{hidden}", or a factory's
    # keyword arguments, {factory: "mynets:make_net", args: {width: "{width}"}} / "mynets:make_net:width={width}"
    model: Any = "mlp:128,64"
    architecture: ArchSpace | None = None  # instead of a model template: an architecture space searched jointly
    train: dict[str, Any] = field(default_factory=dict)  # fixed TrainSpec fields for every trial
    objectives: list[Objective] | None = None  # None: val_accuracy (classification) or val_r2, maximized
    space: Space = field(default_factory=lambda: Space(()))  # the architecture's parameters first, then the user's
    constraints: dict[str, float] = field(default_factory=dict)  # max_params, max_latency_ms, ...
    sampler: str | None = None
    pruner: str | None = None
    trials: int | None = None
    timeout: float | None = None
    workers: int | None = None
    storage: str | None = None
    study: str | None = None
    seed: int | None = None
    sampler_params: dict[str, Any] = field(default_factory=dict)
    pruner_params: dict[str, Any] = field(default_factory=dict)

    # -- validation -----------------------------------------------------------------------------
    def validate(self, flags: frozenset[str] | set[str] = frozenset()) -> TuneSpec:
        """Check the whole spec; `flags` names keys given on the command line (their errors name the flag)."""
        if self.data is None or (isinstance(self.data, str) and not self.data.strip()):
            raise ConfigError("the tune spec needs data: (a dataset name or file, as for nnopt train)")
        for key in TABLE_KEYS[:3]:
            setattr(self, key, column_names(key, getattr(self, key)))
        if self.task is not None and self.task not in TASKS:
            _fail("task", f"must be one of {', '.join(TASKS)}; got '{self.task}'", flags)
        if not self.space.params and self.architecture is not None:
            raise ConfigError(f"architecture space {self.architecture.name} holds one network (every knob has one "
                              "choice) and space: is empty; give some knob several choices")
        if not self.space.params:
            raise ConfigError("the tune spec needs a non-empty space:, e.g. "
                              "space: {lr: {type: float, low: 1.0e-5, high: 1.0, log: true}}")
        for key, names in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
            value = getattr(self, key)
            if value is not None and value not in names:
                where = f" ({param(key)})" if key in flags else ""
                _raise(key, flags, f"unknown {key} '{value}'{where}{did_you_mean(str(value), names)} "
                       f"choices: {', '.join(names)}")
        for key, minimum in (("trials", 1), ("workers", 1), ("seed", 0)):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                _fail(key, f"must be an integer >= {minimum}; got {value!r}", flags)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                                         or not (self.timeout > 0 and math.isfinite(self.timeout))):
            _fail("timeout", f"must be a number of seconds > 0; got {self.timeout!r}", flags)
        for key in ("storage", "study"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                _fail(key, f"must be a non-empty string; got {value!r}", flags)
        for key in ("sampler_params", "pruner_params"):
            if not isinstance(getattr(self, key), Mapping):
                _fail(key, f"must be a mapping of option: value; got {getattr(self, key)!r}", flags)
        self._validate_objectives(flags)
        self._validate_constraints(flags)
        self._validate_train()
        if self.architecture is None:
            self._validate_model()
        self._validate_space()
        if self.sampler == "grid":
            self.space.grid()
        return self

    def _validate_objectives(self, flags: frozenset[str] | set[str]) -> None:
        if self.objectives is None:
            return
        if not self.objectives:
            _fail("objective", "lists no metrics; give at least one, e.g. {metric: val_accuracy, direction: maximize}",
                  flags)
        known = _metric_choices("classification") + [m for m in _metric_choices("regression")
                                                     if m not in _metric_choices("classification")]
        seen: set[str] = set()
        for objective in self.objectives:
            if objective.metric not in known:
                _raise("objective", flags, f"objective metric '{objective.metric}' does not exist"
                       f"{did_you_mean(objective.metric, known)} choices: {', '.join(known)}")
            if objective.direction not in DIRECTIONS:
                _fail("objective", f"direction for {objective.metric} must be maximize or minimize; "
                      f"got '{objective.direction}'", flags)
            if objective.metric in seen:
                _fail("objective", f"lists metric '{objective.metric}' twice; list each metric once", flags)
            seen.add(objective.metric)
        if len(self.objectives) > 1 and self.pruner not in (None, "none"):
            raise ConfigError(f"pruner '{self.pruner}' needs a single objective (Optuna cannot prune "
                              "multi-objective trials); set pruner: none or keep one objective")

    def _validate_constraints(self, flags: frozenset[str] | set[str]) -> None:
        if not isinstance(self.constraints, Mapping):
            _fail("constraints", "must be a mapping like {max_params: 20000, max_latency_ms: 1.0}", flags)
        self.constraints = dict(self.constraints)
        for key, value in self.constraints.items():
            flag = key in flags
            if key not in CONSTRAINTS:
                _raise(key if flag else "constraints", flags, f"unknown constraint '{key}'"
                       f"{did_you_mean(str(key), CONSTRAINTS)} choices: {', '.join(CONSTRAINTS)}")
            value = _number(value, integer=False)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value > 0 and math.isfinite(value)):
                where = param(key) if flag else f"constraints: {key}"
                _raise(key if flag else "constraints", flags, f"{where} must be a number > 0; got {value!r}")
            self.constraints[key] = value

    def violations(self, costs: Mapping[str, Any]) -> list[str]:
        """The constraints a model with these costs breaks, as text ("params 25,104 > 20,000")."""
        broken = []
        for key, limit in self.constraints.items():
            value = costs.get(CONSTRAINTS[key])
            if value is not None and value > limit:
                broken.append(f"{CONSTRAINTS[key]} {_cost(value)} > {_cost(limit)}")
        return broken

    def _validate_train(self) -> None:
        if not isinstance(self.train, Mapping):
            raise ConfigError(f"train: must be a mapping of fixed training settings; got {self.train!r}")
        for key in self.train:
            if key in _TOP_LEVEL_ONLY:
                raise ConfigError(f"'{key}' is not allowed under train:; set it at the top level of the tune spec")
            if key == "out":
                raise ConfigError("'out' is not allowed under train:; nnopt tune chooses each trial's directory "
                                  f"(set the run directory with {param('out')})")
            if key not in _TRAIN_FIELDS:
                choices = [f for f in _TRAIN_FIELDS if f not in (*_TOP_LEVEL_ONLY, "out")]
                raise ConfigError(f"unknown key '{key}' in train{did_you_mean(str(key), choices)} "
                                  f"keys: {', '.join(choices)}")
        coerced = spec_from_mapping(TrainSpec, {"data": "-", **self.train}, source="train")
        try:
            coerced.validate()
        except UsageError as error:
            raise ConfigError(f"train: {error}") from None
        self.train = {key: getattr(coerced, key) for key in self.train}
        if "optimizer" in self.train:
            OPTIMIZERS.get(self.train["optimizer"])
            if "optimizer" not in self.space:
                accepted = OPTIMIZERS.get(self.train["optimizer"]).hyperparams
                for key in self.train.get("optimizer_params", {}):
                    if key not in accepted:
                        raise ConfigError(f"optimizer '{self.train['optimizer']}' has no option '{key}' "
                                          f"(train: optimizer_params); options: {', '.join(accepted) or 'none'}")

    def _validate_model(self) -> None:
        names = _placeholders(self.model)
        for name in names:
            if name not in self.space:
                hint = did_you_mean(name, self.space.names()).rstrip(";")
                raise ConfigError(f"model template {_show(self.model)} names {{{name}}}, which is not in space; "
                                  f"add it to space or fix the name{hint}")
            if self.space[name].when:
                raise ConfigError(f"model template {_show(self.model)} names {{{name}}}, which is conditional "
                                  "(when:); a model placeholder must always have a value")
        params = [self.space[name] for name in [*names, *_model_options(self.model, self.space.names())]]
        samples = [{p.name: _extreme(p, 0) for p in params}, {p.name: _extreme(p, -1) for p in params}]
        samples += [{**samples[0], p.name: c} for p in params if p.kind == "categorical" for c in p.choices]
        for values in samples:
            try:
                model = ArchSpec.parse(build_model(self.model, values))
                if model.kind == "factory":  # importable, and takes the arguments the template gives it
                    factory_signature(model)
            except (ConfigError, TypeError, ValueError) as error:
                given = ", ".join(f"{k}={v!r}" for k, v in values.items())
                raise ConfigError(f"model template {_show(self.model)} does not give a valid model"
                                  f"{' with ' + given if given else ''}: {error}") from None
            for name in _model_options(self.model, values):
                kept = getattr(model, name)
                if model.kind in ("linear", "factory") or not (
                        kept == values[name] or math.isclose(kept, values[name], rel_tol=1e-5)):
                    raise ConfigError(f"space parameter '{name}' cannot set the model's {name}: model "
                                      f"{_show(self.model)} has no such option (kernel, head and pool are cnn options; "
                                      "linear and factory models take none)")

    def _validate_space(self) -> None:
        placeholders = set(_placeholders(self.model)) if self.architecture is None else set()
        architecture = set(self.architecture.names()) if self.architecture is not None else set()
        if "optimizer" in self.space:
            param = self.space["optimizer"]
            if param.kind != "categorical":
                raise ConfigError("space parameter 'optimizer' must be categorical, e.g. {choices: [sgd, adam]}")
            optimizers = [_checked(param, OPTIMIZERS, choice) for choice in param.choices]
        else:
            optimizers = [self.train.get("optimizer", TrainSpec.optimizer)]
        options = {key for name in optimizers for key in OPTIMIZERS.get(name).hyperparams}
        for param in self.space.params:
            name = param.name
            if name in architecture:
                continue
            if name in TUNABLE_TRAIN_FIELDS:
                self._check_train_values(param)
            elif name not in placeholders and name not in options and (
                    name not in MODEL_OPTIONS or self.architecture is not None):
                valid = [*TUNABLE_TRAIN_FIELDS, *placeholders, *MODEL_OPTIONS, *options]
                raise ConfigError(
                    f"space parameter '{name}' is used nowhere: not a train setting, not a {{placeholder}} or option "
                    f"of the model, not an optimizer option (of {', '.join(optimizers)}){did_you_mean(name, valid)} "
                    "rename it or remove it"
                )

    def _check_train_values(self, param: Param) -> None:
        """Every value the parameter can take must be a valid train setting (lr > 0, batch_size or 'full', ...)."""
        values = param.choices if param.kind == "categorical" else (param.low, param.high)
        for value in values:
            if param.name == "schedule" and value is not None:
                _checked(param, SCHEDULES, value)
            try:
                spec_from_mapping(TrainSpec, {**self.train, "data": "-", param.name: value}).validate()
            except UsageError as error:
                raise ConfigError(f"space parameter '{param.name}' can take {value!r}, which training rejects: "
                                  f"{error}") from None

    # -- use ------------------------------------------------------------------------------------
    def trial_train_spec(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The TrainSpec mapping of one trial: fixed settings, the filled model, and the suggested values."""
        spec: dict[str, Any] = {"data": self.data}
        for key in ("target", "task", *TABLE_KEYS):  # the seed is the engine's: it passes one to fit()
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        spec.update({k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.train.items()})
        spec["model"] = self.model_of(params)
        spec.update({k: v for k, v in params.items() if k in TUNABLE_TRAIN_FIELDS})
        optimizer = spec.get("optimizer", TrainSpec.optimizer)
        accepted = OPTIMIZERS.get(optimizer).hyperparams
        options = {k: v for k, v in spec.get("optimizer_params", {}).items() if k in accepted}
        options.update({k: v for k, v in params.items() if k in accepted and k not in TUNABLE_TRAIN_FIELDS})
        if options or "optimizer_params" in spec:
            spec["optimizer_params"] = options
        return spec

    def model_of(self, params: Mapping[str, Any]) -> Any:
        """The model of one trial: the architecture the space's values describe, or the filled template."""
        if self.architecture is not None:
            return self.architecture.arch(params).to_string()
        return build_model(self.model, params)

    def user_space(self) -> dict[str, dict[str, Any]]:
        """The space as the user wrote it (without the architecture's own parameters)."""
        own = set(self.architecture.names()) if self.architecture is not None else set()
        return {name: raw for name, raw in self.space.to_dict().items() if name not in own}

    def resolve_objectives(self, task: str) -> list[Objective]:
        """The objectives for the data's task, metric names checked; the default is the task's main score."""
        if task not in TASKS:
            raise UsageError(f"task must be one of {', '.join(TASKS)}; got '{task}'")
        objectives = self.objectives or [Objective("val_accuracy" if task == "classification" else "val_r2",
                                                   "maximize")]
        choices = _metric_choices(task)
        for objective in objectives:
            if objective.metric not in choices:
                raise UsageError(f"objective metric '{objective.metric}' does not exist for {task}"
                                 f"{did_you_mean(objective.metric, choices)} choices: {', '.join(choices)}")
        return [Objective(o.metric, o.direction) for o in objectives]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `load_tune_spec(spec.to_dict())` gives the spec back."""
        data = {key: getattr(self, key) for key in SPEC_KEYS if key not in ("objective", "space", "architecture")}
        data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
        data["objective"] = None if self.objectives is None else [o.to_dict() for o in self.objectives]
        data["architecture"] = self.architecture.to_dict() if self.architecture is not None else None
        if self.architecture is not None:
            data["model"] = None
        data["space"] = self.user_space() or None
        return {key: data[key] for key in SPEC_KEYS}


# `nnopt tune --data D` without a YAML spec: the training hyperparameters that matter most for any network
DEFAULT_SPACE = {
    "optimizer": {"choices": ["adam", "adamw", "momentum", "rmsprop"]},
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
    "batch_size": {"choices": [32, 64, 128, 256]},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
}
DEFAULT_TUNE_EPOCHS = 10


def default_tune_spec(data: Any, *, model: Any = None, epochs: int | None = None, **fields: Any) -> dict[str, Any]:
    """The tune spec of `nnopt tune --data D [--model M] [--epochs N]`: DEFAULT_SPACE over the model (the train
    default when None), each trial trained `epochs` epochs [DEFAULT_TUNE_EPOCHS]; `fields`: target, task and the
    table keys, as in a YAML spec."""
    return {"data": data, **{k: v for k, v in fields.items() if v is not None},
            "model": model if model is not None else TrainSpec.model,
            "train": {"epochs": epochs if epochs is not None else DEFAULT_TUNE_EPOCHS},
            "space": {name: dict(param) for name, param in DEFAULT_SPACE.items()}}


def load_tune_spec(source: str | Path | Mapping, overrides: Mapping | None = None) -> TuneSpec:
    """Read a tune spec (a YAML path or a mapping), apply CLI overrides (None values ignored), validate."""
    if isinstance(source, Mapping):
        raw = {str(k).replace("-", "_"): v for k, v in source.items()}
        where = "the tune spec"
    else:
        raw = load_yaml(source)
        where = str(source)
    flags = set()
    for key, value in (overrides or {}).items():
        if value is not None:
            key = str(key).replace("-", "_")
            if key in CONSTRAINTS:  # --max-params N and friends add to the spec's constraints
                if not isinstance(raw.get("constraints") or {}, Mapping):
                    raise ConfigError(f"constraints in {where} must be a mapping like {{max_params: 20000}}")
                raw["constraints"] = {**(raw.get("constraints") or {}), key: value}
            else:
                raw[key] = value
            flags = flags | {key}
    for key in raw:
        if key not in SPEC_KEYS:
            error = UsageError if key in flags else ConfigError
            raise error(f"unknown key '{key}' in {where}{did_you_mean(key, SPEC_KEYS)} keys: {', '.join(SPEC_KEYS)}")
    for key in ("trials", "workers", "seed", "timeout"):
        raw[key] = _number(raw.get(key), integer=key != "timeout")
    if raw.get("data") is None:
        raise ConfigError(f"{where} needs data: (a dataset name or file, as for nnopt train)")
    architecture = None
    if raw.get("architecture") is not None:
        if raw.get("model") is not None:
            raise ConfigError(f"{where} gives both model: (a template to tune) and architecture: (a space to "
                              "search); keep one")
        architecture = ArchSpace.parse(raw["architecture"])
    elif raw.get("space") is None:
        raise ConfigError(f"{where} needs a space: of parameters to tune, e.g. "
                          "space: {lr: {type: float, low: 1.0e-5, high: 1.0, log: true}}")
    user = Space.parse(raw["space"]).params if raw.get("space") is not None else ()
    if architecture is not None:
        own = set(architecture.names())
        for knob in user:
            if knob.name in own or knob.name in (architecture.layers_key, *dict(architecture.options)):
                raise ConfigError(f"space parameter '{knob.name}' is a knob of the architecture space; set its "
                                  f"choices under architecture: instead")
    train = raw.pop("train", None)
    spec = TuneSpec(
        **{k: v for k, v in raw.items() if k not in ("objective", "space", "architecture", "constraints", "model")},
        model=raw.get("model") if raw.get("model") is not None else TuneSpec.model,
        architecture=architecture,
        train={} if train is None else train,
        objectives=_parse_objectives(raw.get("objective")),
        space=Space((*(architecture.params() if architecture else ()), *user)),
        constraints=raw.get("constraints") if raw.get("constraints") is not None else {},
    )
    for key in ("sampler_params", "pruner_params"):
        if getattr(spec, key) is None:
            setattr(spec, key, {})
    return spec.validate(flags)


def build_model(model: Any, values: Mapping[str, Any]) -> Any:
    """The model of one trial: the template filled, then model options from the space (dropout, act, ...) set."""
    filled = fill_model(model, values)
    options = {name: values[name] for name in _model_options(model, values)}
    if not options:
        return _factory_sorted(filled)
    if isinstance(filled, Mapping):
        return {**filled, **options}
    return dataclasses.replace(ArchSpec.parse(filled), **options).to_string()


def _model_options(model: Any, names: Any) -> list[str]:
    """Space parameters that set a model option directly (not through a {placeholder} of the template)."""
    placeholders = _placeholders(model)
    return [name for name in names if name in MODEL_OPTIONS and name not in placeholders]


def _factory_sorted(model: Any) -> Any:
    """A filled factory spec string with its arguments sorted by name, as ArchSpec writes it (the trials' `model`,
    best.yaml and the run that retrains it then say `mynets:make_net:depth=3:width=19`, whatever the template's
    order); any other model as it is."""
    if not isinstance(model, str):
        return model
    try:
        parsed = ArchSpec.parse(model)
    except ConfigError:  # refused where the trial builds it, with the message for it
        return model
    return parsed.to_string() if parsed.kind == "factory" else model


def fill_model(model: Any, values: Mapping[str, Any]) -> Any:
    """Fill `{name}` placeholders: in a string, or in the string values of a model dict (recursively).

    In a dict, a value that is exactly one placeholder takes the value itself (an int stays an int: a factory's
    `args: {width: "{width}"}` calls it with width=64, not "64"), and a filled `hidden` string like "64,32"
    becomes a list of ints.
    """
    if isinstance(model, str):
        return model.format(**values) if _placeholders(model) else model
    if isinstance(model, Mapping):
        filled = {key: _fill_value(value, values) for key, value in model.items()}
        if isinstance(filled.get("hidden"), str):
            try:
                filled["hidden"] = [int(h) for h in filled["hidden"].split(",") if h.strip()]
            except ValueError:
                raise ConfigError(f"model hidden must be layer sizes like '64,32'; got '{filled['hidden']}'") from None
        return filled
    return model


def _fill_value(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        names = _placeholders(value)
        if len(names) == 1 and value == f"{{{names[0]}}}":
            return values[names[0]]
        return value.format(**values) if names else value
    if isinstance(value, (list, tuple)):
        return [_fill_value(v, values) for v in value]
    if isinstance(value, Mapping):
        return {k: _fill_value(v, values) for k, v in value.items()}
    return value


def _placeholders(model: Any) -> list[str]:
    """The `{name}` placeholders of a model template, in order, each once."""
    if isinstance(model, Mapping):
        return list(dict.fromkeys(n for v in model.values() for n in _placeholders(v)))
    if isinstance(model, (list, tuple)):
        return list(dict.fromkeys(n for v in model for n in _placeholders(v)))
    if not isinstance(model, str):
        return []
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(model) if f is not None]
    except ValueError as error:
        raise ConfigError(f"malformed model template '{model}': {error}; write placeholders as {{name}}") from None
    for name in fields:
        if not name.isidentifier():
            raise ConfigError(f"malformed model template '{model}': placeholder {{{name}}} must be a space "
                              "parameter name like {hidden}")
    return list(dict.fromkeys(fields))


def _parse_objectives(raw: Any) -> list[Objective] | None:
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    objectives = []
    for item in items:
        if isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"objective must be {{metric: NAME, direction: maximize|minimize}} or a list of "
                              f"them; got {item!r}")
        for key in item:
            if key not in ("metric", "direction"):
                raise ConfigError(f"unknown key '{key}' in objective{did_you_mean(str(key), ('metric', 'direction'))}"
                                  " keys: metric, direction")
        if not isinstance(item.get("metric"), str):
            raise ConfigError(f"objective needs a metric name, e.g. {{metric: val_accuracy}}; got {dict(item)!r}")
        metric = item["metric"]
        default = "minimize" if metric.rsplit("_", 1)[-1] in _LOWER_IS_BETTER else "maximize"
        objectives.append(Objective(metric, str(item.get("direction", default))))
    return objectives


def _metric_choices(task: str) -> list[str]:
    names = metric_names(task)
    return [f"val_{m}" for m in names] + [f"train_{m}" for m in names if m != "roc_auc"] + list(MODEL_METRICS)


def _cost(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and value >= 100 else f"{value:.4g}"


def _checked(param: Param, table: Any, name: Any) -> str:
    try:
        table.get(name)
    except ConfigError as error:
        raise ConfigError(f"space parameter '{param.name}': {error}") from None
    return name


def _extreme(param: Param, end: int) -> Any:
    return param.choices[end] if param.kind == "categorical" else (param.low, param.high)[end]


def _number(value: Any, integer: bool) -> Any:
    """Numeric strings (YAML 1.1 reads `1e3` as one) become numbers; anything else is left for validate()."""
    if isinstance(value, str):
        for convert in ((int,) if integer else (int, float)):
            try:
                return convert(value.strip())
            except ValueError:
                pass
    return value


def _fail(key: str, message: str, flags: frozenset[str] | set[str]) -> None:
    """Raise with the key's name: `trials= must be ...` / `--trials must be ...` (UsageError) for an argument,
    `trials must be ...` (ConfigError) for a key of the spec."""
    _raise(key, flags, f"{param(key)} {message}" if key in flags else f"{key} {message}")


def _raise(key: str, flags: frozenset[str] | set[str], message: str) -> None:
    raise (UsageError if key in flags else ConfigError)(message)


def _show(model: Any) -> str:
    return f"'{model}'" if isinstance(model, str) else repr(dict(model)) if isinstance(model, Mapping) else repr(model)
