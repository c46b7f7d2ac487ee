"""What every ``ko-finetune`` command shares: the one-line ``Error:``, quiet libraries, tidy ``--help``.

Imports only typer (and, inside functions, what they configure), so ``--help`` and input mistakes stay instant.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


def fail(message: Any) -> typer.Exit:
    """Print ``Error: message`` (one line) to stderr; return the exit-code-2 exception to raise."""
    typer.echo(f"Error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(code=2)


def say(message: str) -> None:
    """A progress line, on stderr (stdout keeps the results)."""
    typer.echo(message, err=True)


class _NoHelpType:
    """``-h/--help`` is a flag: typer's help would show it as ``-h <bool>``."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Command(_NoHelpType, TyperCommand):
    pass


class Group(_NoHelpType, TyperGroup):
    pass


#: ``metavar=FLAG``: a boolean flag shows no value type (typer would print ``<bool>``).
FLAG = ""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _StripAnsi(logging.Filter):
    """transformers colours its weight-loading report with ANSI codes even when stderr is a file or a pipe."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "\x1b[" in record.msg:
            record.msg = _ANSI.sub("", record.msg)
        return True


def quiet_libraries(transformers_level: str = "warning") -> None:
    """Tokenization bars off; transformers at ``transformers_level``; no raw colour codes in a log file."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()  # the tokenization bars; training keeps its progress bar
    getattr(hf_logging, f"set_verbosity_{transformers_level}")()
    if transformers_level == "error":
        hf_logging.disable_progress_bar()  # "Loading weights" bars
    if not sys.stderr.isatty():
        for handler in logging.getLogger("transformers").handlers:
            if not any(isinstance(f, _StripAnsi) for f in handler.filters):
                handler.addFilter(_StripAnsi())


def recipe_names() -> str:
    """The dataset recipes, as ``--dataset``'s help and errors name them (:mod:`ko_hf.data.recipes` is light; called
    when the app is built, so importing the CLI still loads no ko_hf module)."""
    from ko_hf.data.recipes import DATASET_RECIPES

    return ", ".join(DATASET_RECIPES)
