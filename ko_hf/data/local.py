"""Local data: the layouts a path may have (aclImdb, the Snips benchmark JSON, ``seq.in``, data files, a folder or
glob pattern of them), :func:`detect_local_format`, and the data files shipped in ``ko_hf/resources``."""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import datasets
from transformers.utils import logging

from .errors import DatasetError
from .recipes import IMDB_CITATION, SNIPS_CITATION
from .splits import _split_by_column, _split_from_path, canonical_split
from .tabular import SUPPORTED_SUFFIXES, Table, _read_table, concat, read_text_robust

logger = logging.get_logger(__name__)

__all__ = ["LOCAL_FORMATS", "detect_local_format"]

LOCAL_FORMATS = ("aclImdb", "snips-json", "seq.in", "tabular")


@dataclass
class _Source:
    """Raw splits (any columns) + what is known about them."""

    splits: dict[str, Table | datasets.Dataset]
    data_format: str
    location: str
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> ClassLabel names


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
    return {split: concat([_read_table(f) for f in fs]) for split, fs in by_split.items()}


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
    if not path.exists():  # a glob pattern (see load._resolve)
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
