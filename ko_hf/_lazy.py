"""Names a package exports that load on first use (PEP 562), so that importing the package imports nothing heavy."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str], computed: Collection[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``homes`` is read from its module (relative to the
    package) on first use and kept in the package's namespace, except the ``computed`` ones, read each time."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            value = getattr(import_module(f".{homes[name]}", package), name)
            if name not in computed:
                setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__


def moved_module(old: str, *homes: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a module kept at an earlier release's path ``old``: each name is read, on first
    use, from the first module of ``homes`` (absolute names) that has it, so imports of that release keep working
    without a list of names to keep in step with the code."""

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            return sorted({n for home in homes for n in getattr(import_module(home), "__all__", ())})
        if not name.startswith("__"):
            for home in homes:
                module = import_module(home)
                if hasattr(module, name):
                    return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({n for home in homes for n in dir(import_module(home))})

    return __getattr__, __dir__
