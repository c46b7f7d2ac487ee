"""Which weights of a model collide: by default the classification head, as in the KO paper's text experiments."""

from __future__ import annotations

import re
from typing import Sequence

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

#: Presets accepted in ``targets`` besides parameter/module names and regexes.
TARGET_PRESETS = {
    "head": "the 2-D weights outside model.base_model (the paper's classification head)",
    "pooler": "the encoder's pooler weights (e.g. BERT's bert.pooler.dense.weight)",
}

_TWO_CLASS_WARNING = (
    "collision target %r has only 2 rows (a two-class head). With softmax cross-entropy the two rows of its "
    "gradient sum to zero (g_1 = -g_0): soft collision is then a pure rescale and an accepted hard collision "
    "replaces the gradient with a random direction of the same norm. Consider adding the pooler "
    "(targets=['head', 'pooler']) or another hidden layer of the head."
)


def _head_names(model: torch.nn.Module) -> list[str]:
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        raise ValueError(
            f"{type(model).__name__} has no head outside its base model: pass a model with a classification head "
            "(e.g. AutoModelForSequenceClassification) or name the collision targets explicitly"
        )
    base_ids = {id(p) for p in base.parameters()}
    return [n for n, p in model.named_parameters() if p.dim() == 2 and id(p) not in base_ids]


def _pooler_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if re.search(r"(^|\.)pooler\.(dense\.)?weight$", n)]


def _matches(pattern: str, name: str) -> bool:
    """Like ``optim_target_modules``: an exact parameter name, a module name (its ``.weight``), or a regex."""
    if name == pattern or name == f"{pattern}.weight":
        return True
    try:
        return re.fullmatch(pattern, name) is not None or re.fullmatch(pattern, name.rsplit(".", 1)[0]) is not None
    except re.error:
        return False


def _candidates(model: torch.nn.Module) -> str:
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    shown = ", ".join(names[-12:])
    return f"{shown} (last {min(12, len(names))} of {len(names)} 2-D weights)"


def collision_target_names(model: torch.nn.Module, targets: str | Sequence[str] | None = None) -> list[str]:
    """Parameter names of ``model`` that take part in collisions, in ``named_parameters`` order.

    ``targets=None`` (or ``"head"``) selects the 2-D weights outside ``model.base_model``: BERT's
    ``classifier.weight``; DistilBERT's ``pre_classifier.weight`` and ``classifier.weight``; RoBERTa's
    ``classifier.dense.weight`` and ``classifier.out_proj.weight``. Otherwise ``targets`` lists presets
    (``"head"``, ``"pooler"``), parameter or module names, or regexes (matched in full), in the style of
    ``TrainingArguments.optim_target_modules``. Matching nothing, or a parameter that is not at least 2-D, is a
    ``ValueError`` that lists the candidates.
    """
    if targets is None:
        targets = ["head"]
    elif isinstance(targets, str):
        targets = [targets]
    params = dict(model.named_parameters())
    selected: set[str] = set()
    for target in targets:
        if target == "head":
            found = _head_names(model)
        elif target == "pooler":
            found = _pooler_names(list(params))
        else:
            found = [n for n in params if _matches(target, n)]
        if not found:
            raise ValueError(
                f"collision target {target!r} matches no parameter of {type(model).__name__}; presets: "
                f"{', '.join(TARGET_PRESETS)}; candidates: {_candidates(model)}"
            )
        flat = [n for n in found if params[n].dim() < 2]
        if flat:
            raise ValueError(
                f"collision target {target!r} matches {flat[0]!r} of shape {tuple(params[flat[0]].shape)}, but "
                f"collisions need a weight with neurons as rows (2-D); candidates: {_candidates(model)}"
            )
        selected.update(found)
    names = [n for n in params if n in selected]
    for name in names:
        if params[name].shape[0] == 2:
            logger.warning(_TWO_CLASS_WARNING, name)
    return names
