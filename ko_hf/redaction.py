"""Secrets are never echoed: one place that decides what a secret is and how it is hidden.

A value is hidden when its setting's name says it is a secret (``hub_token``, ``wandb_api_key``, ``password``:
any ``_``/``-``/``.``-separated part ``token``, ``secret``, ``password``/``passwd``, ``credential(s)``, or ``api`` followed
by ``key``), and any text that looks like a Hugging Face access token (``hf_`` and at least 8 more letters or
digits) is hidden wherever it appears. Everything that echoes values a user gave — the model card's reproduce
command, the run folder's lock and its messages, logs — goes through these functions.

Pure Python (no torch): the command line uses it before anything heavy is imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact_text", "redact_value", "redact_mapping", "redact_argv"]

#: What a hidden value reads as.
REDACTED = "<redacted>"

_SECRET_PARTS = {"token", "secret", "secrets", "password", "passwd", "credential", "credentials", "apikey"}
_HF_TOKEN = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{8,}")


def is_secret_key(key: str) -> bool:
    """Whether a setting called ``key`` holds a secret: ``hub_token``, ``--hub-token``, ``WANDB_API_KEY``, ...

    Only whole name parts count, so ``average_tokens_across_devices`` or ``max_length`` are not secrets.
    """
    parts = [part for part in re.split(r"[_\-.\s]+", str(key).strip("-").lower()) if part]
    if any(part in _SECRET_PARTS for part in parts):
        return True
    return any(a == "api" and b == "key" for a, b in zip(parts, parts[1:]))


def redact_text(text: str) -> str:
    """``text`` with every Hugging Face access token (``hf_...``) replaced by :data:`REDACTED`."""
    return _HF_TOKEN.sub(REDACTED, text)


def redact_value(key: str, value: Any) -> Any:
    """``value`` as it may be shown for the setting ``key``: hidden when the key names a secret and the value is set
    (a non-empty text, or anything but ``None``/``False``), token-looking text hidden inside strings, containers
    walked."""
    if is_secret_key(key) and value not in (None, False, "", "None"):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value("", item) for item in value)
    return value


def redact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with every secret hidden (see :func:`redact_value`), nested mappings included."""
    return {key: redact_value(str(key), value) for key, value in mapping.items()}


def _redact_assignment(text: str) -> str:
    """``KEY=VALUE`` (``--set`` pairs, ``--flag=value``) with the value hidden when the key names a secret; the
    value of ``--flag=KEY=VALUE`` (``--set=hub_token=...``) is read as an assignment in turn."""
    key, sep, value = text.partition("=")
    if sep and is_secret_key(key):
        return f"{key}={REDACTED}"
    if sep and key.startswith("-") and "=" in value:
        return f"{key}={_redact_assignment(value)}"
    return redact_text(text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with its secrets hidden: ``--hub-token VALUE``, ``--hub-token=VALUE``, ``--set
    hub_token=VALUE`` and any ``hf_...`` token text anywhere."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        word = str(word)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if word.startswith("-") and "=" not in word and is_secret_key(word):
            hide_next = True
            out.append(word)
            continue
        out.append(_redact_assignment(word))
    return out
