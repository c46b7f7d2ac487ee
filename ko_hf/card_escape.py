"""``ko_hf.card_escape``, the path of earlier releases: text made safe for Markdown now live in :mod:`ko_hf.card.escape`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.escape")
