"""``ko_hf.non_default``, the path of earlier releases: the arguments a run changed from their defaults now live in :mod:`ko_hf.card.non_default`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.non_default")
