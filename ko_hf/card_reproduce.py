"""The card's reproduce snippet: the same run written as Python (``finetune(options, args)`` or ``KOTrainer``).

Every literal is one that ``ast.literal_eval`` reads back, so the snippet rebuilds the run's arguments exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .card_escape import visible
from .non_default import plain
from .settings import ko_settings

if TYPE_CHECKING:
    from .card_data import KOModelCardData

__all__ = ["python_snippet"]


def _call(name: str, kwargs: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    lines = [f"{name}("]
    for key, value in kwargs.items():
        comment = f"  # {visible(comments[key])}" if comments and key in comments else ""
        lines.append(f"    {key}={plain(value)!r},{comment}")
    return "\n".join(lines) + "\n)"


def _ko_arguments_call(d: KOModelCardData) -> str:
    """``KOTrainingArguments(...)`` with every KO setting (as the run used it, else its default), the other fields
    the run's arguments class adds, and every non-default training argument."""
    ko = {**{setting.name: setting.default for setting in ko_settings()}, "collision": d.collision, **d.ko_arguments}
    comments = {}
    if ko.get("collision_targets") is None and d.targets:  # None: the preset the trainer resolved
        comments["collision_targets"] = "the head: " + ", ".join(t["name"] for t in d.targets)
    settings = {"output_dir": d.model_name or "ko-model", **ko, **d.non_default_hyperparameters}
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
