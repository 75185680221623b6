"""Plugin registry: app folders add sub-commands and settings sections without the core importing them.

An app declares, in ``pyproject.toml``::

    [project.entry-points."streamrec.plugins"]
    trainer = "trainer.cli:register"

and ``register(registry: PluginRegistry) -> None`` calls :meth:`PluginRegistry.add_command` and
:meth:`PluginRegistry.add_settings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from streamrec.settings import CORE_SETTINGS, ComponentSettings

ENTRY_POINT_GROUP = "streamrec.plugins"

#: Configures the sub-command's parser; returns the handler called with the parsed args (exit code).
CommandHandler = Callable[[argparse.Namespace], int]
CommandSetup = Callable[[argparse.ArgumentParser], CommandHandler]


@dataclass
class Command:
    name: str
    help: str
    setup: CommandSetup


@dataclass
class PluginRegistry:
    commands: dict[str, Command] = field(default_factory=dict)
    settings: list[type[ComponentSettings]] = field(default_factory=lambda: list(CORE_SETTINGS))

    def add_command(self, name: str, help: str, setup: CommandSetup) -> None:
        if name in self.commands:
            raise ValueError(f"command {name!r} registered twice")
        self.commands[name] = Command(name, help, setup)

    def add_settings(self, settings_class: type[ComponentSettings]) -> None:
        if settings_class not in self.settings:
            self.settings.append(settings_class)


def load_plugins(registry: PluginRegistry) -> list[str]:
    """Call every installed plugin's ``register``; returns the names of those that failed to import."""
    failed = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:
            failed.append(f"{ep.name} ({exc})")
            continue
        register(registry)
    return failed
