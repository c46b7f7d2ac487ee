"""Splits: their names and aliases, the ``split`` column of a table, :func:`stratified_sample`, the seeded subsets
and the validation split carved from train."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .labels import Texts
from .tabular import Table

__all__ = ["SPLITS", "SPLIT_ALIASES", "canonical_split", "stratified_sample"]

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
