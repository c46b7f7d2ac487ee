"""A run's command line and path options made portable: no absolute local path, still runnable where it ran.

The rule (the README's "Model cards" section documents it): a base-model folder that records its Hub id becomes
that id; an absolute path becomes relative to the directory the run started in when it lies inside it, else
``~/...`` inside the home directory (no user name shown), else relative with ``..``. Relative paths and everything
else stay as typed.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base_model import BaseModelOrigin

__all__ = ["portable_path", "portable_command", "portable_option"]


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def portable_path(value: str, cwd: str, base: BaseModelOrigin | None = None, home: str | None = None) -> str:
    """``value`` as a reproduce command shows it: see the module's rule. ``cwd`` is the directory the run
    started in."""
    if base is not None and base.hub_id and base.path and value and _same_path(value, base.path):
        return base.hub_id
    if not os.path.isabs(value):
        return value
    path = os.path.normpath(value)
    home = os.path.normpath(home or os.path.expanduser("~"))
    if _inside(path, os.path.normpath(cwd)):
        return os.path.relpath(path, cwd)
    if os.path.isabs(home) and home != os.path.dirname(home) and _inside(path, home):
        return "~" if path == home else "~/" + Path(os.path.relpath(path, home)).as_posix()
    try:
        return os.path.relpath(path, cwd)
    except ValueError:  # another drive (Windows): no relative form
        return Path(path).name


def portable_option(value: str, cwd: str, base: BaseModelOrigin | None = None, home: str | None = None) -> str:
    """A path-valued option or argument, ``KEY=path`` too (``--dataset imdb=/data/imdb``): its path portable."""
    if "=" in value and not os.path.isabs(value) and not os.path.exists(value):
        key, path = value.split("=", 1)
        return f"{key}={portable_path(path, cwd, base, home)}"
    return portable_path(value, cwd, base, home)


def portable_command(command: str, cwd: str, base: BaseModelOrigin | None = None,
                     home: str | None = None) -> str | None:
    """The reproduce command with :func:`portable_option` applied to every word, so it holds no absolute local
    path and still runs from ``cwd``; None when it cannot be parsed as shell words."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return " ".join(_shell_word(portable_option(word, cwd, base, home)) for word in words)


def _shell_word(word: str) -> str:
    """``shlex.quote``, except that a leading ``~/`` stays outside the quotes (so the shell still expands it)."""
    if word.startswith("~/") and len(word) > 2:
        return "~/" + shlex.quote(word[2:]) if shlex.quote(word[2:]) != word[2:] else word
    return shlex.quote(word)
