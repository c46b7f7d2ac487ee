"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.escape` (text made safe for the card), kept for their imports."""

from .card.escape import is_hidden_character, md_code, md_fence, md_text, visible, visible_lines

__all__ = [
    "visible",
    "md_text",
    "md_code",
    "md_fence",
    "visible_lines",
    "is_hidden_character",
]
