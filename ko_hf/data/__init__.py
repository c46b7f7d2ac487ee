"""Text-classification data for a run: one entry point, :func:`load_text_classification`.

* :mod:`~ko_hf.data.load`: :func:`load_text_classification` (what ``dataset`` may be: see its module) resolves a
  name, path, pattern or Hub id to its source, loads it and returns a :class:`TextClassificationData`;
* :mod:`~ko_hf.data.recipes`: :class:`DatasetRecipe`, :data:`DATASET_RECIPES` (``imdb``, ``snips``, ``mrpc``,
  ``demo``), :func:`register_recipe` and the citations;
* :mod:`~ko_hf.data.local`: the local layouts (aclImdb, Snips JSON, ``seq.in``, folders and glob patterns of data
  files) and :func:`detect_local_format`;
* :mod:`~ko_hf.data.tabular`: one CSV / TSV / JSON / JSONL / Parquet file read into a :data:`Table`,
  :func:`read_text_robust`;
* :mod:`~ko_hf.data.labels`: the text and label columns, the labels and their names;
* :mod:`~ko_hf.data.splits`: split names, :func:`stratified_sample`, subsets and the validation carved from train;
* :mod:`~ko_hf.data.errors`: :class:`DatasetError`, which every bad input raises.

Every public name loads on first use, as in :mod:`ko_hf`.
"""

from .._lazy import lazy_exports

_LAZY = {
    "DatasetError": "errors",
    **{name: "recipes" for name in (
        "DATASET_RECIPES", "DatasetRecipe", "register_recipe", "IMDB_CITATION", "SNIPS_CITATION", "MRPC_CITATION",
    )},
    **{name: "load" for name in ("TextClassificationData", "load_text_classification")},
    **{name: "local" for name in ("LOCAL_FORMATS", "detect_local_format")},
    **{name: "tabular" for name in ("SUPPORTED_SUFFIXES", "Table", "read_text_robust")},
    **{name: "labels" for name in ("LABEL_COLUMN_CANDIDATES", "TEXT_COLUMN_CANDIDATES")},
    **{name: "splits" for name in ("SPLITS", "SPLIT_ALIASES", "canonical_split", "stratified_sample")},
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
