"""``ko_hf.card_plots``, the path of earlier releases: which pictures a card gets now live in :mod:`ko_hf.card.pictures`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.pictures")
