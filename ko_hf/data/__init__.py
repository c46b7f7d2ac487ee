"""Text-classification data for a run: one entry point, :func:`load_text_classification`.

Every public name loads on first use, as in :mod:`ko_hf`.
"""

from .._lazy import lazy_exports

_LAZY = {name: "load" for name in (
    "DATASET_RECIPES", "DatasetError", "DatasetRecipe", "TextClassificationData", "detect_local_format",
    "load_text_classification", "read_text_robust", "register_recipe", "stratified_sample",
    "IMDB_CITATION", "SNIPS_CITATION", "MRPC_CITATION", "LABEL_COLUMN_CANDIDATES", "TEXT_COLUMN_CANDIDATES",
    "LOCAL_FORMATS", "SPLITS", "SPLIT_ALIASES", "SUPPORTED_SUFFIXES", "Table", "canonical_split",
)}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
