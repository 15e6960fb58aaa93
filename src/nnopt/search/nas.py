"""Architecture spaces for `nnopt search`: presets (`mlp`, `cnn`) or a YAML mapping -> search parameters -> ArchSpec.

A space lists the choices for each structural knob. `ArchSpace.params()` turns them into the tune engine's
parameters (conditional ones for per-layer widths: `width_3` exists only when `depth >= 3`), and
`ArchSpace.arch(params)` turns one trial's values back into an ArchSpec, whose string `nnopt train --model`
builds again. Equal networks get equal strings: a shortcut flag with no two equal neighbouring widths, or a
dropout with no layer to apply to, is dropped.

    mlp:  depth 1-6, width per layer from log-spaced choices, act, dropout, batchnorm, residual
    cnn:  blocks 1-3, channels per block, kernel, pool, head width, act, batchnorm, dropout (in the head)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnopt.config import load_yaml
from nnopt.errors import ConfigError, UsageError, did_you_mean, param, require_int
from nnopt.models import ACTIVATIONS, POOLS, ArchSpec
from nnopt.search._space import Param

PRESETS: dict[str, dict[str, Any]] = {
    "mlp": {"kind": "mlp", "depth": [1, 6], "width": [16, 32, 64, 128, 256, 512],
            "act": ["relu", "gelu", "tanh", "silu"], "dropout": [0.0, 0.1, 0.2, 0.3],
            "batchnorm": [False, True], "residual": [False, True]},
    "cnn": {"kind": "cnn", "blocks": [1, 3], "channels": [8, 16, 32, 64], "kernel": [3, 5],
            "pool": ["max", "avg"], "head": [0, 32, 64, 128], "act": ["relu", "gelu", "silu"],
            "batchnorm": [False, True], "dropout": [0.0, 0.1, 0.2]},
}
# per kind: the key giving the number of layers, the key giving each layer's width, the other knobs
_LAYOUT = {
    "mlp": ("depth", "width", ("act", "dropout", "batchnorm", "residual")),
    "cnn": ("blocks", "channels", ("kernel", "pool", "head", "act", "batchnorm", "dropout")),
}
MAX_LAYERS = 12


@dataclass(frozen=True)
class ArchSpace:
    """The choices of one architecture family. `layers` is the (low, high) range of depth / conv blocks;
    `widths` the choices for each layer's width (channels for cnn); `options` the other knobs' choices."""

    kind: str
    layers: tuple[int, int]
    widths: tuple[int, ...]
    options: tuple[tuple[str, tuple], ...]
    name: str = "custom"

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, source: str | Path | Mapping[str, Any] | ArchSpace) -> ArchSpace:
        """A preset name (`mlp`, `cnn`), a YAML file, or a mapping (`preset: mlp` plus keys to change)."""
        if isinstance(source, ArchSpace):
            return source
        name = "custom"
        if isinstance(source, (str, Path)):
            text = str(source)
            if text in PRESETS:
                return cls._from_mapping(PRESETS[text], text)
            if not text.endswith((".yaml", ".yml")) and not Path(text).is_file():
                raise ConfigError(f"unknown architecture space '{text}'{did_you_mean(text, PRESETS)} "
                                  f"choices: {', '.join(PRESETS)}, or a YAML file")
            raw = load_yaml(text)
            name = Path(text).stem
        elif isinstance(source, Mapping):
            raw = dict(source)
        else:
            raise ConfigError(f"an architecture space is a preset name ({', '.join(PRESETS)}), a YAML file or a "
                              f"mapping; got {type(source).__name__}")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"architecture space {name}: must be a mapping like {{preset: mlp, depth: [1, 3]}}")
        raw = {str(k): v for k, v in raw.items()}
        preset = raw.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"unknown architecture preset '{preset}'{did_you_mean(str(preset), PRESETS)} "
                                  f"choices: {', '.join(PRESETS)}")
            base = dict(PRESETS[preset])
            if "kind" in raw and raw["kind"] != base["kind"]:
                raise ConfigError(f"architecture space: preset '{preset}' is a {base['kind']} space; "
                                  f"drop kind: {raw['kind']} or the preset")
            raw = {**base, **raw}
            name = preset if name == "custom" else name
        return cls._from_mapping(raw, name)

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any], name: str) -> ArchSpace:
        kind = raw.get("kind")
        if kind not in _LAYOUT:
            raise ConfigError(f"architecture space needs kind: mlp or cnn (or preset: mlp|cnn); got {kind!r}")
        layers_key, width_key, option_keys = _LAYOUT[kind]
        allowed = ("kind", layers_key, width_key, *option_keys)
        for key in raw:
            if key not in allowed:
                raise ConfigError(f"unknown key '{key}' in the {kind} architecture space"
                                  f"{did_you_mean(key, allowed)} keys: {', '.join(allowed)}")
        defaults = PRESETS[kind]
        layers = _range(layers_key, raw.get(layers_key, defaults[layers_key]))
        widths = _choices(width_key, raw.get(width_key, defaults[width_key]))
        for width in widths:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ConfigError(f"architecture space: {width_key} choices must be integers >= 1; got {width!r}")
        options = tuple((key, _choices(key, raw.get(key, defaults[key]))) for key in option_keys)
        space = cls(kind, layers, tuple(sorted(set(widths))), options, name)
        space._check_options()
        return space

    def _check_options(self) -> None:
        for key, choices in self.options:
            for value in choices:
                try:
                    if key == "pool" and value not in POOLS:
                        raise ConfigError(f"unknown pool '{value}'{did_you_mean(str(value), POOLS)} "
                                          f"choices: {', '.join(POOLS)}")
                    if key in ("batchnorm", "residual") and not isinstance(value, bool):
                        raise ConfigError(f"{key} choices must be true / false; got {value!r}")
                    if key == "act" and value not in ACTIVATIONS:
                        raise ConfigError(f"unknown activation '{value}'{did_you_mean(str(value), ACTIVATIONS)} "
                                          f"choices: {', '.join(ACTIVATIONS)}")
                    if key != "pool":
                        ArchSpec(kind=self.kind, hidden=(self.widths[0],), **{key: value})
                except (ConfigError, TypeError) as error:
                    raise ConfigError(f"architecture space: {key} choice {value!r} is not valid: "
                                      f"{str(error).rstrip('.')}") from None

    # -- the engine's view ----------------------------------------------------------------------
    @property
    def layers_key(self) -> str:
        return _LAYOUT[self.kind][0]

    @property
    def width_key(self) -> str:
        return _LAYOUT[self.kind][1]

    def names(self) -> list[str]:
        return [p.name for p in self.params()]

    def params(self) -> list[Param]:
        """Search parameters: the layer count, one width per possible layer (conditional on the count), then the
        other knobs. A knob with a single choice is fixed, not searched."""
        low, high = self.layers
        params: list[Param] = []
        if high > low:
            params.append(Param(self.layers_key, "int", low=low, high=high))
        for i in range(1, high + 1):
            if len(self.widths) > 1:
                when = {self.layers_key: tuple(range(max(i, low), high + 1))} if i > low else None
                params.append(Param(f"{self.width_key}_{i}", "categorical", choices=self.widths, when=when))
        params += [Param(key, "categorical", choices=choices) for key, choices in self.options if len(choices) > 1]
        return params

    def arch(self, values: Mapping[str, Any]) -> ArchSpec:
        """The ArchSpec of one trial's values (fixed knobs filled in), in canonical form."""
        n = int(values.get(self.layers_key, self.layers[0]))
        hidden = tuple(int(values.get(f"{self.width_key}_{i}", self.widths[0])) for i in range(1, n + 1))
        options = {key: values.get(key, choices[0]) for key, choices in self.options}
        if self.kind == "mlp":
            if not any(a == b for a, b in zip(hidden, hidden[1:])):
                options["residual"] = False  # no equal-width neighbours: no shortcut to make
        elif not options.get("head"):
            options["dropout"] = 0.0  # the cnn applies dropout in its dense head only
        return ArchSpec(kind=self.kind, hidden=hidden, **options)

    def size(self) -> int:
        """Distinct parameter assignments (an upper bound on distinct networks)."""
        count = sum(len(self.widths) ** n for n in range(self.layers[0], self.layers[1] + 1))
        for _, choices in self.options:
            count *= len(choices)
        return count

    def cheapest(self) -> list[ArchSpec]:
        """Candidates among which the smallest / fastest networks of the space lie: the narrowest widths, no
        batchnorm, every layer count and every choice that changes the shape of the network (kernel, pooling,
        head). Used to tell, before training anything, whether a constraint can be met at all."""
        options = dict(self.options)
        shaped = [key for key in ("kernel", "pool", "head") if key in options]
        cheap = {"batchnorm": False, "residual": False, "dropout": 0.0, "act": "relu"}
        fixed = {key: cheap[key] if cheap.get(key) in choices else choices[0]
                 for key, choices in options.items() if key not in shaped}
        candidates = []
        for n in range(self.layers[0], self.layers[1] + 1):
            for combo in itertools.product(*(options[key] for key in shaped)):
                candidates.append(ArchSpec(kind=self.kind, hidden=(self.widths[0],) * n,
                                           **{**fixed, **dict(zip(shaped, combo))}))
        return candidates

    def to_dict(self) -> dict[str, Any]:
        layers_key, width_key, _ = _LAYOUT[self.kind]
        return {"kind": self.kind, layers_key: list(self.layers), width_key: list(self.widths),
                **{key: list(choices) for key, choices in self.options}}

    def describe(self) -> str:
        low, high = self.layers
        return (f"{self.name} ({self.kind}: {self.layers_key} {low}-{high}, {self.width_key} "
                f"{'/'.join(str(w) for w in self.widths)}, "
                + ", ".join(f"{k} {'/'.join(str(c) for c in v)}" for k, v in self.options if len(v) > 1) + ")")


def _range(key: str, value: Any) -> tuple[int, int]:
    if isinstance(value, Mapping):
        value = [value.get("low"), value.get("high")]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise ConfigError(f"architecture space: {key} must be [low, high] integers, e.g. {key}: [1, 4]; got {value!r}")
    low, high = value
    if not 1 <= low <= high:
        raise ConfigError(f"architecture space: {key} must satisfy 1 <= low <= high; got [{low}, {high}]")
    if high > MAX_LAYERS:
        raise ConfigError(f"architecture space: {key} high {high} is over {MAX_LAYERS}; search at most "
                          f"{MAX_LAYERS} layers")
    return int(low), int(high)


def _choices(key: str, value: Any) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ConfigError(f"architecture space: {key} lists no choices; give at least one")
    unique = tuple(dict.fromkeys((type(v), v) for v in values))
    if len(unique) != len(values):
        raise ConfigError(f"architecture space: {key} lists a choice twice; list each once")
    return values


STRATEGIES = ("random", "evolution", "tpe", "nsga2")


def search_spec(data: Any, *, space: Any = "mlp", objectives: Any = None, target: str | None = None,
                task: str | None = None, epochs: int = 10, train: Mapping[str, Any] | None = None,
                table: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The tune spec of an architecture search (a mapping `load_tune_spec` reads).

    objectives: "val_accuracy,params" or a list of names / {metric, direction}; default: the task's score.
    train: fixed training settings for every candidate (optimizer, lr, batch_size, ...).
    """
    if isinstance(objectives, str):
        objectives = [name.strip() for name in objectives.split(",") if name.strip()]
        if not objectives:
            raise UsageError(f"{param('objectives')} lists no metric; give e.g. val_accuracy,params")
    require_int("epochs", epochs, 1)
    spec: dict[str, Any] = {"data": data, "architecture": space, "train": {**dict(train or {}), "epochs": epochs}}
    for key, value in (("target", target), ("task", task), ("objective", objectives), *(table or {}).items()):
        if value is not None:
            spec[key] = value
    return spec


def search(data: Any, *, space: Any = "mlp", strategy: str | None = None, objectives: Any = None,
           target: str | None = None, task: str | None = None, epochs: int = 10,
           train: Mapping[str, Any] | None = None, out: str | Path | None = None, drop: Any = None,
           categorical: Any = None, numeric: Any = None, sep: str | None = None, image_size: Any = None,
           strict: bool | None = None, **settings: Any) -> Any:
    """Search architectures of `space` on `data`; returns the tune engine's TuneResult (best first).

    strategy: random | evolution | tpe (default for one objective) | nsga2 (default for several).
    settings, as on the command line: max_params, max_flops, max_size_kb, max_latency_ms, pruner (default
    none: every candidate trained for `epochs`), trials, timeout, workers, storage, study, seed, sampler_params.
    """
    from nnopt.search._tune import tune

    spec = search_spec(data, space=space, objectives=objectives, target=target, task=task, epochs=epochs,
                       train=train, table={"drop": drop, "categorical": categorical, "numeric": numeric, "sep": sep,
                              "image_size": image_size, "strict": strict})
    multi = isinstance(spec.get("objective"), list) and len(spec["objective"]) > 1
    if "sampler" in settings:
        raise UsageError(f"{param('sampler')} is nnopt tune's; an architecture search picks its sampler with "
                         f"{param('strategy')} ({', '.join(STRATEGIES)}); got {param('sampler')}"
                         f"{settings['sampler']!r}")
    if strategy is not None and strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{strategy}'{did_you_mean(str(strategy), STRATEGIES)} "
                         f"choices: {', '.join(STRATEGIES)}")
    if strategy == "evolution" and multi:
        raise UsageError("strategy 'evolution' optimizes one objective; use nsga2 (or tpe) for several objectives")
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.setdefault("pruner", "none")
    return tune(spec, out=out, sampler=strategy or ("nsga2" if multi else "tpe"), **settings)


def evolve(space: Any, objective: Any, *, direction: str = "maximize", trials: int = 100, population: int = 20,
           sample: int = 5, seed: int | None = None, out: str | Path | None = None, **settings: Any) -> Any:
    """Regularized evolution over any (categorical / conditional) space with a user's objective function
    params -> value, e.g. a tabular NAS benchmark that needs no training. Returns a TuneResult."""
    from nnopt.search._tune import tune

    return tune(objective, space=space, directions=direction, sampler="evolution", trials=trials, seed=seed,
                sampler_params={"population": population, "sample": sample}, out=out, **settings)
