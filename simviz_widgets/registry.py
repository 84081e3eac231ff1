"""One registry design for everything looked up by name: methods, metrics and models.

A :class:`Registry` maps names to entries with a one-line description each. Registering a name
twice with a different entry is an error (never a silent overwrite); looking up an unknown name is
an :class:`~simviz_widgets.checks.InputError` that lists the known names and suggests the closest.
:data:`REGISTRIES` holds the three instances, filled when their packages are imported, so a listing
(``simviz methods``, a panel's menu) reads every kind the same way.

>>> colours = Registry("colour")
>>> _ = colours.register("red", (1, 0, 0), "warm")
>>> colours.get("red")
(1, 0, 0)
>>> colours.get("rde")
Traceback (most recent call last):
...
simviz_widgets.checks.InputError: colour 'rde' is not registered; known colours: ['red']. Did you mean 'red'?
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .checks import InputError, check_str

__all__ = ["Registry", "REGISTRIES", "registry"]

T = TypeVar("T")
_MISSING = object()


class Registry(Generic[T]):
    """Named entries of one ``kind`` ("method", "metric", "model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, entry: T, description: str = "") -> T:
        """Add ``entry`` under ``name``; the same entry again is a no-op (a module reloaded)."""
        check_str(name, f"{self.kind} name")
        current = self._entries.get(name)
        if current is not None and current is not entry and not _same_definition(current, entry):
            raise InputError(
                f"{self.kind} name {name!r} is already registered (by {_describe(current)}); "
                "choose another name or unregister the old one first"
            )
        self._entries[name] = entry
        self._descriptions[name] = description
        return entry

    def decorator(self, name: str, description: str = "") -> Callable[[T], T]:
        """``@registry.decorator("name", "what it is")``."""

        def deco(entry: T) -> T:
            return self.register(name, entry, description)

        return deco

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._entries[name]
        del self._descriptions[name]

    def get(self, name: Any, default: Any = _MISSING) -> T:
        """The entry of ``name``; an unknown name is an error naming the known ones, unless a
        ``default`` is given (then that is returned, as ``dict.get``)."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        if not isinstance(name, str):
            raise InputError(
                f"{self.kind} name must be a string (got {type(name).__name__} {name!r}); "
                f"known {self.kind}s: {self.names()}"
            )
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f". Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{self.kind} {name!r} is not registered; known {self.kind}s: {self.names()}{hint}")

    # Explicit replacement (``registry[name] = entry``, ``del registry[name]``, ``pop``): for a
    # deliberate override and for tests (pytest's monkeypatch.setitem works on a registry).
    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        check_str(name, f"{self.kind} name")
        self._entries[name] = entry
        self._descriptions.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def pop(self, name: str, default: Any = _MISSING) -> T:
        if name not in self and default is not _MISSING:
            return default
        entry = self.get(name)
        self.unregister(name)
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """name -> one-line description, sorted by name."""
        return {name: self._descriptions[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _same_definition(a: Any, b: Any) -> bool:
    """A class or function defined again under the same qualified name (``importlib.reload``)."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == \
        (getattr(b, "__module__", object()), getattr(b, "__qualname__", object()))


def _describe(entry: Any) -> str:
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


#: Every registry of the package, by kind. Filled when simviz_widgets.explain / .evaluate /
#: .models are imported.
REGISTRIES: dict[str, Registry] = {kind: Registry(kind) for kind in ("method", "metric", "model")}


#: The package that registers each kind's built-in entries when imported.
_OWNERS = {"method": "simviz_widgets.explain", "metric": "simviz_widgets.evaluate", "model": "simviz_widgets.models"}


def registry(kind: str) -> Registry:
    """The registry of ``kind`` ('method', 'metric' or 'model') with its built-in entries loaded."""
    import importlib

    from .checks import check_choice

    importlib.import_module(_OWNERS[check_choice(kind, "kind", tuple(REGISTRIES))])
    return REGISTRIES[kind]
