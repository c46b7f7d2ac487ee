"""The text and label columns of a dataset and its labels: which columns (given, the recipe's or detected), labels
normalised, rows without one dropped, labels never seen in train, label names and ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from transformers.utils import logging

from .errors import DatasetError
from .recipes import DatasetRecipe
from .tabular import Table

logger = logging.get_logger(__name__)

__all__ = ["LABEL_COLUMN_CANDIDATES", "TEXT_COLUMN_CANDIDATES"]

TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "review", "utterance", "query", "document", "question")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "category", "intent", "class", "target", "sentiment", "topic")


#: One example's text: ``(text,)``, or ``(text, text_pair)`` for a sentence pair.
Texts = tuple[str, ...]


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
