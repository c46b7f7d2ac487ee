"""``ko_hf.checkpoints``, the path of earlier releases: which checkpoint a run resumes from, and whether it is whole now live in :mod:`ko_hf.run.checkpoints`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.run.checkpoints")
