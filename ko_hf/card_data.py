"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.data` (the card's data and Hub metadata), kept for their imports."""

from .card.data import RESTARTED_STATE, RESULT_METRICS, KOModelCardData, card_tags, shown_text

__all__ = [
    "KOModelCardData",
    "RESULT_METRICS",
    "card_tags",
    "RESTARTED_STATE",
    "shown_text",
]
