"""``ko_hf.portable``, the path of earlier releases: paths and commands without a user's name now live in :mod:`ko_hf.card.portable`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.portable")
