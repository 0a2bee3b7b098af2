"""One registry per kind of network part: heads, backbones, attention scopes, LayerNorm placements.

Each part registers itself once, next to its definition, with a decorator::

    @HEADS.register("ffn", label="FFN blocks (paper baseline)", options=("dim", "depth", "out_dim", "out_bn"))
    class FFNHead(...): ...

Config choices, ``--help`` texts, figure labels and the contract tests read the registry, so
adding a head touches its own file and its test. The registries fill themselves on first use by
importing every module of ``deepfusion.model.network`` (a new file is found without being listed).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from deepfusion.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """A registered part: its name, what builds it, and what people and configs need to know."""

    name: str
    build: Callable[..., Any]
    label: str  # for figures and tables
    summary: str = ""  # one line for --help
    options: dict[str, str] = field(default_factory=dict)  # config key -> keyword of ``build``
    fixed: dict[str, Any] = field(default_factory=dict)  # keywords always passed to ``build``
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific facts (attends, input kind, ...)


class Registry:
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str, config_key: str):
        self.kind, self.config_key = kind, config_key
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, label: str, summary: str = "", options=(), fixed=None, **extra):
        """Decorator registering ``obj`` (a class or a function) under ``name``.

        ``options`` lists the config keys the part reads, or maps them to ``build``'s keywords.
        """
        opts = dict(options) if isinstance(options, dict) else {k: k for k in options}

        def decorate(obj):
            if name in self._entries and self._entries[name].build is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, label, summary, opts, dict(fixed or {}), dict(extra))
            return obj

        return decorate

    def _entries_loaded(self) -> dict[str, Entry]:
        _import_network()
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries_loaded())

    def entries(self) -> list[Entry]:
        return list(self._entries_loaded().values())

    def get(self, name: str) -> Entry:
        """The entry ``name``; a :class:`ConfigError` that lists the valid names otherwise."""
        entries = self._entries_loaded()
        if name not in entries:
            raise ConfigError(
                f"{self.config_key}={name!r} is not a valid {self.kind}; choose from {', '.join(entries)}"
            )
        return entries[name]

    def check(self, name: str) -> str:
        self.get(name)
        return name

    def __contains__(self, name: str) -> bool:
        return name in self._entries_loaded()

    def __iter__(self):
        return iter(self.names())

    def help(self) -> str:
        """``name: summary`` for every entry, one per line (for ``--help``)."""
        return "\n".join(f"  {e.name:<12} {e.summary or e.label}" for e in self.entries())


HEADS = Registry("head", "model.head")
BACKBONES = Registry("backbone", "model.backbone")
SCOPES = Registry("attention scope", "model.scope")
NORMS = Registry("LayerNorm placement", "model.norm")

_loaded = False


def _import_network() -> None:
    """Import every module of the network package once, so that every part has registered."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: a module that reads a registry while loading must not recurse
    try:
        package = importlib.import_module("deepfusion.model.network")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
    except BaseException:
        _loaded = False
        raise
