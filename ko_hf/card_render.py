"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.render` (the card's Markdown, through its template), kept for
their imports.
"""

from .card.render import KO_CITATION, KO_PAPER_URL, TEMPLATE_PATH, render_model_card, start_label

__all__ = [
    "KO_CITATION",
    "KO_PAPER_URL",
    "TEMPLATE_PATH",
    "render_model_card",
    "start_label",
]
