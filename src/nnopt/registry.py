"""A name -> entry table. Tables are plain data, built explicitly in one module each
(no registration by import side effect)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nnopt.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class Entry:
    """One registered thing: its name, how to build it, and a one-line summary."""

    name: str
    factory: Callable[..., Any]
    summary: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:  # extra fields read as attributes: entry.rule
        extra = object.__getattribute__(self, "extra")
        if key in extra:
            return extra[key]
        raise AttributeError(key)


class Registry:
    """Ordered table of entries of one kind ("optimizer", "schedule", "dataset", ...)."""

    def __init__(self, kind: str, entries: list[Entry] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        for entry in entries or []:
            self.add(entry)

    def add(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self._entries) from None

    def resolve(self, spec: str | Mapping[str, Any], params: Mapping[str, Any] | None = None
                ) -> tuple[Entry, dict[str, Any]]:
        """A name or a ``{"name": ..., **params}`` dict -> (entry, params); `params` win over the dict's."""
        if isinstance(spec, Mapping):
            merged = dict(spec)
            if "name" not in merged:
                raise ConfigError(f"a {self.kind} dict needs a 'name' key; got keys {sorted(merged)}")
            return self.get(merged.pop("name")), {**merged, **(params or {})}
        return self.get(spec), dict(params or {})

    def create(self, spec: Any, **kwargs: Any) -> Any:
        """Build from a name, a ``{"name": ..., **params}`` dict, or pass an instance through."""
        if isinstance(spec, (str, Mapping)):
            entry, params = self.resolve(spec, kwargs)
            return entry.factory(**params)
        return spec

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
