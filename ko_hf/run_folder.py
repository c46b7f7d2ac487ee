"""``ko_hf.run_folder``, the path of earlier releases: a run's output folder: its lock, its results now live in :mod:`ko_hf.run.folder`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.run.folder")
