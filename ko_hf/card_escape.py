"""User text (labels, names, paths, ids) made safe for a Markdown body: shown literally, on one line, inert.

The model card's template shows every string that comes from the user or the data through these.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["visible", "md_text", "md_code", "md_fence"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$!])")


def visible(text: Any) -> str:
    """``str(text)`` with control characters (newlines, tabs...) written as escapes: one line, nothing hidden."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def md_text(text: Any) -> str:
    """Plain text for a Markdown body: Markdown and HTML specials backslash-escaped, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", visible(text))


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def md_code(text: Any, *, cell: bool = False) -> str:
    """A code span showing ``text`` literally, whatever backticks it holds (``cell``: inside a table row)."""
    text = visible(text)
    if not text:
        return "*(empty)*"
    fence = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


def md_fence(content: str, language: str = "") -> str:
    """A fenced code block that ``content`` cannot close early (its fence is longer than any backtick run in it)."""
    fence = "`" * max(3, _longest_backtick_run(content) + 1)
    return f"{fence}{language}\n{content}\n{fence}"
