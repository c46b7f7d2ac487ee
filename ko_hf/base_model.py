"""``ko_hf.base_model``, the path of earlier releases: where a card's base model came from now live in :mod:`ko_hf.card.base_model`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.base_model")
