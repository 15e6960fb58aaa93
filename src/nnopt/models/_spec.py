"""Model specs: the strings users type (`mlp:128,64:act=tanh:dropout=0.1`) as a typed ArchSpec.

ArchSpec is shared with architecture search: every sampled architecture is an ArchSpec, and
`ArchSpec.parse(spec.to_string()) == spec` so `nnopt train --model ...` reproduces it.
"""

from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class ArchSpec:
    """A buildable network description.

    kind: linear | mlp | cnn | factory. hidden: layer widths (mlp) or conv channels (cnn).
    head: width of the cnn's dense layer before the output (0 = none).
    pool: the cnn's 2x downsampling after a conv block, "max", "avg" or "none". factory: "pkg.module:function".
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
        self.validate()

    def validate(self) -> None:
        where = f"model '{self.to_string()}'" if self.kind in KINDS else "model"
        if self.kind == "factory":
            if not self.factory or ":" not in self.factory:
                raise ConfigError("a model factory must look like 'package.module:function'")
            return
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
            return str(self.factory)
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
        """Parse `linear`, `mlp:128,64:act=tanh:dropout=0.1:bn`, `cnn:16,32:head=64`, a dict, or a factory path."""
        if isinstance(spec, ArchSpec):
            return spec
        if isinstance(spec, Mapping):
            return cls._from_dict(spec)
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"a model spec must be a non-empty string like 'mlp:128,64'; got {spec!r}")
        text = spec.strip()
        head, _, rest = text.partition(":")
        if "." in head or (head.lower() not in KINDS and rest.isidentifier()):  # package.module:function
            if not rest.isidentifier():
                raise ConfigError(f"malformed model factory '{text}'; expected 'package.module:function'")
            return cls(kind="factory", hidden=(), factory=text)
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
        data.setdefault("kind", "mlp")
        if data["kind"] in _DEFAULT_HIDDEN:
            data.setdefault("hidden", _DEFAULT_HIDDEN[data["kind"]])
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed model dict {dict(spec)}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data


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
