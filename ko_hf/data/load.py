"""Dataset recipes for text classification: one entry point, :func:`load_text_classification`.

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

import contextlib
import csv
import glob
import io
import itertools
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
from transformers.utils import logging

from ..hub import dataset_offline_flag, hub_unreachable, is_repo_id

logger = logging.get_logger(__name__)

__all__ = [
    "DATASET_RECIPES",
    "DatasetError",
    "DatasetRecipe",
    "TextClassificationData",
    "detect_local_format",
    "load_text_classification",
    "read_text_robust",
    "register_recipe",
    "stratified_sample",
]


class DatasetError(ValueError):
    """Bad dataset input (unknown name, missing path/column, empty split, offline Hub, ...)."""


IMDB_CITATION = """@InProceedings{maas-EtAl:2011:ACL-HLT2011,
  author    = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and Ng, Andrew Y. and Potts, Christopher},
  title     = {Learning Word Vectors for Sentiment Analysis},
  booktitle = {Proceedings of the 49th Annual Meeting of the Association for Computational Linguistics: Human Language Technologies},
  month     = {June},
  year      = {2011},
  address   = {Portland, Oregon, USA},
  publisher = {Association for Computational Linguistics},
  pages     = {142--150},
  url       = {http://www.aclweb.org/anthology/P11-1015}
}"""

SNIPS_CITATION = """@article{coucke2018snips,
  author  = {Coucke, Alice and Saade, Alaa and Ball, Adrien and Bluche, Th{\\'e}odore and Caulier, Alexandre and Leroy, David and Doumouro, Cl{\\'e}ment and Gisselbrecht, Thibault and Caltagirone, Francesco and Lavril, Thibaut and Primet, Ma{\\"e}l and Dureau, Joseph},
  title   = {Snips Voice Platform: an embedded Spoken Language Understanding system for private-by-design voice interfaces},
  journal = {arXiv preprint arXiv:1805.10190},
  year    = {2018},
  url     = {https://arxiv.org/abs/1805.10190}
}"""

MRPC_CITATION = """@inproceedings{dolan-brockett-2005-automatically,
  author    = {Dolan, William B. and Brockett, Chris},
  title     = {Automatically Constructing a Corpus of Sentential Paraphrases},
  booktitle = {Proceedings of the Third International Workshop on Paraphrasing ({IWP}2005)},
  year      = {2005},
  url       = {https://aclanthology.org/I05-5002}
}"""

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "validate": "validation",
    "test": "test",
    "testing": "test",
}
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "review", "utterance", "query", "document", "question")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "category", "intent", "class", "target", "sentiment", "topic")
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
#: The text columns of a loaded split: the text, and the second sentence of a pair.
TEXT_OUTPUT_COLUMNS = ("text", "text_pair")
LOCAL_FORMATS = ("aclImdb", "snips-json", "seq.in", "tabular")


# --------------------------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class DatasetRecipe:
    """How to load one named dataset.

    ``hub_id`` (loaded with ``datasets.load_dataset``) or ``resource`` (a file in ``ko_hf/resources``) is the
    default source (``hub_config``: the Hub dataset's configuration, e.g. GLUE's ``mrpc``); ``name=/local/path``
    overrides it. ``text_column``/``label_column`` are tried first (then the auto-detected names); a pair of text
    columns makes a sentence-pair recipe, whose columns must exist. ``label_names`` names integer labels (index =
    id). ``*_split`` are the source's split names (``validation_split=None``: none, carved from train;
    ``test_split=None``: no test split); ``ignore_splits`` are left out (GLUE's ``test``, whose labels are hidden).
    """

    name: str
    description: str
    hub_id: str | None = None
    resource: str | None = None
    hub_config: str | None = None
    text_column: str | tuple[str, str] = "text"
    label_column: str = "label"
    label_names: tuple[str, ...] | None = None
    train_split: str = "train"
    validation_split: str | None = None
    test_split: str | None = "test"
    ignore_splits: tuple[str, ...] = ()
    citation: str | None = None

    def split_map(self) -> dict[str, str]:
        """Source split name -> canonical split name."""
        pairs = (
            (self.train_split, "train"),
            (self.validation_split, "validation"),
            (self.test_split, "test"),
        )
        return {src: dst for src, dst in pairs if src}


DATASET_RECIPES: dict[str, DatasetRecipe] = {}


def register_recipe(recipe: DatasetRecipe, *, overwrite: bool = False) -> DatasetRecipe:
    """Add ``recipe`` to :data:`DATASET_RECIPES` (an existing name needs ``overwrite=True``)."""
    if not recipe.name or "=" in recipe.name or "/" in recipe.name:
        raise DatasetError(f"invalid recipe name {recipe.name!r}: must be non-empty without '=' or '/'")
    if recipe.name in DATASET_RECIPES and not overwrite:
        raise DatasetError(f"recipe {recipe.name!r} is already registered (pass overwrite=True to replace it)")
    DATASET_RECIPES[recipe.name] = recipe
    return recipe


register_recipe(
    DatasetRecipe(
        name="imdb",
        description="IMDB movie reviews, binary sentiment (Maas et al., 2011): 25k train / 25k test",
        hub_id="stanfordnlp/imdb",
        label_names=("neg", "pos"),
        citation=IMDB_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="snips",
        description="Snips NLU benchmark, 7 intents (Coucke et al., 2018): Hub copy with 13,084 train / 1,400 test",
        hub_id="benayas/snips",
        label_column="category",
        citation=SNIPS_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="mrpc",
        description="Microsoft Research Paraphrase Corpus (GLUE MRPC), sentence pairs, paraphrase or not: 3,668 "
                    "train (validation carved from it) / 408 test (GLUE's validation split; its test labels are "
                    "hidden)",
        hub_id="nyu-mll/glue",
        hub_config="mrpc",
        text_column=("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        test_split="validation",
        ignore_splits=("test",),
        citation=MRPC_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="demo",
        description="ko-hf demo: 300 customer-support messages, 5 intents, train 210 / validation 45 / test 45",
        resource="demo_intents.jsonl",
        validation_split="validation",
    )
)


# --------------------------------------------------------------------------------------------------- result


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


# --------------------------------------------------------------------------------------------------- pure helpers


def read_text_robust(path: str | os.PathLike) -> str:
    """Read a text file as UTF-8; repair UTF-8-encoded surrogate pairs (CESU-8), else replace undecodable bytes."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("utf-8-sig", "surrogatepass").encode("utf-16", "surrogatepass").decode("utf-16")
        logger.info("%s is not strict UTF-8: decoded its UTF-8-encoded surrogate pairs", path)
        return text
    except UnicodeError:
        text = data.decode("utf-8-sig", errors="replace")
        logger.warning("%s is not valid UTF-8: replaced %d undecodable byte run(s)", path, text.count("\ufffd"))
        return text


def canonical_split(name: str) -> str | None:
    """``"valid"`` -> ``"validation"``, ``"train"`` -> ``"train"``, unknown -> None."""
    return SPLIT_ALIASES.get(str(name).strip().lower())


def _split_from_path(relative: Path) -> str | None:
    """The split a data file belongs to, from the words of its relative path (file name first)."""
    parts = [relative.name.split(".")[0], *reversed(relative.parts[:-1])]
    for part in parts:
        for word in re.split(r"[^a-z]+", part.lower()):
            if canonical_split(word):
                return canonical_split(word)
    return None


def _allocate(counts: Sequence[int], n: int, floors: Sequence[int], caps: Sequence[int]) -> list[int]:
    """Split ``n`` over classes proportionally to ``counts`` (largest remainder), within ``floors``..``caps``."""
    total = sum(counts)
    quota = [n * c / total for c in counts]
    alloc = [min(cap, max(lo, int(q))) for q, lo, cap in zip(quota, floors, caps)]
    while sum(alloc) < n:
        room = [i for i in range(len(alloc)) if alloc[i] < caps[i]]
        if not room:
            break
        alloc[max(room, key=lambda i: (quota[i] - alloc[i], -i))] += 1
    while sum(alloc) > n:
        room = [i for i in range(len(alloc)) if alloc[i] > floors[i]]
        if not room:
            break
        alloc[max(room, key=lambda i: (alloc[i] - quota[i], -i))] -= 1
    return alloc


def stratified_sample(
    labels: Sequence[Hashable], n: int, seed: int, *, keep_each_class: bool = False, leave_one: bool = False
) -> list[int]:
    """Sorted indices of a seeded sample of ``n`` items, stratified by label (proportional allocation).

    ``keep_each_class``: every class gets at least one item when ``n`` allows; ``leave_one``: at least one item of
    every class is left out of the sample (used to carve validation without emptying a class from train).

    Why not ``datasets.Dataset.train_test_split(stratify_by_column=...)``: for the same seed it picks other rows
    (its permutation is drawn and sliced differently; measured with seeds 42 and 0: of the 2,500 validation
    reviews carved from the 25,000 IMDB train reviews, 0 are the same; from Snips' 13,784 train utterances it
    carves 1,379 rows instead of 1,378, 1 in common), so switching would change the data of every run for a given
    seed. It has no ``keep_each_class``/``leave_one`` either, and refuses a class with a single row.
    """
    by_class: dict[Hashable, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    classes = sorted(by_class, key=str)
    counts = [len(by_class[c]) for c in classes]
    floors = [1 if keep_each_class and n >= len(classes) else 0 for _ in classes]
    caps = [c - 1 if leave_one else c for c in counts]
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for cls, k in zip(classes, _allocate(counts, n, floors, caps)):
        chosen.extend(rng.permutation(by_class[cls])[:k].tolist())
    return sorted(chosen)


def _pick_column(columns: Sequence[str], explicit: str | None, preferred: str | None, candidates: Iterable[str],
                 kind: str) -> str:
    """The text/label column: ``explicit`` (must exist), else ``preferred``, else the first known candidate."""
    if explicit is not None:
        if explicit in columns:
            return explicit
        raise DatasetError(f"{kind} column {explicit!r} not found; columns found: {list(columns)}")
    if preferred in columns:
        return preferred
    lowered = {str(c).lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    raise DatasetError(
        f"no {kind} column found (looked for {list(candidates)}); columns found: {list(columns)}; "
        f"name it with --{kind}-column COLUMN ({kind}_column: COLUMN in a YAML config)"
    )


def _text_columns(text_column: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``text_column`` as a tuple of one name, or two for a sentence pair; None (auto-detect one) stays None."""
    if text_column is None:
        return None
    names = (text_column,) if isinstance(text_column, str) else tuple(text_column)
    if not 1 <= len(names) <= 2 or not all(isinstance(name, str) and name for name in names):
        raise DatasetError(f"text_column takes one column, or two for a sentence pair (--text-column A --text-column "
                           f"B; text_column: [A, B] in a YAML config), got {len(names)}: {list(names)!r}")
    if len(set(names)) < len(names):
        raise DatasetError(f"text_column names the same column twice ({list(names)!r}); a sentence pair needs two "
                           "different columns")
    return names


def _pick_text_columns(columns: Sequence[str], explicit: tuple[str, ...] | None, recipe: DatasetRecipe | None
                       ) -> tuple[str, ...]:
    """The text column(s): each ``explicit`` one (must exist); else the recipe's (a pair recipe's must exist);
    else one auto-detected column."""
    if explicit is not None:
        return tuple(_pick_column(columns, name, None, TEXT_COLUMN_CANDIDATES, "text") for name in explicit)
    preferred = _text_columns(recipe.text_column) if recipe else None
    if preferred and len(preferred) == 2:
        if all(name in columns for name in preferred):
            return preferred
        raise DatasetError(f"recipe {recipe.name!r} reads the sentence pair {preferred}, but the data has the columns "
                           f"{list(columns)}; name its two text columns with --text-column A --text-column B "
                           "(text_column: [A, B] in a YAML config)")
    return (_pick_column(columns, None, preferred and preferred[0], TEXT_COLUMN_CANDIDATES, "text"),)


def _normalize_label(value):
    """numpy scalars -> Python; integral floats -> int; strings stripped."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value.strip()
    return value


def _is_missing(value) -> bool:
    return (value is None or (isinstance(value, float) and np.isnan(value))
            or (isinstance(value, str) and not value.strip()))


# --------------------------------------------------------------------------------------------------- local readers

#: One table: column name -> that column's values (Python objects, one per row), as ``datasets.Dataset.to_dict()``.
Table = dict[str, list]


@dataclass
class _Source:
    """Raw splits (any columns) + what is known about them."""

    splits: dict[str, Table | datasets.Dataset]
    data_format: str
    location: str
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> ClassLabel names


def _num_rows(table: Table) -> int:
    return len(next(iter(table.values()), ()))


def _concat(tables: Sequence[Table]) -> Table:
    """The rows of ``tables`` one after the other; every column of any of them (None where a table lacks it)."""
    if len(tables) == 1:
        return tables[0]
    names = dict.fromkeys(name for table in tables for name in table)
    return {name: [v for t in tables for v in t.get(name, [None] * _num_rows(t))] for name in names}


#: The ``datasets`` packaged builder (and its options) that reads each file type. CSV/TSV: only an empty field is
#: missing ("NA", "null", "None" are text), and the whole file is one chunk so that a column's type is inferred from
#: all of its rows (``datasets`` reads 10,000 rows at a time and fails when a later chunk changes a column's type).
#: Parquet: a fixed batch size, since the default (the first row group's size) is 0 in a file without rows.
_BUILDERS = {
    ".csv": ("csv", {"keep_default_na": False, "na_values": [""], "chunksize": None}),
    ".tsv": ("csv", {"delimiter": "\t", "keep_default_na": False, "na_values": [""], "chunksize": None}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {"batch_size": 10_000}),
}


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Reading a file shows no ``datasets`` progress bar (unless ``HF_DATASETS_DISABLE_PROGRESS_BARS=0`` asks)."""
    if datasets.utils.are_progress_bars_disabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def _read_with_datasets(path: Path) -> Table:
    """``path`` read by its ``datasets`` packaged builder (:data:`_BUILDERS`).

    The Arrow copy ``datasets`` prepares goes to a temporary folder that is deleted once the rows are read: a local
    file is read afresh each time and leaves nothing in the ``datasets`` cache. ``datasets`` reads ``data_files`` as
    glob patterns, so the name is escaped: ``ds[a].csv`` is that file, not ``dsa.csv``.
    """
    builder_name, options = _BUILDERS[path.suffix.lower()]
    with tempfile.TemporaryDirectory(prefix="ko-hf-read-") as cache, _no_progress_bars():
        builder = datasets.load_dataset_builder(builder_name, data_files=glob.escape(str(path)), cache_dir=cache,
                                                **options)
        builder.download_and_prepare()
        split = (builder.info.splits or {}).get("train")
        if split is None or not split.num_examples:  # datasets cannot build a split without rows
            return {}
        return builder.as_dataset("train", in_memory=True).to_dict()


def _read_json_document(path: Path) -> Table:
    """A ``.json`` file: one JSON document (a list of records, ``{"data": [records]}`` or a dict of columns),
    decoded by :func:`read_text_robust`; anything else is read as JSON lines, one record a line, from the same text.

    The ``datasets`` JSON builder reads the two dict shapes as a single row of lists and needs strict UTF-8 (Snips
    stores emoji as UTF-8-encoded surrogate pairs), so a ``.json`` file is parsed here.
    """
    text = read_text_robust(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = _json_lines(path, text)
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1 and lists[0] and isinstance(lists[0][0], dict):
            obj = lists[0]  # {"data": [{...}, ...]}
        elif obj and all(isinstance(v, list) for v in obj.values()) and len({len(v) for v in obj.values()}) == 1:
            return {str(name): values for name, values in obj.items()}
    if isinstance(obj, list) and all(isinstance(record, dict) for record in obj):
        names = dict.fromkeys(str(name) for record in obj for name in record)
        return {name: [record.get(name) for record in obj] for name in names}
    raise DatasetError(f"{path}: expected a JSON list of records or a dict of columns, got {type(obj).__name__}")


def _json_lines(path: Path, text: str) -> list:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: neither one JSON document nor JSON lines (line {number}: {err})") from None
    return records


#: A quoted field whose lines read as this many rows of the file's own shape is taken for an unclosed quote.
SWALLOWED_ROWS = 2


def _parse_error(path: Path, line: int, problem: str) -> DatasetError:
    return DatasetError(f"cannot read {path}, line {line}: {problem}")


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every record of a CSV text that is not blank, as pandas reads it
    (``"`` quotes, a doubled quote inside a quoted field); a malformed record raises ``csv.Error``, with the
    record's first line as ``err.line``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    first = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            err.line = first
            raise
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield first, reader.line_num, fields
        first = reader.line_num + 1


def _swallowed_rows(field: str, width: int, delimiter: str) -> int:
    """How many lines of a multi-line ``field`` read, on their own, as rows of ``width`` fields (the last line, which
    the closing quote ends, is not counted); 0 unless all of them do."""
    lines = field.splitlines()[:-1]
    shaped = [line for line in lines if len(next(csv.reader([line], delimiter=delimiter), [])) == width]
    return len(shaped) if lines and len(shaped) == len(lines) else 0


def _check_csv(path: Path, delimiter: str) -> None:
    """A CSV/TSV file that does not parse cleanly is an error naming the file and line, not a table that later
    fails with a misleading message: a record with another number of fields than the header, a quote that is never
    closed or is followed by more text, and a quoted field that swallows :data:`SWALLOWED_ROWS` or more lines that
    read as rows of their own (a stray quote that the next quote, many lines on, closes)."""
    width = None
    try:
        for first, last, fields in _csv_records(read_text_robust(path), delimiter):
            if width is None:
                width = len(fields)
                continue
            if len(fields) != width:
                raise _parse_error(path, first, f"{len(fields)} field(s) where the header (line 1) has {width}; a "
                                                f"field that holds {delimiter!r} must be quoted")
            swallowed = max((_swallowed_rows(f, width, delimiter) for f in fields if "\n" in f), default=0)
            if swallowed >= SWALLOWED_ROWS:
                raise _parse_error(path, first, f"a quote opens a field that runs to line {last}, over {swallowed} "
                                                "lines that read as rows of their own: a stray or unclosed quote? "
                                                "(a quote inside a quoted field is written twice: \"\")")
    except csv.Error as err:
        problem = "a quote opened here is never closed" if "end of data" in str(err) else str(err)
        raise _parse_error(path, err.line, f"{problem} (a field that holds {delimiter!r}, a quote or a line "
                                           "break is quoted, and a quote inside it written twice)") from None


def _read_table(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix not in _BUILDERS:
        raise DatasetError(f"unsupported file type {suffix or path.name!r} ({path}); supported: "
                           f"{', '.join(SUPPORTED_SUFFIXES)}, or an aclImdb / Snips JSON / seq.in folder")
    builder, options = _BUILDERS[suffix]
    if builder == "csv":
        _check_csv(path, options.get("delimiter", ","))
    try:
        return _read_json_document(path) if suffix == ".json" else _read_with_datasets(path)
    except DatasetError:
        raise
    except Exception as err:  # parse errors of pandas/pyarrow, which datasets wraps in DatasetGenerationError
        cause = err.__cause__ if isinstance(err, datasets.exceptions.DatasetGenerationError) and err.__cause__ else err
        raise DatasetError(f"cannot read {path}: {type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}") \
            from err


def _split_by_column(table: Table, where: str) -> dict[str, Table]:
    """A table with a ``split`` column -> one table per split, without that column. The rows of each ``split``
    value keep their order, the values follow in order of first appearance; rows without a value are dropped."""
    rows_of: dict[Hashable, list[int]] = defaultdict(list)
    for i, value in enumerate(table["split"]):
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            rows_of[value].append(i)
    rows: dict[str, list[int]] = defaultdict(list)
    for value, indices in rows_of.items():
        split = canonical_split(value)
        if split is None:
            raise DatasetError(f"{where}: unknown split {value!r} in the 'split' column; use train/validation/test")
        rows[split].extend(indices)
    return {split: {name: [values[i] for i in indices] for name, values in table.items() if name != "split"}
            for split, indices in rows.items()}


def _table_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _load_tabular(path: Path) -> dict[str, Table]:
    """One table file (train, or split by its ``split`` column) or a folder of them (split from file names)."""
    if path.is_file():
        table = _read_table(path)
        return _split_by_column(table, str(path)) if "split" in table else {"train": table}
    files = _table_files(path)
    if not files:
        raise DatasetError(f"no supported data found in {path}; supported: {', '.join(SUPPORTED_SUFFIXES)} files, "
                           "an aclImdb tree, a Snips benchmark JSON folder or train|valid|test/{seq.in,label}")
    return _load_table_files(files, path, str(path))


def _load_table_files(files: Sequence[Path], root: Path, where: str) -> dict[str, Table]:
    """Table files under ``root``, each split by the words of its path below ``root`` (all train when none says)."""
    by_split: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_split[_split_from_path(f.relative_to(root)) or "?"].append(f)
    unassigned = by_split.pop("?", [])
    if not by_split:
        by_split["train"], unassigned = unassigned, []
    if unassigned:
        logger.warning("ignoring %d file(s) in %s with no train/valid/test in their name: %s",
                       len(unassigned), where, [f.name for f in unassigned])
    return {split: _concat([_read_table(f) for f in fs]) for split, fs in by_split.items()}


_GLOB_CHARACTERS = re.compile(r"[*?[]")


def _pattern_files(pattern: str) -> list[Path]:
    """The data files (:data:`SUPPORTED_SUFFIXES`) a glob pattern matches (``**`` spans folders); [] for a text
    without glob characters."""
    if not _GLOB_CHARACTERS.search(pattern):
        return []
    matches = (Path(m) for m in glob.glob(os.path.expanduser(pattern), recursive=True))
    return sorted(m for m in matches if m.is_file() and m.suffix.lower() in SUPPORTED_SUFFIXES)


def _pattern_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without glob characters."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = list(itertools.takewhile(lambda part: not _GLOB_CHARACTERS.search(part), parts))
    return Path(*fixed) if fixed else Path(".")


def _rows_table(rows: Sequence[tuple[str, str]]) -> Table:
    """(text, label) rows -> a table with the columns ``text`` and ``label``."""
    return {"text": [text for text, _ in rows], "label": [label for _, label in rows]}


def _imdb_sort_key(path: Path) -> tuple:
    """aclImdb file names are ``<id>_<rating>.txt``: sort by numeric id."""
    stem = path.stem.split("_")[0]
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def _find_acl_imdb_root(path: Path) -> Path | None:
    for root in (path, path / "aclImdb"):
        if any((root / split / lab).is_dir() for split in ("train", "test") for lab in ("pos", "neg")):
            return root
    return None


def _load_acl_imdb(path: Path) -> dict[str, Table]:
    """``train|test/{neg,pos}/<id>_<rating>.txt`` -> text + string label (``neg``/``pos``); ``unsup`` ignored."""
    root = _find_acl_imdb_root(path)
    splits = {}
    for split in ("train", "test"):
        rows = [
            (read_text_robust(f), lab)
            for lab in ("neg", "pos")
            if (root / split / lab).is_dir()
            for f in sorted((root / split / lab).glob("*.txt"), key=_imdb_sort_key)
        ]
        if (root / split).is_dir():
            splits[split] = _rows_table(rows)
    return splits


def _snips_json_files(path: Path, prefix: str) -> list[Path]:
    patterns = [f"{'*/' * depth}{prefix}_*.json" for depth in range(4)]
    return sorted({f for pattern in patterns for f in path.glob(pattern)})


def _read_snips_json(path: Path) -> list[tuple[str, str]]:
    """``{"<Intent>": [{"data": [{"text": ...}, ...]}, ...]}`` -> (utterance, intent) rows."""
    try:
        obj = json.loads(read_text_robust(path))
    except json.JSONDecodeError as err:
        raise DatasetError(f"cannot parse {path}: {err}") from err
    try:
        return [("".join(chunk["text"] for chunk in ex["data"]).strip(), intent)
                for intent, examples in obj.items() for ex in examples]
    except (AttributeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path} is not a Snips benchmark file ({{intent: [{{'data': [{{'text': ...}}]}}]}})") \
            from err


def _load_snips_json(path: Path) -> dict[str, Table]:
    """Snips benchmark folder: ``train_<I>_full.json`` (else ``train_<I>.json``) -> train, ``validate_<I>.json`` -> test."""
    train_files = _snips_json_files(path, "train")
    full_dirs = {f.parent for f in train_files if f.stem.endswith("_full")}
    train_files = [f for f in train_files if f.stem.endswith("_full") or f.parent not in full_dirs]
    splits = {"train": train_files, "test": _snips_json_files(path, "validate")}
    return {split: _rows_table([row for f in files for row in _read_snips_json(f)])
            for split, files in splits.items() if files}


def _load_seq_in(path: Path) -> dict[str, Table]:
    """``<split>/seq.in`` + ``<split>/label``: one example per line."""
    splits = {}
    for folder in sorted(p.parent for p in path.glob("*/seq.in")):
        split = canonical_split(folder.name)
        if split is None or not (folder / "label").is_file():
            logger.warning("ignoring %s (not a train/valid/test folder with seq.in and label)", folder)
            continue
        texts = read_text_robust(folder / "seq.in").splitlines()
        labels = read_text_robust(folder / "label").splitlines()
        if len(texts) != len(labels):
            raise DatasetError(f"{folder}: seq.in has {len(texts)} lines but label has {len(labels)}")
        splits[split] = {"text": [t.strip() for t in texts], "label": labels}
    return splits


def detect_local_format(path: str | os.PathLike) -> str:
    """One of :data:`LOCAL_FORMATS` for an existing file or folder."""
    path = Path(path)
    if path.is_file():
        return "tabular"
    if _find_acl_imdb_root(path) is not None:
        return "aclImdb"
    if _snips_json_files(path, "train") or _snips_json_files(path, "validate"):
        return "snips-json"
    if any(path.glob("*/seq.in")):
        return "seq.in"
    return "tabular"


_LOCAL_LOADERS = {"aclImdb": _load_acl_imdb, "snips-json": _load_snips_json, "seq.in": _load_seq_in,
                  "tabular": _load_tabular}
_FORMAT_CITATIONS = {"aclImdb": IMDB_CITATION, "snips-json": SNIPS_CITATION}


def _load_local(path: Path) -> _Source:
    if not path.exists():  # a glob pattern (see _resolve)
        logger.info("loading the files that %s matches", path)
        return _Source(_load_table_files(_pattern_files(str(path)), _pattern_root(str(path)), str(path)), "tabular",
                       str(path))
    fmt = detect_local_format(path)
    logger.info("loading %s as %s", path, fmt)
    return _Source(_LOCAL_LOADERS[fmt](path), fmt, str(path))


def _load_resource(filename: str) -> _Source:
    ref = resources.files("ko_hf").joinpath("resources", filename)
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise DatasetError(f"packaged resource ko_hf/resources/{filename} is missing (broken install?)")
        return _Source(_load_tabular(path), "tabular", f"package:ko_hf/resources/{filename}")


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


# --------------------------------------------------------------------------------------------------- resolution


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
    return {s: _concat(out[s]) for s in SPLITS if s in out}


# --------------------------------------------------------------------------------------------------- labels


#: One example's text: ``(text,)``, or ``(text, text_pair)`` for a sentence pair.
Texts = tuple[str, ...]


def _extract(table: Table, text_cols: tuple[str, ...], label_col: str, where: str) -> tuple[list[Texts], list]:
    """(texts, labels) of one split (not empty); rows missing a text or the label are dropped (logged)."""
    columns = {name: table[name] for name in text_cols}
    texts, labels = list(zip(*columns.values())), [_normalize_label(v) for v in table[label_col]]
    if any(isinstance(y, (list, tuple, np.ndarray, dict)) for y in labels):
        raise DatasetError(f"split {where}: column {label_col!r} holds lists (multi-label); one label per row needed")
    keep = [i for i, (t, y) in enumerate(zip(texts, labels))
            if not any(_is_missing(v) for v in t) and not _is_missing(y)]
    if len(keep) < len(texts):
        logger.warning("%s: dropped %d row(s) with an empty text or label", where, len(texts) - len(keep))
    if not keep:
        named = [(f"label column {label_col!r}", labels), *((f"text column {n!r}", v) for n, v in columns.items())]
        empty = [name for name, values in named if all(_is_missing(v) for v in values)]
        raise DatasetError(f"split {where}: every one of its {len(texts)} row(s) has an empty "
                           f"{' and an empty '.join(empty) or 'text or label'}; is that the right column "
                           "(--text-column / --label-column)?")
    return [tuple(str(v) for v in texts[i]) for i in keep], [labels[i] for i in keep]


def _drop_unseen(split: str, texts: list[Texts], labels: list, seen: set, drop: bool) -> tuple[list[Texts], list]:
    unseen = sorted({y for y in labels if y not in seen}, key=str)
    if not unseen:
        return texts, labels
    if not drop:
        raise DatasetError(f"{split} labels never seen in train: {unseen}; to drop those rows set "
                           "drop_unseen_eval_labels: true in a YAML config (ko-finetune: --set "
                           "drop_unseen_eval_labels=true)")
    keep = [i for i, y in enumerate(labels) if y in seen]
    logger.warning("%s: dropped %d row(s) whose label is not in train: %s", split, len(labels) - len(keep), unseen)
    if not keep:
        raise DatasetError(f"split {split} is empty after dropping labels never seen in train")
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _label_names(train_labels: Sequence, known: Sequence[str] | None) -> tuple[list[str], dict]:
    """(names, raw label -> id). Integer labels with known names keep their ids; else names are sorted."""
    values = set(train_labels)
    if known and all(isinstance(v, int) for v in values):
        bad = sorted(v for v in values if not 0 <= v < len(known))
        if bad:
            raise DatasetError(f"integer labels {bad} out of range for the {len(known)} label names {list(known)}")
        return list(known), {i: i for i in range(len(known))}
    if known and all(isinstance(v, str) for v in values):
        unknown = sorted(values - set(known))
        if unknown:
            raise DatasetError(f"labels {unknown} are not among the recipe's label names {list(known)}")
        return list(known), {name: i for i, name in enumerate(known)}
    ordered = sorted(values)  # all int or all str (see _unify_label_types)
    return [str(v) for v in ordered], {v: i for i, v in enumerate(ordered)}


def _unify_label_types(splits: dict[str, tuple[list[Texts], list]]) -> dict[str, tuple[list[Texts], list]]:
    """Labels all int or all str: anything else (mixed, non-integral floats) -> str, so ``0`` and ``"0"`` match."""
    kinds = {type(y) for _, labels in splits.values() for y in labels}
    if kinds not in ({int}, {str}):
        return {s: (texts, [str(y) for y in labels]) for s, (texts, labels) in splits.items()}
    return splits


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


def _subset(texts: list[Texts], ids: list[int], limit: int | None, seed: int) -> tuple[list[Texts], list[int]]:
    if limit is None or limit >= len(ids):
        return texts, ids
    idx = stratified_sample(ids, limit, seed, keep_each_class=True)
    return [texts[i] for i in idx], [ids[i] for i in idx]


def _check_train_subset(ids: list[int], limit: int | None, classes: int, names: Sequence[str]) -> None:
    """A ``max_train_samples`` subset needs 2 classes, as the whole train split does."""
    kept = sorted(set(ids))
    if limit is not None and len(kept) < 2:
        raise DatasetError(f"max_train_samples={limit} leaves a train split of a single class ({names[kept[0]]!r}); "
                           f"a classifier needs at least 2 classes: use max_train_samples={classes} or more (every "
                           f"one of the {classes} classes of the train split is then kept), or leave it unset")


def _carve_validation(texts: list[Texts], ids: list[int], fraction: float, seed: int):
    """(train, validation) with a seeded, label-stratified validation share; every class keeps >= 1 train row."""
    val_idx = stratified_sample(ids, max(1, round(fraction * len(ids))), seed, leave_one=True)
    if not val_idx:
        raise DatasetError(f"train split has too few rows ({len(ids)}) to carve a validation split")
    chosen = set(val_idx)
    train_idx = [i for i in range(len(ids)) if i not in chosen]
    pick = lambda idx: ([texts[i] for i in idx], [ids[i] for i in idx])  # noqa: E731
    return pick(train_idx), pick(val_idx)


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
    empty = next((split for split, table in tables.items() if not _num_rows(table)), None)
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
