"""Loading a text-classification dataset: one entry point, :func:`load_text_classification`.

``dataset`` may be

* a registered recipe name: ``"imdb"`` (Hub ``stanfordnlp/imdb``), ``"snips"`` (Hub ``benayas/snips``, the 7-intent
  Snips benchmark), ``"demo"`` (a small set shipped with the package, see below);
* a recipe name bound to a local copy, ``"imdb=/path/to/aclImdb"`` (label names and citation come from the recipe);
  ``"mrpc"`` (Hub ``nyu-mll/glue``, configuration ``mrpc``) is a sentence-pair recipe;
* a local file or folder, format auto-detected:

  - the original ``aclImdb/`` tree (``train|test/pos|neg/<id>_<rating>.txt``; ``unsup/`` is ignored);
  - the original Snips benchmark JSON folder (``<Intent>/train_<Intent>_full.json`` + ``validate_<Intent>.json``,
    each entry ``{"data": [{"text": ...}, ...]}``; the pieces are joined). The ``validate_*`` files are the
    benchmark's held-out set and become **test**; validation is carved from train. Files that are not strict
    UTF-8 (PlayMusic stores emoji as UTF-8-encoded surrogates) are decoded robustly;
  - the ``train|valid|test/{seq.in,label}`` layout (one example per line);
  - CSV / TSV / JSON / JSONL / Parquet files (read by the ``datasets`` packaged builders ``csv``, ``json`` and
    ``parquet``), or a folder of them. In a folder, a file's split comes from its name
    or parent folders (``train``, ``valid``/``validation``/``dev``/``val``, ``test``); a single file is train
    unless it has a ``split`` column. Text and label columns are auto-detected (``text``, ``sentence``,
    ``content``, ... / ``label``, ``labels``, ``category``, ``intent``, ...) or given explicitly. A path that
    exists is read literally, whatever its characters (``ds[a].csv``); one that does not exist but is a glob
    pattern (``data/part*.csv``, ``data/**/*.jsonl``) reads every data file it matches, split by name as in a
    folder. A CSV/TSV file must parse cleanly: a row with another number of fields than the header, a quote that
    never closes, or a quoted field that swallows lines reading as rows of their own is an error naming the line;
* any other Hub id ``owner/name`` (valid for ``huggingface_hub.utils.validate_repo_id``; loaded with
  :func:`datasets.load_dataset`; fails fast when offline).

Result: a :class:`TextClassificationData` whose ``DatasetDict`` has splits ``train``, ``validation`` and, when the
source has a held-out split, ``test``; each split has exactly the columns ``text`` (string) and ``label``
(``ClassLabel``), and for a sentence pair (two text columns: ``text_column=["premise", "hypothesis"]``) ``text``,
``text_pair`` (the second sentence) and ``label``: tokenize with ``tokenizer(text, text_pair)``. A missing
validation split is carved from train (seeded, stratified by label); test is never touched except by
``max_eval_samples``; a ``max_train_samples`` subset must keep at least 2 classes. String labels become a
``ClassLabel`` with sorted names; integer labels keep the names the recipe (or the Hub features) gives. Every bad
input raises :class:`DatasetError` (a ``ValueError``) with a one-line message, before any training starts.

The ``demo`` set (``ko_hf/resources/demo_intents.jsonl``) is ours: 300 hand-written customer-support messages of an
online shop in 5 intents (``account_access``, ``order_tracking``, ``payment_billing``, ``product_info``,
``returns_refunds``; 60 each), with a fixed stratified split train 210 / validation 45 / test 45.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers.utils import logging

from ..hub import dataset_offline_flag, hub_unreachable, is_repo_id
from .errors import DatasetError
from .labels import (
    LABEL_COLUMN_CANDIDATES,
    Texts,
    _drop_unseen,
    _extract,
    _label_names,
    _pick_column,
    _pick_text_columns,
    _text_columns,
    _unify_label_types,
)
from .local import _FORMAT_CITATIONS, _GLOB_CHARACTERS, _load_local, _load_resource, _pattern_files, _Source
from .recipes import DATASET_RECIPES, DatasetRecipe
from .splits import SPLITS, _carve_validation, _check_train_subset, _subset, canonical_split
from .tabular import SUPPORTED_SUFFIXES, Table, concat, num_rows

logger = logging.get_logger(__name__)

__all__ = ["TextClassificationData", "load_text_classification"]

#: The text columns of a loaded split: the text, and the second sentence of a pair.
TEXT_OUTPUT_COLUMNS = ("text", "text_pair")


@dataclass
class TextClassificationData:
    """A ready-to-tokenize dataset: splits ``train``/``validation``[/``test``] with columns ``text``, ``label``
    (and ``text_pair`` for a sentence pair).

    ``text_columns``: the source's text column(s) the ``text`` (and ``text_pair``) column came from, in order --
    ``("review",)``, or ``("premise", "hypothesis")`` for a sentence pair (tokenized as
    ``tokenizer(text, text_pair)``); empty when not recorded (an instance built by hand). The other facts the
    model card states: ``label_column``; ``validation_carved`` (the validation split was carved from train, a
    seeded, stratified ``validation_fraction`` of it, ``seed``) or not (the source's own; None: not recorded);
    ``dropped_unseen``: rows per split dropped for a label never seen in training (``drop_unseen_eval_labels``).
    """

    dataset: datasets.DatasetDict
    label_names: list[str]
    name: str
    source: str
    citation: str | None = None
    data_format: str = ""
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    validation_carved: bool | None = None
    validation_fraction: float | None = None
    seed: int | None = None
    dropped_unseen: dict[str, int] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def is_pair(self) -> bool:
        """True for sentence pairs (a ``text_pair`` column next to ``text``)."""
        return len(self.text_columns) == 2

    def summary(self) -> str:
        sizes = ", ".join(f"{split} {len(ds):,}" for split, ds in self.dataset.items())
        pair = f", sentence pairs ({' + '.join(self.text_columns)})" if self.is_pair else ""
        return f"{self.name} ({self.source}): {self.num_labels} labels{pair}, {sizes}"


# --------------------------------------------------------------------------------------------------- sources


def _load_hub(hub_id: str, name: str | None, config: str | None = None) -> _Source:
    local = f"--dataset {name}=/path/to/data or --dataset /path/to/data" if name else "--dataset /path/to/data"
    flag = dataset_offline_flag()
    problem = None if flag else hub_unreachable()
    if problem is not None:  # datasets would retry for ~25 s before failing
        raise DatasetError(
            f"cannot reach the Hugging Face Hub to load dataset {hub_id!r} ({problem}); no offline flag "
            f"(HF_DATASETS_OFFLINE, HF_HUB_OFFLINE) is set. If it is in your local cache, set HF_DATASETS_OFFLINE=1 "
            f"to use that copy; else check the network, or pass a local copy: {local}")
    try:
        dd = datasets.load_dataset(hub_id, config)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear DatasetError
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if flag is not None:
            raise DatasetError(
                f"dataset {hub_id!r} is not in the local cache and {flag} is set (offline mode), so the Hub is not "
                f"asked: unset it to download the dataset once, or pass a local copy: {local} ({message})"
            ) from err
        raise DatasetError(f"could not load {hub_id!r} from the Hugging Face Hub: {message}") from err
    if not isinstance(dd, datasets.DatasetDict):
        dd = datasets.DatasetDict({"train": dd})
    class_names = {col: tuple(feat.names) for ds in dd.values() for col, feat in ds.features.items()
                   if isinstance(feat, datasets.ClassLabel)}
    return _Source(dict(dd.items()), "hub", f"hub:{hub_id}", class_names)


def _looks_like_path(spec: str) -> bool:
    """Explicitly path-like: ``./x``, ``/x``, ``~/x``, ``x/``, ``a/b/c`` or a data file name (not ``owner/name``)."""
    if spec.startswith((".", "/", "~")) or spec.endswith(("/", os.sep)):
        return True
    if Path(spec).suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    return (os.sep in spec or "/" in spec) and not is_repo_id(spec, namespaced=True)


def _local_path(spec: str) -> Path | None:
    """``spec`` as a local source: a path that exists (read literally, whatever its characters), else a glob
    pattern that matches data files; None for neither."""
    path = Path(spec).expanduser()
    return path if path.exists() or _pattern_files(spec) else None


def _missing_path(spec: str) -> DatasetError:
    pattern = " (and no file matches it as a pattern)" if _GLOB_CHARACTERS.search(spec) else ""
    return DatasetError(f"dataset path does not exist: {spec}{pattern}")


def _existing_path(spec: str) -> Path:
    path = _local_path(spec)
    if path is None:
        raise _missing_path(spec)
    return path


def _resolve(spec: str) -> tuple[DatasetRecipe | None, Path | None, str | None]:
    """``spec`` -> (recipe, local path, Hub id); exactly one of path / Hub id / recipe source is used."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"dataset must be a non-empty name, path or Hub id, got {spec!r}")
    spec = spec.strip()
    if spec in DATASET_RECIPES:
        return DATASET_RECIPES[spec], None, DATASET_RECIPES[spec].hub_id
    if "=" in spec and not Path(spec).exists():
        name, location = (s.strip() for s in spec.split("=", 1))
        if name not in DATASET_RECIPES:
            raise DatasetError(f"unknown dataset recipe {name!r} in {spec!r}; known: {sorted(DATASET_RECIPES)}")
        return DATASET_RECIPES[name], _existing_path(location), None
    local = _local_path(spec)
    if local is not None:
        return None, local, None
    if _looks_like_path(spec):
        raise _missing_path(spec)
    if is_repo_id(spec, namespaced=True):
        return None, None, spec
    raise DatasetError(
        f"unknown dataset {spec!r}: not a known name ({', '.join(sorted(DATASET_RECIPES))}), an existing path "
        "or a Hub id owner/name"
    )


def _load_source(spec: str, recipe: DatasetRecipe | None, path: Path | None, hub_id: str | None) -> _Source:
    if path is not None:
        return _load_local(path)
    if recipe is not None and recipe.resource:
        return _load_resource(recipe.resource)
    if hub_id:
        return _load_hub(hub_id, recipe.name if recipe else None, recipe.hub_config if recipe else None)
    raise DatasetError(f"recipe {spec!r} has no default source; pass {spec}=/path/to/data")


def _canonical_splits(source: _Source, recipe: DatasetRecipe | None) -> dict[str, Table]:
    """Rename source splits to train/validation/test (recipe names first, then aliases); drop the rest."""
    explicit = recipe.split_map() if recipe else {}
    ignored = recipe.ignore_splits if recipe else ()
    out: dict[str, list[Table]] = defaultdict(list)
    for split, table in source.splits.items():
        target = None if split in ignored else explicit.get(split) or canonical_split(split)
        if target is None:
            logger.info("ignoring split %r of %s", split, source.location)
            continue
        out[target].append(table.to_dict() if isinstance(table, datasets.Dataset) else table)
    if "train" not in out:
        raise DatasetError(f"no train split in {source.location}; splits found: {sorted(source.splits)}")
    return {s: concat(out[s]) for s in SPLITS if s in out}


# --------------------------------------------------------------------------------------------------- main


def _check_args(validation_fraction: float, max_train_samples: int | None, max_eval_samples: int | None) -> None:
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    for arg, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DatasetError(f"{arg} must be a positive integer or None, got {value!r}")


def _columns(texts: list[Texts], ids: list[int], names: Sequence[str]) -> dict[str, list]:
    """The output columns of one split: ``text`` (``text_pair``) and ``label``."""
    return {**{name: [t[k] for t in texts] for k, name in enumerate(names)}, "label": ids}


def load_text_classification(
    dataset: str,
    *,
    text_column: str | Sequence[str] | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    drop_unseen_eval_labels: bool = False,
) -> TextClassificationData:
    """Load ``dataset`` (recipe name, ``name=path``, local path, glob pattern or Hub id) as train/validation[/test]
    text+label.

    ``text_column``: one column, or two (``["premise", "hypothesis"]``) for sentence pairs: the second becomes the
    ``text_pair`` column; None detects one. ``validation_fraction`` is only used when the source has no validation
    split. ``max_train_samples`` /
    ``max_eval_samples`` take seeded, label-stratified subsets of train / of validation and test. Raises
    :class:`DatasetError` on any bad input.
    """
    _check_args(validation_fraction, max_train_samples, max_eval_samples)
    explicit_text = _text_columns(text_column)
    recipe, path, hub_id = _resolve(dataset)
    source = _load_source(dataset, recipe, path, hub_id)
    tables = _canonical_splits(source, recipe)
    empty = next((split for split, table in tables.items() if not num_rows(table)), None)
    if empty is not None:
        raise DatasetError(f"split {empty!r} of {source.location} is empty")

    columns = list(tables["train"])
    text_cols = _pick_text_columns(columns, explicit_text, recipe)
    label_col = _pick_column(columns, label_column, recipe and recipe.label_column, LABEL_COLUMN_CANDIDATES, "label")
    if label_col in text_cols:
        raise DatasetError(f"text and label column are the same ({label_col!r}); columns found: {columns}")
    for split, table in tables.items():
        missing = [c for c in (*text_cols, label_col) if c not in table]
        if missing:
            raise DatasetError(f"split {split!r} lacks column(s) {missing}; columns found: {list(table)}")

    raw = _unify_label_types({s: _extract(f, text_cols, label_col, f"{s!r} of {source.location}")
                              for s, f in tables.items()})
    seen = set(raw["train"][1])
    before = {s: len(labels) for s, (_, labels) in raw.items()}
    raw.update({s: _drop_unseen(s, *raw[s], seen, drop_unseen_eval_labels) for s in raw if s != "train"})
    dropped = {s: before[s] - len(raw[s][1]) for s in raw if before[s] != len(raw[s][1])}

    known = recipe.label_names if recipe and recipe.label_names else source.class_names.get(label_col)
    names, to_id = _label_names(raw["train"][1], known)
    present = sorted({str(y) for y in raw["train"][1]})
    if len(present) < 2:
        raise DatasetError(f"the train split of {source.location} has a single label ({present[0]!r} in column "
                           f"{label_col!r}); a classifier needs at least 2 classes")
    encoded = {s: (texts, [to_id[y] for y in labels]) for s, (texts, labels) in raw.items()}

    carved = "validation" not in encoded
    if carved:
        encoded["train"], encoded["validation"] = _carve_validation(*encoded["train"], validation_fraction, seed)
        logger.info("carved validation (%d rows, %.0f%%, seed %d) from train", len(encoded["validation"][1]),
                    100 * validation_fraction, seed)
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    classes = len(set(encoded["train"][1]))
    encoded = {s: _subset(*encoded[s], limits[s], seed) for s in SPLITS if s in encoded}
    _check_train_subset(encoded["train"][1], max_train_samples, classes, names)

    columns_out = TEXT_OUTPUT_COLUMNS[:len(text_cols)]
    features = datasets.Features({**{name: datasets.Value("string") for name in columns_out},
                                  "label": datasets.ClassLabel(names=names)})
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(_columns(t, y, columns_out), features=features)
                               for s, (t, y) in encoded.items()})
    citation = recipe.citation if recipe else _FORMAT_CITATIONS.get(source.data_format)
    data = TextClassificationData(dd, names, recipe.name if recipe else dataset, source.location, citation,
                                  source.data_format, text_cols, label_column=label_col, validation_carved=carved,
                                  validation_fraction=validation_fraction if carved else None, seed=seed,
                                  dropped_unseen=dropped)
    logger.info("%s", data.summary())
    return data
