"""The search space of `nnopt tune`: typed parameters parsed from the spec's `space:` mapping.

Each parameter is a float / int range or a list of choices, optionally conditional on other parameters
(`when: {optimizer: [sgd, momentum]}`). Validation happens once, here; messages are one line that name
the parameter and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import optuna

from nnopt.errors import ConfigError, did_you_mean

PARAM_KINDS = ("float", "int", "categorical")
PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "when")
MAX_GRID_VALUES = 1000
_NONE = object()
# YAML 1.1 (PyYAML) reads `1e-5` and `1.0e5` as strings: only `1.0e-5` is a float there.
_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a float / int range or categorical choices, suggested only when `when` holds."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None
    when: Mapping[str, tuple] | None = field(default=None, hash=False)  # {other param: allowed values}

    def __post_init__(self) -> None:
        name = self.name
        if self.kind not in PARAM_KINDS:
            raise ConfigError(
                f"unknown param type '{self.kind}' for '{name}'{did_you_mean(str(self.kind), PARAM_KINDS)} "
                f"choices: {', '.join(PARAM_KINDS)}"
            )
        if self.kind == "categorical":
            self._check_choices()
        else:
            self._check_range()
        if self.when is not None:
            if not isinstance(self.when, Mapping) or not self.when:
                raise ConfigError(f"'{name}': when must map other parameters to allowed values, "
                                  "e.g. when: {optimizer: [sgd, momentum]}")
            when = {str(k): tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in self.when.items()}
            for target, allowed in when.items():
                if not allowed:
                    raise ConfigError(f"'{name}': when: {target} lists no values; list at least one")
            object.__setattr__(self, "when", when)

    def _check_choices(self) -> None:
        name, choices = self.name, self.choices
        if self.log is not False or any(getattr(self, key) is not None for key in ("low", "high", "step")):
            raise ConfigError(f"'{name}': low/high/log/step do not apply to choices; give either choices "
                              "or type: float|int with low and high")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"'{name}': choices must be a non-empty list, e.g. choices: [16, 32, 64]; "
                              f"got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"'{name}': choice {choice!r} is a {type(choice).__name__}; choices must be "
                                  "numbers, strings, booleans or null (write a list as a string, e.g. '64,32')")
            if isinstance(choice, float) and not math.isfinite(choice):
                raise ConfigError(f"'{name}': choice {choice!r} is not a finite number; remove it")
        for i, choice in enumerate(choices):
            twin = next((other for other in choices[:i] if other == choice), _NONE)
            if twin is not _NONE:  # Optuna finds a choice by ==, so 1, 1.0 and True are one choice to it
                same = "is listed twice" if _same(twin, choice) else f"equals {twin!r} to Optuna"
                raise ConfigError(f"'{name}': choice {choice!r} {same}; list each choice once")
        object.__setattr__(self, "choices", tuple(choices))

    def _check_range(self) -> None:
        name, integer = self.name, self.kind == "int"
        if self.choices is not None:
            raise ConfigError(f"'{name}': type: {self.kind} takes low and high, not choices; drop type to use choices")
        if self.low is None or self.high is None:
            raise ConfigError(f"'{name}': type: {self.kind} needs low and high, "
                              f"e.g. {{type: {self.kind}, low: 1, high: 10}}")
        low, high = (_number(self.name, key, getattr(self, key), integer) for key in ("low", "high"))
        if not isinstance(self.log, bool):
            raise ConfigError(f"'{name}': log must be true or false; got {self.log!r}")
        if low > high:
            raise ConfigError(f"'{name}': low must be <= high; got low {low}, high {high}")
        if self.log and low <= 0:
            raise ConfigError(f"'{name}': log scale needs low > 0; got {low}")
        step = self.step
        if step is not None:
            if self.log:
                raise ConfigError(f"'{name}': log and step cannot be combined (Optuna forbids it); drop one")
            step = _number(name, "step", step, integer)
            if step <= 0:
                raise ConfigError(f"'{name}': step must be > 0; got {step}")
            span, unit = Decimal(str(high)) - Decimal(str(low)), Decimal(str(step))
            if span % unit != 0:
                fixed = Decimal(str(low)) + (span // unit) * unit
                raise ConfigError(f"'{name}': high - low must be a multiple of step {step}; got low {low}, "
                                  f"high {high} (use high: {_plain(fixed, integer)})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "step", step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return optuna.distributions.CategoricalDistribution(self.choices)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_categorical(self.name, self.choices)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when every `when` condition holds for the values suggested so far."""
        return all(
            target in values and any(_same(values[target], v) for v in allowed)
            for target, allowed in (self.when or {}).items()
        )

    def grid_values(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "float" and self.step is None:
            raise ConfigError(f"grid sampler needs a finite space: '{self.name}' is a continuous float; "
                              "give it a step or choices")
        step = self.step or 1
        count = int((Decimal(str(self.high)) - Decimal(str(self.low))) // Decimal(str(step))) + 1
        if count > MAX_GRID_VALUES:
            raise ConfigError(f"grid sampler: '{self.name}' would take {count} values ({self.low}..{self.high} "
                              f"step {step}), more than {MAX_GRID_VALUES}; give it a larger step or choices")
        if self.kind == "int":
            return list(range(self.low, self.high + 1, step))
        return [float(Decimal(str(self.low)) + i * Decimal(str(step))) for i in range(count)]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any]
        if self.kind == "categorical":
            data = {"choices": list(self.choices)}
        else:
            data = {"type": self.kind, "low": self.low, "high": self.high}
            if self.log:
                data["log"] = True
            if self.step is not None:
                data["step"] = self.step
        if self.when:
            data["when"] = {k: list(v) for k, v in self.when.items()}
        return data


@dataclass(frozen=True)
class Space:
    """Parameters in suggestion order: YAML order, except that a `when` dependency comes first."""

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        params = tuple(self.params)
        by_name: dict[str, Param] = {}
        for param in params:
            if param.name in by_name:
                raise ConfigError(f"space parameter '{param.name}' is defined twice; define it once")
            by_name[param.name] = param
        for param in params:
            for target, allowed in (param.when or {}).items():
                _check_condition(param, target, allowed, by_name)
        object.__setattr__(self, "params", _dependency_order(params))

    @classmethod
    def parse(cls, mapping: Mapping[str, Mapping]) -> Space:
        """`{lr: {type: float, low: 1.0e-5, high: 1.0, log: true}, optimizer: {choices: [sgd, adam]}}` -> Space."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"space must be a mapping of name: {{...}}; got a {type(mapping).__name__}")
        if not mapping:
            raise ConfigError("space is empty; add at least one parameter, e.g. "
                              "lr: {type: float, low: 1.0e-5, high: 1.0, log: true}")
        return cls(tuple(_parse_param(name, raw) for name, raw in mapping.items()))

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every parameter whose conditions hold, dependencies first."""
        values: dict[str, Any] = {}
        for param in self.params:
            if not param.when or param.holds(values):
                values[param.name] = param.suggest(trial)
        return values

    def grid(self) -> dict[str, list]:
        """The search space for optuna's GridSampler; every parameter must be finite and unconditional."""
        for param in self.params:
            if param.when:
                raise ConfigError(f"grid sampler does not support conditional parameters ('{param.name}' has "
                                  "when:); use random or tpe")
        return {param.name: param.grid_values() for param in self.params}

    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def __getitem__(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(param.name == name for param in self.params)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {param.name: param.to_dict() for param in self.params}


def _parse_param(name: Any, raw: Any) -> Param:
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ConfigError(f"space parameter name {name!r} must be a name of letters, digits and _ (like lr)")
    name = name.replace("-", "_")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"space parameter '{name}' must be a mapping like {{type: float, low: 0.1, high: 1}} "
                          f"or {{choices: [...]}}; got {raw!r}")
    for key in raw:
        if key not in PARAM_KEYS:
            raise ConfigError(f"unknown key '{key}' in space parameter '{name}'{did_you_mean(str(key), PARAM_KEYS)} "
                              f"keys: {', '.join(PARAM_KEYS)}")
    kind = raw.get("type")
    if kind is None:
        if "choices" not in raw:
            raise ConfigError(f"space parameter '{name}' needs choices: [...] or type: float|int with low and high")
        kind = "categorical"
    choices = raw.get("choices")
    if isinstance(choices, (list, tuple)):
        choices = tuple(_yaml_number(c) for c in choices)
    when = raw.get("when")
    if isinstance(when, Mapping):
        when = {k: [_yaml_number(v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])] for k, vs in when.items()}
    elif when is not None:
        raise ConfigError(f"'{name}': when must be a mapping like {{optimizer: [sgd, momentum]}}; got {when!r}")
    return Param(name, str(kind), low=raw.get("low"), high=raw.get("high"), log=raw.get("log", False),
                 step=raw.get("step"), choices=choices, when=when)


def _check_condition(param: Param, target: str, allowed: tuple, by_name: Mapping[str, Param]) -> None:
    name = param.name
    if target == name:
        raise ConfigError(f"'{name}': when: names '{name}' itself; a condition must name another parameter")
    if target not in by_name:
        raise ConfigError(f"'{name}': when: names '{target}', which is not in space"
                          f"{did_you_mean(target, by_name)} parameters: {', '.join(by_name)}")
    other = by_name[target]
    if other.kind == "float":
        raise ConfigError(f"'{name}': when: names '{target}', a continuous float; conditions can only name "
                          "categorical or int parameters")
    for value in allowed:
        if other.kind == "categorical" and not any(_same(value, c) for c in other.choices):
            raise ConfigError(f"'{name}': when: {target} lists {value!r}, which is not among its choices: "
                              f"{', '.join(map(str, other.choices))}")
        if other.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)
                                    or not other.low <= value <= other.high):
            raise ConfigError(f"'{name}': when: {target} lists {value!r}, outside its integer range "
                              f"{other.low}..{other.high}")


def _dependency_order(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """Stable topological order: YAML order, except that each parameter follows the ones it depends on."""
    ordered: list[Param] = []
    placed: set[str] = set()
    pending = list(params)
    while pending:
        ready = next((p for p in pending if set(p.when or ()) <= placed), None)
        if ready is None:
            names = ", ".join(f"'{p.name}'" for p in pending)
            raise ConfigError(f"parameters {names} depend on each other in a cycle through when:; "
                              "remove one of the conditions")
        ordered.append(ready)
        placed.add(ready.name)
        pending.remove(ready)
    return tuple(ordered)


def _number(param: str, key: str, value: Any, integer: bool) -> int | float:
    """A finite number from a YAML value; numeric strings (YAML 1.1 reads `1e-5` as one) are converted."""
    if isinstance(value, str):
        for convert in (int, float):
            try:
                value = convert(value.strip())
                break
            except ValueError:
                pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"'{param}': {key} must be a finite number; got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"'{param}': {key} must be an integer for an int param; got {value}")
        return int(value)
    return float(value)


def _yaml_number(value: Any) -> Any:
    return float(value) if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()) else value


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: 1, 1.0 and True are different choices to a user."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return a == b


def _plain(value: Decimal, integer: bool) -> str:
    return str(int(value)) if integer else f"{float(value):g}"
