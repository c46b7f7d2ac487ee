"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.pictures` (the pictures a card gets), kept for their imports."""

from .card.pictures import CURVES_FILE, draw_card_plots, similarity_plot_file

__all__ = [
    "CURVES_FILE",
    "draw_card_plots",
    "similarity_plot_file",
]
