"""``ko_hf.plots``, the path of earlier releases: condensation heatmaps and curves now live in :mod:`ko_hf.card.plots`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.card.plots")
