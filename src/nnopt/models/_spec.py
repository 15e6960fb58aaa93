"""Model specs: the strings users type (`mlp:128,64:act=tanh:dropout=0.1`, `mynets:make_net:width=64`) as a
typed ArchSpec.

ArchSpec is shared with architecture search and tune: every sampled architecture or filled template is an
ArchSpec, and `ArchSpec.parse(spec.to_string()) == spec` so `nnopt train --model ...` reproduces it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnopt.errors import ConfigError, did_you_mean

KINDS = ("linear", "mlp", "cnn")
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "sigmoid", "leaky_relu", "elu")
POOLS = ("max", "avg", "none")
_DEFAULT_HIDDEN = {"linear": (), "mlp": (128, 64), "cnn": (16, 32)}
_FLAGS = ("bn", "batchnorm", "residual")
_OPTIONS = ("act", "dropout", "head", "kernel", "pool", *_FLAGS)
# what nnopt itself passes a factory from the data: an `args` entry may not set them
FACTORY_DATA_ARGS = ("in_features", "out_features", "n_outputs", "input_shape", "task")
_FACTORY_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_INT = re.compile(r"[+-]?\d+")
_WORD_BREAKERS = set(":=,[]{}\"' \t\n")  # a word argument holding one of these could not be read back


@dataclass(frozen=True)
class ArchSpec:
    """A buildable network description.

    kind: linear | mlp | cnn | factory. hidden: layer widths (mlp) or conv channels (cnn).
    head: width of the cnn's dense layer before the output (0 = none).
    pool: the cnn's 2x downsampling after a conv block, "max", "avg" or "none".
    factory: "pkg.module:function_or_class"; args: its keyword arguments (given as a dict, kept as (name, value)
    pairs sorted by name, so the spec is hashable and equal however the arguments were ordered; `kwargs` gives
    them back as a dict).
    """

    kind: str = "mlp"
    hidden: tuple[int, ...] = (128, 64)
    act: str = "relu"
    dropout: float = 0.0
    batchnorm: bool = False
    residual: bool = False
    kernel: int = 3
    head: int = 64
    pool: str = "max"
    factory: str | None = None
    args: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        try:
            if isinstance(self.hidden, str):
                raise TypeError("a string")
            object.__setattr__(self, "hidden", tuple(_size(h) for h in self.hidden))
        except (TypeError, ValueError):
            raise ConfigError(f"hidden= must be a sequence of layer sizes like (128, 64); "
                              f"got {self.hidden!r}") from None
        for name, kinds in (("dropout", (int, float)), ("kernel", int), ("head", int)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ConfigError(f"{name}= must be a number; got {value!r}")
        object.__setattr__(self, "args", _normal_args(self.args))
        self.validate()

    @property
    def kwargs(self) -> dict[str, Any]:
        """The factory's keyword arguments as a dict (lists as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.args}

    def validate(self) -> None:
        where = f"model '{self.to_string()}'" if self.kind in KINDS else "model"
        if self.kind == "factory":
            if not isinstance(self.factory, str) or not _FACTORY_PATH.fullmatch(self.factory):
                raise ConfigError(f"a model factory must look like 'package.module:function'; got {self.factory!r}"
                                  + (" (give its arguments under args:)" if isinstance(self.factory, str)
                                     and self.factory.count(":") > 1 else ""))
            for key, value in self.args:
                _check_arg(self.factory, key, value)
            return
        if self.args:
            raise ConfigError(f"model '{self.kind}' takes no args; args are the keyword arguments of a factory "
                              "('package.module:function')")
        if self.kind not in KINDS:
            raise ConfigError(
                f"unknown model '{self.kind}'{did_you_mean(self.kind, KINDS)} choices: linear, mlp, cnn, "
                "or a factory 'package.module:function'"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"{where}: layer sizes must be >= 1; got {list(self.hidden)}")
        if self.kind == "cnn" and not self.hidden:
            raise ConfigError(f"{where}: a cnn needs at least one conv block, e.g. cnn:16,32")
        if self.act not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation '{self.act}'{did_you_mean(self.act, ACTIVATIONS)} "
                f"choices: {', '.join(ACTIVATIONS)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}: dropout must be in [0, 1); got {self.dropout}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"{where}: kernel must be an odd integer >= 1; got {self.kernel}")
        if self.head < 0:
            raise ConfigError(f"{where}: head must be >= 0; got {self.head}")
        if self.pool not in POOLS:
            raise ConfigError(
                f"{where}: unknown pool '{self.pool}'{did_you_mean(str(self.pool), POOLS)} choices: {', '.join(POOLS)}"
            )

    # -- text form ------------------------------------------------------------------------------
    def to_string(self) -> str:
        """Canonical spec string; options equal to their defaults are left out."""
        if self.kind == "factory":
            return ":".join([str(self.factory), *(f"{key}={_format_arg(value)}" for key, value in self.args)])
        parts = [self.kind]
        if self.kind != "linear":
            parts.append(",".join(str(h) for h in self.hidden))
            if self.act != "relu":
                parts.append(f"act={self.act}")
            if self.dropout:
                parts.append(f"dropout={self.dropout:g}")
            if self.batchnorm:
                parts.append("bn")
            if self.residual:
                parts.append("residual")
            if self.kind == "cnn":
                if self.kernel != 3:
                    parts.append(f"kernel={self.kernel}")
                if self.head != 64:
                    parts.append(f"head={self.head}")
                if self.pool != "max":
                    parts.append(f"pool={self.pool}")
        return ":".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | ArchSpec) -> ArchSpec:
        """Parse `linear`, `mlp:128,64:act=tanh:dropout=0.1:bn`, `cnn:16,32:head=64`, a dict, or a factory path
        with its keyword arguments (`mynets:make_net:width=64:depth=3`)."""
        if isinstance(spec, ArchSpec):
            return spec
        if isinstance(spec, Mapping):
            return cls._from_dict(spec)
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"a model spec must be a non-empty string like 'mlp:128,64'; got {spec!r}")
        text = spec.strip()
        head, _, rest = text.partition(":")
        function, _, arguments = rest.partition(":")
        if "." in head or (head.lower() not in KINDS and function.isidentifier()):  # package.module:function
            if not function.isidentifier():
                raise ConfigError(f"malformed model factory '{text}'; expected 'package.module:function'")
            return cls(kind="factory", hidden=(), factory=f"{head}:{function}",
                       args=_parse_args(arguments, text) if arguments else ())
        kind = head.lower()
        if kind not in KINDS:
            cls(kind=kind)  # raises the unknown-model error with choices
        fields: dict[str, Any] = {"kind": kind, "hidden": _DEFAULT_HIDDEN[kind]}
        for i, part in enumerate(p.strip() for p in rest.split(":")) if rest else ():
            if i == 0 and part and (part[0].isdigit() or part.startswith(",")):
                fields["hidden"] = _parse_sizes(part, text)
            else:
                _parse_option(part, text, fields)
        if kind == "linear" and len(fields) > 2:
            raise ConfigError(f"model 'linear' takes no options; got '{text}'")
        return cls(**fields)

    @classmethod
    def _from_dict(cls, spec: Mapping[str, Any]) -> ArchSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(
                f"unknown model key '{unknown[0]}'{did_you_mean(unknown[0], known)} keys: {', '.join(sorted(known))}"
            )
        data = dict(spec)
        data.setdefault("kind", "factory" if data.get("factory") is not None else "mlp")
        if data["kind"] in _DEFAULT_HIDDEN:
            data.setdefault("hidden", _DEFAULT_HIDDEN[data["kind"]])
        elif data["kind"] == "factory":
            data.setdefault("hidden", ())
        if data.get("args") is None:
            data["args"] = ()
        elif not isinstance(data["args"], Mapping):
            raise ConfigError(f"model args must be a mapping of keyword arguments like {{width: 64}}; "
                              f"got {data['args']!r}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed model dict {dict(spec)}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        data["args"] = self.kwargs
        return data


def _normal_args(args: Any) -> tuple[tuple[str, Any], ...]:
    """A factory's arguments as (name, value) pairs sorted by name, lists as tuples (hashable)."""
    if isinstance(args, Mapping):
        items = list(args.items())
    else:
        try:
            items = [(key, value) for key, value in args]
        except (TypeError, ValueError):
            raise ConfigError(f"model args must be a mapping of keyword arguments like {{width: 64}}; "
                              f"got {args!r}") from None
    return tuple(sorted(((key, tuple(value) if isinstance(value, list) else value) for key, value in items),
                        key=lambda item: str(item[0])))


def _check_arg(factory: str, key: Any, value: Any) -> None:
    """A factory argument must have a name and a value the spec string writes and reads back unchanged."""
    if not isinstance(key, str) or not key.isidentifier():
        raise ConfigError(f"model factory '{factory}': argument name {key!r} is not a Python identifier")
    if key in FACTORY_DATA_ARGS:
        raise ConfigError(f"model factory '{factory}': argument '{key}' comes from the data "
                          f"({', '.join(FACTORY_DATA_ARGS)} are passed by nnopt); remove it from args")
    text = _format_arg(value)
    if text is None or not _same(_parse_arg(text), value):
        raise ConfigError(f"model factory '{factory}': argument {key}={value!r} cannot be recorded in a model "
                          "spec; give a number, true/false, null, a word without ':=,[]{}' or spaces, or a list "
                          "of them")


def _format_arg(value: Any) -> str | None:
    """The spec-string text of an argument value (None: no text reads back as it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if value and not (_WORD_BREAKERS & set(value)) else None
    if isinstance(value, (list, tuple)):
        parts = [_format_arg(v) if not isinstance(v, (list, tuple)) else None for v in value]
        return None if None in parts else "[" + ",".join(parts) + "]"  # type: ignore[arg-type]
    return None


def _parse_arg(text: str) -> Any:
    """An argument value as written in a spec string: int, float, true/false, null, [a,b,...] or a word."""
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return tuple(_parse_arg(part.strip()) for part in inner.split(",")) if inner else ()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (1, 1.0 and True are three different arguments)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _parse_args(text: str, spec: str) -> tuple[tuple[str, Any], ...]:
    args = []
    for part in text.split(":"):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key.isidentifier() or not value:
            raise ConfigError(f"malformed model factory '{spec}': arguments are written name=value, e.g. "
                              f"'package.module:function:width=64'; got '{part}'")
        if key in dict(args):
            raise ConfigError(f"malformed model factory '{spec}': argument '{key}' is given twice")
        args.append((key, _parse_arg(value)))
    return tuple(args)


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a bool")
    return int(value)


def _parse_sizes(part: str, text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in part.split(","))
    except ValueError:
        raise ConfigError(
            f"malformed model spec '{text}': layer sizes must be integers like 'mlp:128,64'; got '{part}'"
        ) from None
    return sizes


def _parse_option(part: str, text: str, fields: dict[str, Any]) -> None:
    key, eq, value = part.partition("=")
    key = key.strip().lower()
    if key not in _OPTIONS:
        raise ConfigError(
            f"malformed model spec '{text}': unknown option '{key}'{did_you_mean(key, _OPTIONS)} "
            f"options: {', '.join(_OPTIONS)}"
        )
    if key in _FLAGS:
        on = (value.strip().lower() in ("1", "true", "yes", "on")) if eq else True
        fields["batchnorm" if key in ("bn", "batchnorm") else key] = on
        return
    if not eq or not value:
        raise ConfigError(f"malformed model spec '{text}': option '{key}' needs a value, e.g. {key}=...")
    try:
        fields[key] = value if key in ("act", "pool") else (float(value) if key == "dropout" else int(value))
    except ValueError:
        raise ConfigError(f"malformed model spec '{text}': {key}={value} is not a number") from None
