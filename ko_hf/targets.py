"""Which weights of a model collide: by default the classification head, as in the KO paper's text experiments.

Names are the model's own, through the wrappers users put around it: a PEFT model (``PeftModel``: its
``modules_to_save`` copy of the head is the one that trains, the frozen ``original_module`` is never a target),
``torch.compile`` (``_orig_mod.``), DDP / ``DataParallel`` / accelerate (``module.``), FSDP1 and activation
checkpointing wrappers. So BERT's head is ``classifier.weight`` whether the model is bare, compiled or under LoRA,
and metrics and model cards say that name.

``python -m ko_hf.targets MODEL`` lists every candidate of a saved model, heads first.
"""

from __future__ import annotations

import re
import sys
from typing import Iterator, NamedTuple, Sequence

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "TARGET_PRESETS",
    "Candidate",
    "candidate_targets",
    "collision_target_names",
    "collision_target_parameters",
    "unwrapped_named_parameters",
    "resolve_collision_targets",
    "unwrap_model",
]

#: Presets accepted in ``targets`` besides parameter/module names and regexes.
TARGET_PRESETS = {
    "head": "the 2-D weights outside model.base_model (the paper's classification head)",
    "pooler": "the encoder's pooler weights (e.g. BERT's bert.pooler.dense.weight)",
}

#: How many candidates a "matches nothing" error shows (the head-like ones first).
SHOWN_CANDIDATES = 12
LIST_HINT = "list them all with ko_hf.targets.candidate_targets(model) or `python -m ko_hf.targets MODEL_PATH`"

_SKIP, _DROP = "skip", "drop"  # a wrapper hop left out of names; an inactive copy that is never a candidate
_HEAD_WORDS = re.compile(r"(^|\.)(classifier|pre_classifier|score|head|heads|out_proj|pooler|lm_head|qa_outputs)(\.|$)")


# ------------------------------------------------------------------ names through wrappers


def _peft_classes() -> tuple[type, ...] | None:
    """PEFT's wrapper classes, only when peft is already imported (a PEFT model implies it is)."""
    if "peft" not in sys.modules:
        return None
    try:
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError:  # pragma: no cover - an incompatible peft
        return None
    return PeftModel, BaseTuner, BaseTunerLayer, ModulesToSaveWrapper


def _child_roles(module: torch.nn.Module) -> dict[str, str]:
    """For wrappers: which children are a hop left out of names (skip) or an inactive copy (drop)."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    if type(module).__name__ == "OptimizedModule" and hasattr(module, "_orig_mod"):  # torch.compile
        return {"_orig_mod": _SKIP}
    if isinstance(module, (DistributedDataParallel, DataParallel)):
        return {"module": _SKIP}
    if hasattr(module, "_fsdp_wrapped_module"):  # FSDP1 (FullyShardedDataParallel)
        return {"_fsdp_wrapped_module": _SKIP}
    if hasattr(module, "_checkpoint_wrapped_module"):  # torch's activation checkpoint wrapper
        return {"_checkpoint_wrapped_module": _SKIP}
    peft = _peft_classes()
    if peft is not None:
        peft_model, tuner, tuner_layer, modules_to_save = peft
        if isinstance(module, peft_model):
            return {"base_model": _SKIP}
        if isinstance(module, tuner):
            return {"model": _SKIP}
        if isinstance(module, modules_to_save):
            if not module.active_adapters:  # adapters disabled: the original module is what runs
                return {"modules_to_save": _DROP}
            return {"original_module": _DROP, "modules_to_save": _SKIP}
        if isinstance(module, tuner_layer):
            return {"base_layer": _SKIP}
    return {}


def _walk(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    seen: set[int] = set()

    def visit(module: torch.nn.Module, prefix: str, active: set[str] | None) -> Iterator[tuple[str, torch.nn.Parameter]]:
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                yield prefix + name, param
        roles = _child_roles(module)
        for name, child in module.named_children():
            if active is not None:  # the ModuleDict of a modules_to_save wrapper: only the active adapter's copy
                if name not in active:
                    continue
                yield from visit(child, prefix, None)
                continue
            role = roles.get(name)
            if role == _DROP:
                continue
            adapters = set(module.active_adapters) if role == _SKIP and name == "modules_to_save" else None
            yield from visit(child, prefix if role == _SKIP else f"{prefix}{name}.", adapters)

    yield from visit(model, "", None)


def unwrapped_named_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``model.named_parameters()`` with wrapper hops left out of the names and PEFT's inactive copies left out.

    Under PEFT, ``base_model.model.classifier.modules_to_save.default.weight`` is ``classifier.weight`` (the copy
    that trains), ``...classifier.original_module.weight`` is absent, and a LoRA layer's frozen
    ``query.base_layer.weight`` is ``query.weight`` (its ``lora_A``/``lora_B`` keep their names). The parameters
    are the model's own objects, in ``named_parameters`` order.
    """
    return list(_walk(model))


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside torch.compile / DDP / PEFT wrappers (for a PEFT model, its transformers model)."""
    while True:
        skips = [name for name, role in _child_roles(model).items() if role == _SKIP]
        if len(skips) != 1 or not hasattr(model, skips[0]) or skips[0] in ("modules_to_save", "base_layer"):
            return model
        inner = getattr(model, skips[0])
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


# ------------------------------------------------------------------ presets


def _adapter_ids(model: torch.nn.Module) -> set[int]:
    """The parameters PEFT adds to a layer (LoRA's ``lora_A``/``lora_B``, ...): low-rank factors of an update, not
    neurons of the layer, so never a preset's target."""
    peft = _peft_classes()
    if peft is None:
        return set()
    ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, peft[2]) and hasattr(module, "base_layer"):
            own = {id(p) for p in module.base_layer.parameters()}
            ids.update(id(p) for p in module.parameters() if id(p) not in own)
    return ids


def _head_ids(model: torch.nn.Module) -> set[int]:
    inner = unwrap_model(model)
    base = getattr(inner, "base_model", None)
    if base is None or base is inner:
        raise ValueError(
            f"{type(inner).__name__} has no head outside its base model: pass a model with a classification head "
            "(e.g. AutoModelForSequenceClassification) or name the collision targets explicitly"
        )
    excluded = {id(p) for p in base.parameters()} | _adapter_ids(inner)
    return {id(p) for p in inner.parameters() if p.dim() == 2 and id(p) not in excluded}


def _is_pooler(name: str) -> bool:
    return re.search(r"(^|\.)pooler\.(dense\.)?weight$", name) is not None


def _match_kind(pattern: str, name: str) -> str | None:
    """Like ``optim_target_modules``: ``"exact"`` for the parameter's own name, ``"pattern"`` for its module's name
    (``classifier`` -> ``classifier.weight``) or a regex matched in full against either; ``None`` otherwise."""
    if name == pattern:
        return "exact"
    if name == f"{pattern}.weight":
        return "pattern"
    try:
        module = name.rsplit(".", 1)[0]
        if re.fullmatch(pattern, name) is not None or re.fullmatch(pattern, module) is not None:
            return "pattern"
    except re.error:
        return None
    return None


# ------------------------------------------------------------------ candidates


class Candidate(NamedTuple):
    """A weight that could collide: its name, shape, whether it trains, and whether it looks like a head."""

    name: str
    shape: tuple[int, ...]
    trainable: bool
    head: bool

    def describe(self) -> str:
        shape = "×".join(str(s) for s in self.shape)
        return f"{self.name} ({shape}{'' if self.trainable else ', frozen'})"


def candidate_targets(model: torch.nn.Module) -> list[Candidate]:
    """Every weight of ``model`` that can collide (at least 2-D), the head-like ones first.

    Head-like: the ``head`` preset's weights, then the pooler, then names with head words (classifier, score,
    head, out_proj, ...); after them every other weight, in model order. Names as :func:`unwrapped_named_parameters`.
    """
    try:
        head = _head_ids(model)
    except ValueError:
        head = set()
    named = [(n, p) for n, p in unwrapped_named_parameters(model) if p.dim() >= 2]

    def rank(item: tuple[int, tuple[str, torch.nn.Parameter]]) -> tuple[int, int]:
        index, (name, param) = item
        if id(param) in head:
            return 0, index
        if _is_pooler(name):
            return 1, index
        return (2 if _HEAD_WORDS.search(name) else 3), index

    ordered = sorted(enumerate(named), key=rank)
    return [Candidate(n, tuple(p.shape), p.requires_grad, rank((i, (n, p)))[0] < 3) for i, (n, p) in ordered]


def _candidates(model: torch.nn.Module) -> str:
    candidates = candidate_targets(model)
    shown = ", ".join(c.describe() for c in candidates[:SHOWN_CANDIDATES])
    more = len(candidates) - SHOWN_CANDIDATES
    rest = f" and {more} more; {LIST_HINT}" if more > 0 else ""
    return f"{shown}{rest}"


# ------------------------------------------------------------------ selection


def collision_target_parameters(
    model: torch.nn.Module, targets: str | Sequence[str] | None = None
) -> dict[str, torch.nn.Parameter]:
    """``{name: parameter}`` of the weights that collide, in model order; see :func:`collision_target_names`."""
    if targets is None:
        targets = ["head"]
    elif isinstance(targets, str):
        targets = [targets]
    named = unwrapped_named_parameters(model)
    real_names = {id(p): n for n, p in model.named_parameters()}
    selected: set[int] = set()
    for target in targets:
        if target == "head":
            head = _head_ids(model)
            found = [(n, p) for n, p in named if id(p) in head]
        elif target == "pooler":
            found = [(n, p) for n, p in named if _is_pooler(n)]
        else:  # the plain name, or the full name through the wrappers (e.g. PEFT's modules_to_save path)
            kinds = [(n, p, _match_kind(target, n) or _match_kind(target, real_names.get(id(p), n))) for n, p in named]
            # a module name or regex selects the weights that can collide; a 1-D parameter named exactly is an error
            found = [(n, p) for n, p, kind in kinds if kind == "exact" or (kind == "pattern" and p.dim() >= 2)]
            if not found:
                found = [(n, p) for n, p, kind in kinds if kind is not None]
        if not found:
            raise ValueError(
                f"collision target {target!r} matches no parameter of {type(unwrap_model(model)).__name__}; presets: "
                f"{', '.join(TARGET_PRESETS)}; candidates (heads first): {_candidates(model)}"
            )
        flat = [(n, p) for n, p in found if p.dim() < 2]
        if flat:
            name, param = flat[0]
            raise ValueError(
                f"collision target {target!r} matches {name!r} of shape {tuple(param.shape)}, but collisions need a "
                f"weight with neurons as rows (2-D); candidates (heads first): {_candidates(model)}"
            )
        selected.update(id(p) for _, p in found)
    return {n: p for n, p in named if id(p) in selected}


def collision_target_names(model: torch.nn.Module, targets: str | Sequence[str] | None = None) -> list[str]:
    """Parameter names of ``model`` that take part in collisions, in ``named_parameters`` order.

    ``targets=None`` (or ``"head"``) selects the 2-D weights outside ``model.base_model``: BERT's
    ``classifier.weight``; DistilBERT's ``pre_classifier.weight`` and ``classifier.weight``; RoBERTa's
    ``classifier.dense.weight`` and ``classifier.out_proj.weight``. Otherwise ``targets`` lists presets
    (``"head"``, ``"pooler"``), parameter or module names, or regexes (matched in full), in the style of
    ``TrainingArguments.optim_target_modules``. Matching nothing, or a parameter that is not at least 2-D, is a
    ``ValueError`` that lists the candidates, head-like ones first.

    Through wrappers (PEFT, ``torch.compile``, DDP), names are the wrapped model's own (see
    :func:`unwrapped_named_parameters`); a target may also be given by its full wrapped name.
    """
    return list(collision_target_parameters(model, targets))


def is_peft_model(model: torch.nn.Module) -> bool:
    peft = _peft_classes()
    return peft is not None and any(isinstance(module, peft[0]) for module in model.modules())


def _frozen_hint(model: torch.nn.Module) -> str:
    if is_peft_model(model):
        return ("; under PEFT, train them with LoraConfig(modules_to_save=[...]) naming their modules "
                "(ko_hf.lora.apply_lora and ko-finetune --lora do this for the collision targets)")
    return "; unfreeze them (requires_grad=True) or leave them out of the targets"


def resolve_collision_targets(model: torch.nn.Module,
                              targets: str | Sequence[str] | None = None) -> dict[str, torch.nn.Parameter]:
    """The weights that collide in a training run: :func:`collision_target_parameters`, trainable.

    A frozen weight of the ``head`` preset (the default) is left out with one warning: PEFT's default
    classification config trains only the modules it lists in ``modules_to_save`` (``classifier``, ``score``), so
    DeBERTa's ``pooler.dense`` or ModernBERT's ``head.dense`` stay frozen while the classifier trains. A frozen
    weight asked for otherwise (the ``pooler`` preset, a name or regex), or no trainable target at all (T5's and
    BART's whole ``classification_head`` under PEFT's default), is a ``ValueError`` naming them and how to train
    them.
    """
    specs = ["head"] if targets is None else [targets] if isinstance(targets, str) else list(targets)
    chosen = collision_target_parameters(model, specs)
    frozen = [name for name, param in chosen.items() if not param.requires_grad]
    if not frozen:
        return chosen
    asked = {name for spec in specs if spec != "head" for name in collision_target_parameters(model, spec)}
    explicit = [name for name in frozen if name in asked]
    trainable = {name: param for name, param in chosen.items() if param.requires_grad}
    if explicit or not trainable:
        what = explicit or frozen
        raise ValueError(f"collision targets {what} are frozen (requires_grad=False), so nothing of them would "
                         f"collide{_frozen_hint(model)}")
    logger.warning("collision targets %s are frozen (requires_grad=False) and are left out of the collision; %s "
                   "collide%s", frozen, list(trainable), _frozen_hint(model))
    return trainable


def warn_two_class_targets(params: dict[str, torch.Tensor], collision: str = "hard", form: str = "bounded") -> None:
    """Log the two-class warning for every target with exactly 2 rows (ko-hf 0.2's function: the KO optimizer
    now warns by itself when it is built, :mod:`ko_hf.guards`)."""
    from .guards import inert_target_warning

    for name, param in params.items():
        if param.shape[0] == 2:
            logger.warning(inert_target_warning(name, tuple(param.shape), collision, form))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ko_hf.targets MODEL``: every candidate collision target of a saved model, heads first."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ko_hf.targets", description=main.__doc__)
    parser.add_argument("model", help="a saved model folder or Hub id (loaded with AutoModelForSequenceClassification)")
    parser.add_argument("--num-labels", type=int, default=None, help="labels of a new head (default: the config's)")
    options = parser.parse_args(argv)
    from transformers import AutoModelForSequenceClassification

    extra = {} if options.num_labels is None else {"num_labels": options.num_labels}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(options.model, **extra)
    except Exception as err:  # noqa: BLE001 - one clear line
        print(f"Error: cannot load {options.model!r} for sequence classification: {err}".splitlines()[0],
              file=sys.stderr)
        return 2
    candidates = candidate_targets(model)
    width = max(len(c.name) for c in candidates)
    print(f"{'name':<{width}}  {'shape':>11}  kind")
    for c in candidates:
        kind = ("head" if c.head else "") + ("" if c.trainable else " frozen")
        print(f"{c.name:<{width}}  {'×'.join(map(str, c.shape)):>11}  {kind.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
