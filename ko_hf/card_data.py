"""``ko_hf.card_data``, the path of earlier releases: the card's facts and YAML metadata, KOModelCardData now live in :mod:`ko_hf.card.data`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.data")
