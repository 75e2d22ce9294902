"""Named, extensible choices (models, attacks, training modes, job kinds) behind one small class.

Why one class: every list a user picks from (CLI choices, page widgets, evaluation conditions) is
read from a registry, so adding an entry is one registration and nothing else. Names typed by users
are coerced here, once, with a message that lists the valid ones.

Plugins: modules named in $BUSADV_PLUGINS (comma-separated) are imported the first time any registry
is read. They can register their own entries, and because job workers read the same variable, a
plugin's attack or job kind works in background jobs too.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

PLUGINS_ENV = "BUSADV_PLUGINS"


class Named(Protocol):
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Choice:
    """What a user sees of a registered choice (a model, a training mode, a backend): its key, its name in
    pickers and legends, and one line for the UI."""

    name: str
    label: str
    description: str


T = TypeVar("T", bound=Named)

_plugins_lock = threading.Lock()
_plugins_loaded: set[str] = set()


class PluginError(ImportError):
    """A module named in $BUSADV_PLUGINS that cannot be imported or fails while registering: one line, the fix."""


def load_plugins() -> None:
    """Import the modules listed in $BUSADV_PLUGINS that were not imported yet.

    A failing one is a PluginError naming the variable, the module and what to do (the CLI prints it as one
    line instead of a traceback); it is tried again next time, so the error is never silently skipped.
    """
    wanted = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    with _plugins_lock:
        pending = [m for m in wanted if m not in _plugins_loaded]
        _plugins_loaded.update(pending)  # before importing: a plugin that reads a registry must not recurse
    for module in pending:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            with _plugins_lock:
                _plugins_loaded.discard(module)
            raise PluginError(f"{PLUGINS_ENV} names {module[:80]!r}, which cannot be imported ({exc}); install it, "
                              f"fix its name or remove it from {PLUGINS_ENV}") from None
        except Exception as exc:  # noqa: BLE001 - a plugin's own error, told in one line
            with _plugins_lock:
                _plugins_loaded.discard(module)
            raise PluginError(f"{PLUGINS_ENV}: the plugin {module[:80]!r} failed while loading "
                              f"({type(exc).__name__}: {str(exc)[:200]}); fix the plugin or remove it from "
                              f"{PLUGINS_ENV}") from None


class Registry(Generic[T]):
    """An ordered name -> entry table; names are lower-case and unique."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self._entries: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, entry: T, replace: bool = False) -> T:
        name = entry.name
        if not name or name != name.strip().lower() or "," in name:
            raise ValueError(f"{self.noun} names are lower-case words without commas, got {name!r}")
        with self._lock:
            if name in self._entries and not replace:
                raise ValueError(f"a {self.noun} named {name!r} is already registered (built into busadv or by "
                                 f"another plugin); give yours another name")
            self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register toy entries clean up with this)."""
        with self._lock:
            self._entries.pop(name, None)

    def get(self, name: str | T) -> T:
        """The entry for a name typed in any case; ValueError listing the valid names otherwise."""
        if not isinstance(name, str):
            return name
        load_plugins()
        key = name.strip().lower()
        try:
            return self._entries[key]
        except KeyError:
            raise ValueError(f"unknown {self.noun} {name!r}; choose one of: {', '.join(self.names())}") from None

    def coerce(self, name: str | T) -> str:
        """The canonical name of an entry (validates it)."""
        return self.get(name).name

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._entries)

    def values(self) -> tuple[T, ...]:
        load_plugins()
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return isinstance(name, str) and name.strip().lower() in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.values())

    def __len__(self) -> int:
        return len(self.values())


def parse_name_list(text: str | list[str] | tuple[str, ...], registry: Registry, option: str) -> list[str]:
    """'fgsm, PGD' -> ['fgsm', 'pgd'] validated against a registry; the message names the option."""
    parts = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    out: list[str] = []
    for part in parts:
        if not str(part).strip():
            continue
        try:
            name = registry.coerce(str(part))
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
        if name not in out:
            out.append(name)
    return out
