"""``ko_hf.run_record``, the path of earlier releases: what defined a run, which a resume keeps now live in :mod:`ko_hf.run.record`;
every name of that module is importable from here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(__name__, "ko_hf.run.record")
