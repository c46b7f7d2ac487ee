"""The one Markdown table writer (model card, ``compare`` report, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

_RULES = {"left": "---", "right": "---:", "center": ":---:"}


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: Sequence[str] | str = "left") -> str:
    """A GitHub-flavoured Markdown table of cells that are already Markdown (escape user text before).

    ``align`` is ``"left"``, ``"right"`` or ``"center"`` for every column, or one of those per column.
    """
    header = [str(h) for h in header]
    aligns = [align] * len(header) if isinstance(align, str) else list(align)
    if len(aligns) != len(header):
        raise ValueError(f"align has {len(aligns)} entries for {len(header)} columns")
    unknown = sorted({a for a in aligns if a not in _RULES})
    if unknown:
        raise ValueError(f"align {unknown} is invalid; valid: {', '.join(_RULES)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(_RULES[a] for a in aligns) + "|"]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"a row has {len(cells)} cells for {len(header)} columns: {cells!r}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
