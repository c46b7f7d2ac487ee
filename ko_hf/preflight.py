"""``ko_hf.preflight``, the path of earlier releases: the checks of a run that need no heavy import now live in :mod:`ko_hf.run.preflight`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.run.preflight")
