"""Explicit method registries.

Each method module registers its class with a decorator at import time, and each room's
``__init__`` imports its method modules, so the registry is complete as soon as the room is
imported — nothing is discovered implicitly. ``twopath methods`` and the contract tests read
these registries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    path: str
    modalities: tuple[str, ...]
    summary: str


class Registry:
    """A named dict of method classes."""

    def __init__(self, path: str):
        self.path = path
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, modalities: tuple[str, ...] = ("text", "tabular")) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.path} method {name!r} registered twice")
            doc = (cls.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, cls, self.path, modalities, doc[0] if doc else "")
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return add

    def get(self, name: str) -> Entry:
        from twopath.types import TwopathError

        if name not in self._entries:
            raise TwopathError(f"unknown {self.path} method {name!r}; known: {sorted(self._entries)}")
        return self._entries[name]

    def create(self, name: str, **settings: Any) -> Any:
        return self.get(name).cls(**settings)

    def names(self, modality: str | None = None) -> list[str]:
        return [e.name for e in self if modality is None or modality in e.modalities]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries
