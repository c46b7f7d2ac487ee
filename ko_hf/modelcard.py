"""``ko_hf.modelcard``, the path of earlier releases: the model card now lives in :mod:`ko_hf.card` (the callback,
the facts, the data, the template and the pictures, a module each); every name of those modules is importable from
here too."""

from ._lazy import moved_module

__getattr__, __dir__ = moved_module(
    __name__, "ko_hf.card.callback", "ko_hf.card.facts", "ko_hf.card.write", "ko_hf.card.data", "ko_hf.card.render",
    "ko_hf.card.base_model", "ko_hf.card.escape", "ko_hf.card.non_default", "ko_hf.card.pictures", "ko_hf.card.plots",
    "ko_hf.card.portable",
)
