"""Lazy subcommand registries shared by every command-line tool (hi-agent, hi-train, hi-firmware, hi-bench).

Each tool lists modules that expose ``register_cli(subparsers)``. A module that is not there (an optional
part not installed) is skipped; a module that is there but fails to import is an error, so a broken
dependency is never mistaken for an absent feature.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType


def load_subcommand_modules(names: Sequence[str], tool: str = "this tool") -> list[ModuleType]:
    """Import the registry's modules; missing ones are skipped, broken ones raise."""
    modules = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (exc.name == name or name.startswith(exc.name + ".")):
                continue
            raise
        if not hasattr(module, "register_cli"):
            raise RuntimeError(f"{name} is in the {tool} registry but has no register_cli(subparsers)")
        modules.append(module)
    return modules


def register_subcommands(subparsers, names: Sequence[str], tool: str = "this tool") -> None:
    for module in load_subcommand_modules(names, tool):
        module.register_cli(subparsers)
