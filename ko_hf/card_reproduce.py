"""``ko_hf.card_reproduce``, the path of earlier releases: the command and Python snippet that train a model again now live in :mod:`ko_hf.card.reproduce`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.reproduce")
