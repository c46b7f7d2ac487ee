"""Local paths as a model card shows them: no absolute path, no home folder, no user name; still runnable from the
directory the run started in whenever that is possible.

The rule (the README's "Model cards" section documents it), for a path of this machine:

1. a base-model folder that records its Hub id becomes that id;
2. a path inside the directory the run started in becomes relative to it (``data/train.csv``);
3. a path inside the home directory becomes ``~/...``;
4. any other path becomes relative with ``..`` (``../../data/imdb``), unless it lies in another user's home folder
   (``/home/bob/...``) or the folders it names outside the run's directory hold the user's name (a part, or a word
   of a part such as ``pytest-of-alice``): those are shown as ``path/to/<its name>`` (``path/to/local-path`` when
   the name is the user's), a placeholder to replace.

The names of folders inside the run's directory and the home directory are the user's own choice and stay.

Words that are not paths of this machine (``imdb``, ``bert-base-cased``, ``0.1``) stay as typed.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base_model import BaseModelOrigin

__all__ = ["PLACEHOLDER_PREFIX", "Machine", "portable_path", "portable_value", "portable_values", "portable_option",
           "portable_words", "portable_command", "portable_directory", "is_placeholder", "join_words", "scrub_text"]

#: What a path that cannot be shown (rule 5) starts with.
PLACEHOLDER_PREFIX = "path/to/"
#: Folders whose children are users' home folders (besides the parent of this user's home).
HOME_ROOTS = ("/home", "/Users")
_SHORT_OPTION = re.compile(r"^(-[A-Za-z])(.+)$")


@dataclass(frozen=True)
class Machine:
    """What a card must not show of this machine: the directory the run started in, the home directory and the
    user's names (the login name and the home folder's name)."""

    cwd: str
    home: str
    users: frozenset[str]

    @classmethod
    def here(cls, cwd: str | None = None, home: str | None = None, user: str | None = None) -> "Machine":
        home = os.path.normpath(home or os.path.expanduser("~"))
        names = {user} if user else {_login_name(), Path(home).name}
        return cls(os.path.normpath(cwd or os.getcwd()), home,
                   frozenset(n.lower() for n in names if n and n not in ("", "/")))

    def names_user(self, parts: list[str]) -> bool:
        """Whether a part of a path, or a word of one (split at anything but letters and digits), is a user name."""
        return any(word.lower() in self.users for part in parts for word in [part, *re.split(r"[^0-9A-Za-z]+", part)])

    def in_other_home(self, path: str) -> bool:
        """Whether ``path`` is (inside) a home folder other than this user's."""
        roots = {*HOME_ROOTS, os.path.dirname(self.home)} - {"/", ""}
        return any(_inside(path, root) and path != root for root in roots) and not _inside(path, self.home)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no user database entry, no environment variable
        return ""


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives, or one relative
        return False


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def _parts(relative: str) -> list[str]:
    return [p for p in Path(relative).parts if p not in ("", ".")]


def _absolute(value: str, machine: Machine) -> str | None:
    """The absolute path a word names, or None when the word is not a path of this machine."""
    if value == "~" or value.startswith("~/"):
        return os.path.normpath(machine.home + value[1:])
    if value.startswith("~"):
        expanded = os.path.expanduser(value)
        return os.path.normpath(expanded) if expanded != value else None
    if os.path.isabs(value):
        return os.path.normpath(value)
    joined = os.path.normpath(os.path.join(machine.cwd, value))
    if ".." in Path(value).parts or os.path.exists(joined):
        return joined
    return None


def placeholder(path: str, machine: Machine) -> str:
    """``path/to/<name>`` (``path/to/local-path`` when the name is a user's): a path the card cannot show."""
    name = Path(path).name
    return PLACEHOLDER_PREFIX + (name if name and not machine.names_user([name]) else "local-path")


def is_placeholder(word: str) -> bool:
    return word.startswith(PLACEHOLDER_PREFIX)


def _shown(path: str, machine: Machine) -> str:
    """Rules 2–5 for an absolute, normalised path."""
    in_home = _inside(path, machine.home)
    other_home = machine.in_other_home(path)
    if _inside(path, machine.cwd) and not other_home and (_inside(machine.cwd, machine.home) or not in_home):
        return os.path.relpath(path, machine.cwd)
    if in_home:
        relative = Path(os.path.relpath(path, machine.home)).as_posix()
        return "~" if relative == "." else "~/" + relative
    if not other_home:
        try:
            relative = Path(os.path.relpath(path, machine.cwd)).as_posix()
        except ValueError:  # another drive (Windows): no relative form
            relative = None
        if relative is not None and not machine.names_user([p for p in _parts(relative) if p != ".."]):
            return relative
    return placeholder(path, machine)


def portable_path(value: str, cwd: str | None = None, base: BaseModelOrigin | None = None,
                  home: str | None = None, machine: Machine | None = None) -> str:
    """``value`` as a card shows it (see the module's rule). ``cwd`` is the directory the run started in."""
    machine = machine or Machine.here(cwd, home)
    if base is not None and base.hub_id and base.path and value and _same_path(value, base.path):
        return base.hub_id
    path = _absolute(value, machine) if value else None
    return value if path is None else _shown(path, machine)


def portable_value(value: str, base: BaseModelOrigin | None = None, machine: Machine | None = None) -> str:
    """A value that may be a path or ``KEY=path`` (``imdb=/data/imdb``), its path portable."""
    machine = machine or Machine.here()
    if "=" in value and _absolute(value, machine) is None:
        key, path = value.split("=", 1)
        return f"{key}={portable_path(path, base=base, machine=machine)}"
    return portable_path(value, base=base, machine=machine)


def portable_values(values: Mapping[str, Any], machine: Machine, base: BaseModelOrigin | None = None) -> dict:
    """A mapping (options, hyperparameters) with :func:`portable_value` applied to every text in it."""
    def shown(value: Any) -> Any:
        if isinstance(value, str):
            return portable_value(value, base, machine)
        if isinstance(value, (list, tuple)):
            return type(value)(shown(v) for v in value)
        return {k: shown(v) for k, v in value.items()} if isinstance(value, Mapping) else value

    return {key: shown(value) for key, value in values.items()}


def portable_words(word: str, cwd: str | None = None, base: BaseModelOrigin | None = None,
                   home: str | None = None, machine: Machine | None = None) -> list[str]:
    """A command-line word made portable: a path, a ``KEY=path`` (``--dataset imdb=/data/imdb``), ``--opt=path``
    or ``-opath`` (the value attached to a short option). An option's value that is rewritten as a separate word
    when it is attached to a short option or becomes ``~/...`` (where the shell expands it)."""
    machine = machine or Machine.here(cwd, home)
    short = _SHORT_OPTION.match(word)
    if short and short.group(2)[:1] in ("/", "~", ".") and _absolute(word, machine) is None:
        shown = portable_path(short.group(2), base=base, machine=machine)
        return [word] if shown == short.group(2) else [short.group(1), shown]
    shown = portable_value(word, base, machine)
    if shown != word and word.startswith("-") and "=" in shown and shown.split("=", 1)[1].startswith("~"):
        return shown.split("=", 1)
    return [shown]


def portable_option(value: str, cwd: str, base: BaseModelOrigin | None = None, home: str | None = None) -> str:
    """A path-valued option or argument, ``KEY=path`` too (``--dataset imdb=/data/imdb``): its path portable."""
    return portable_value(value, base, Machine.here(cwd, home))


def portable_command(command: str, cwd: str | None = None, base: BaseModelOrigin | None = None,
                     home: str | None = None, machine: Machine | None = None) -> str | None:
    """The command with :func:`portable_words` applied to every word, so it holds no absolute local path or user
    name and still runs from ``cwd``; None when it cannot be parsed as shell words."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    machine = machine or Machine.here(cwd, home)
    return join_words(w for word in words for w in portable_words(word, base=base, machine=machine))


def join_words(words) -> str:
    """Shell words joined, quoted as needed (a leading ``~/`` outside the quotes, so the shell still expands it)."""
    return " ".join(_shell_word(word) for word in words)


def portable_directory(machine: Machine) -> str | None:
    """How the card names the directory the run started in: ``~`` or ``~/...`` inside the home directory, else its
    name; None when that name is a user's or the directory is another user's home folder."""
    cwd, home = machine.cwd, machine.home
    if _inside(cwd, home):
        relative = Path(os.path.relpath(cwd, home)).as_posix()
        return "~" if relative == "." else "~/" + relative
    name = Path(cwd).name
    return name if name and not machine.in_other_home(cwd) and not machine.names_user([name]) else None


def scrub_text(text: str, machine: Machine) -> str:
    """A last guard over a whole card: any absolute path of the run's directory or of the home directory left in
    ``text`` (outside a URL or a longer path) becomes relative to the run's directory / ``~``."""
    for folder, shown in sorted(((machine.cwd, "."), (machine.home, "~")), key=lambda pair: -len(pair[0])):
        if len(Path(folder).parts) < 2:  # "/" (or a drive): not a prefix worth rewriting
            continue
        text = re.sub(r"(?<![\w.~/-])" + re.escape(folder) + r"(?![\w.-])(/?)",
                      lambda m, shown=shown: "" if shown == "." and m.group(1) else shown + m.group(1), text)
    return text


def _shell_word(word: str) -> str:
    """``shlex.quote``, except that a leading ``~/`` stays outside the quotes (so the shell still expands it)."""
    if word.startswith("~/") and len(word) > 2:
        return "~/" + shlex.quote(word[2:]) if shlex.quote(word[2:]) != word[2:] else word
    return shlex.quote(word)
