"""The module paths of earlier releases, and the import hook that keeps them working.

Up to 0.3 the model card, a run's folder and the plots were flat modules of ``ko_hf`` (``ko_hf.modelcard``,
``ko_hf.card_data``, ``ko_hf.preflight``, ...). Their code lives in the packages ``ko_hf.card`` and ``ko_hf.run``
now; importing an old path gives a module that reads each name, on first use, from the first of its new homes that
has it (:func:`ko_hf._lazy.moved_module`). New code imports from the packages.
"""

from __future__ import annotations

import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

from ._lazy import moved_module

_CARD = ("callback", "facts", "write", "data", "render", "base_model", "escape", "non_default", "pictures", "plots",
         "portable")

#: Old module -> its new home(s), searched in order.
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "ko_hf.modelcard": tuple(f"ko_hf.card.{name}" for name in _CARD),
    "ko_hf.base_model": ("ko_hf.card.base_model",),
    "ko_hf.card_data": ("ko_hf.card.data",),
    "ko_hf.card_escape": ("ko_hf.card.escape",),
    "ko_hf.card_plots": ("ko_hf.card.pictures",),
    "ko_hf.card_render": ("ko_hf.card.render",),
    "ko_hf.card_reproduce": ("ko_hf.card.reproduce",),
    "ko_hf.non_default": ("ko_hf.card.non_default",),
    "ko_hf.plots": ("ko_hf.card.plots",),
    "ko_hf.portable": ("ko_hf.card.portable",),
    "ko_hf.checkpoints": ("ko_hf.run.checkpoints",),
    "ko_hf.preflight": ("ko_hf.run.preflight",),
    "ko_hf.run_folder": ("ko_hf.run.folder",),
    "ko_hf.run_record": ("ko_hf.run.record",),
}


class MovedModuleFinder(MetaPathFinder, Loader):
    """Finds the old paths of :data:`MOVED_MODULES` (after every other finder: a real module always wins)."""

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        return ModuleSpec(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        homes = MOVED_MODULES[module.__name__]
        module.__doc__ = f"{module.__name__}, the path of earlier releases: its names come from {', '.join(homes)}."
        module.__getattr__, module.__dir__ = moved_module(module.__name__, *homes)


def install() -> None:
    """Add the finder to ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
