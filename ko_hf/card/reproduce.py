"""How the card says to reproduce a run: the command that trains it from scratch, and the same run written as
Python (``finetune(options, args)`` or ``KOTrainer``).

The command is the one typed, with its secrets redacted (``ko_hf.redaction``), its resume option dropped (a fresh
folder has no checkpoint to resume from) and its paths made portable (:mod:`ko_hf.card.portable`). Every literal of the
snippet is one that ``ast.literal_eval`` reads back, so it rebuilds the run's arguments exactly; secrets in it are
redacted too.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .escape import visible
from .non_default import plain
from .portable import Machine, is_placeholder, join_words, portable_words
from ..redaction import redact_argv, redact_value
from ..settings import ko_settings

if TYPE_CHECKING:
    from .base_model import BaseModelOrigin
    from .data import KOModelCardData

__all__ = ["python_snippet", "scratch_command", "RESUME_OPTION", "RESUME_KEY"]

#: The command line's resume option, and the setting it sets (``--set resume_from_checkpoint=...``, YAML).
RESUME_OPTION = "--resume-from-checkpoint"
RESUME_KEY = "resume_from_checkpoint"


def _is_resume_setting(text: str) -> bool:
    return text.split("=", 1)[0].strip().replace("-", "_") == RESUME_KEY


def split_set_values(words: Iterable[str]) -> list[str]:
    """``--set=KEY=VALUE`` written as the equivalent ``--set KEY=VALUE`` (so that ``KEY`` is read as a setting)."""
    return [w for word in words for w in (["--set", word[len("--set="):]] if word.startswith("--set=") else [word])]


def without_resume(words: Iterable[str]) -> list[str]:
    """A command line without its resume option (``--resume-from-checkpoint X``, ``--resume-from-checkpoint=X``,
    ``--set resume_from_checkpoint=X``)."""
    out: list[str] = []
    words = iter(words)
    for word in words:
        if word == RESUME_OPTION:
            next(words, None)
        elif word == "--set":
            value = next(words, None)
            if value is not None and not _is_resume_setting(value):
                out += [word, value]
        elif not word.startswith(RESUME_OPTION + "="):
            out.append(word)
    return out


def scratch_command(command: str, machine: Machine, base: BaseModelOrigin | None = None) -> tuple[str, bool] | None:
    """(the command that trains the run from scratch, whether a path in it is a ``path/to/...`` placeholder):
    ``command`` with its secrets redacted, its resume option dropped and every path portable; None when it cannot be
    parsed as shell words."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    words = without_resume(redact_argv(split_set_values(words)))
    words = [w for word in words for w in portable_words(word, base=base, machine=machine)]
    return join_words(words), any(is_placeholder(w.split("=", 1)[-1]) for w in words)


def _call(name: str, kwargs: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    lines = [f"{name}("]
    for key, value in kwargs.items():
        comment = f"  # {visible(comments[key])}" if comments and key in comments else ""
        lines.append(f"    {key}={redact_value(key, plain(value))!r},{comment}")
    return "\n".join(lines) + "\n)"


def _ko_arguments_call(d: KOModelCardData) -> str:
    """``KOTrainingArguments(...)`` with every KO setting (as the run used it, else its default), the other fields
    the run's arguments class adds, and every non-default training argument."""
    ko = {**{setting.name: setting.default for setting in ko_settings()}, "collision": d.collision, **d.ko_arguments}
    comments = {}
    if ko.get("collision_targets") is None and d.targets:  # None: the preset the trainer resolved
        comments["collision_targets"] = "the head: " + ", ".join(t["name"] for t in d.targets)
    settings = {"output_dir": d.output_dir or d.model_name or "ko-model", **ko, **d.non_default_hyperparameters}
    return _call("KOTrainingArguments", settings, comments)


def python_snippet(d: KOModelCardData, num_labels: int | None = None, options: Mapping[str, Any] | None = None) -> str:
    """A Python run with the same settings: ``finetune(options, args)`` when the run came from ``finetune`` (its
    non-default options known), else the ``KOTrainer`` code, with the PEFT adapter config when there is one."""
    args_call = _ko_arguments_call(d)
    if options is not None:
        return ("from ko_hf import KOTrainingArguments\n"
                "from ko_hf.finetune import FinetuneOptions, finetune\n\n"
                f"options = {_call('FinetuneOptions', options)}\n"
                f"args = {args_call}\n"
                "finetune(options, args)")
    base = d.base_model or d.base_model_path or "<base model>"
    labels = f", num_labels={num_labels}" if num_labels else ""
    imports = "from transformers import AutoModelForSequenceClassification\n"
    adapter = ""
    if d.adapter:
        imports += f"from peft import {d.adapter['config_class']}, get_peft_model\n"
        adapter = f"model = get_peft_model(model, {_call(d.adapter['config_class'], d.adapter['settings'])})\n"
    return (
        f"{imports}from ko_hf import KOTrainer, KOTrainingArguments\n\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({plain(base)!r}{labels})\n"
        f"{adapter}"
        f"args = {args_call}\n"
        "trainer = KOTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,\n"
        "                    compute_metrics=compute_metrics)\n"
        "trainer.train()"
    )
