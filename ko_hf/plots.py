"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.plots` (condensation heatmaps and curves), kept for their imports."""

from .card.plots import (
    CURVE_MIN_SPAN,
    PLOTS_INSTALL_HINT,
    condensation_ylim,
    matplotlib_available,
    neuron_order,
    plot_condensation_comparison,
    plot_condensation_curves,
    plot_similarity_heatmaps,
)

__all__ = [
    "PLOTS_INSTALL_HINT",
    "matplotlib_available",
    "neuron_order",
    "plot_similarity_heatmaps",
    "plot_condensation_curves",
    "plot_condensation_comparison",
    "CURVE_MIN_SPAN",
    "condensation_ylim",
]
