"""User text (labels, names, paths, ids) made safe for a Markdown body: shown literally, on one line, inert.

The model card's template shows every string that comes from the user or the data through these, and its
metadata holds those strings through :func:`visible`: no character of the text is invisible or reorders what
follows it. Control characters (newlines, tabs...), Unicode's format characters (category ``Cf``: the bidi
controls U+202A–U+202E and U+2066–U+2069, the zero-width U+200B–U+200F and U+2060, the byte-order mark...),
line/paragraph separators and lone surrogates are written as their escapes (``\\u202e``). Text that looks like a
Hugging Face access token is redacted on the way (``ko_hf.redaction``): whatever a card shows passes through here.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from ..redaction import redact_text

__all__ = ["visible", "visible_lines", "md_text", "md_code", "md_fence", "is_hidden_character"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$!])")
#: Unicode categories whose characters show nothing themselves: controls, format characters (bidi, zero-width),
#: line and paragraph separators, lone surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def is_hidden_character(char: str) -> bool:
    """Whether ``char`` shows nothing (or changes how the text around it shows): a control, format, bidi or
    zero-width character, a line/paragraph separator or a lone surrogate."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def _escape_hidden(text: str, keep: str = "") -> str:
    return "".join(_escape(c) if c not in keep and is_hidden_character(c) else c for c in text)


def visible(text: Any) -> str:
    """``str(text)`` with every hidden character (see the module) written as its escape and access tokens
    redacted: one line, nothing hidden, no bidi reordering."""
    return _escape_hidden(redact_text(str(text)))


def visible_lines(text: Any) -> str:
    """:func:`visible`, but newlines and tabs stay: for code blocks (commands, snippets, citations)."""
    return _escape_hidden(redact_text(str(text)), keep="\n\t")


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
    """A fenced code block that ``content`` cannot close early (its fence is longer than any backtick run in it),
    its hidden characters visible (:func:`visible_lines`)."""
    content = visible_lines(content)
    fence = "`" * max(3, _longest_backtick_run(content) + 1)
    return f"{fence}{language}\n{content}\n{fence}"
