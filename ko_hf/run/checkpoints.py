"""Which checkpoint a run resumes from, and whether it is whole.

transformers writes a checkpoint in place (model, then ``optimizer.pt`` and ``scheduler.pt``, then the RNG state,
``trainer_state.json`` last), so a run killed while saving leaves a ``checkpoint-<step>`` folder that is missing
files or holds truncated ones. And transformers resumes silently from a checkpoint without optimizer, scheduler or
RNG state, with a fresh optimizer, LR schedule, collision step counter or random draws. Here:

* :func:`inspect_checkpoint` reads every file of a checkpoint far enough to see that it is whole (safetensors
  headers, JSON; the torch files a resume loads -- optimizer, scheduler, RNG state, weights -- are loaded as resume
  loads them, ``torch.load(weights_only=True)``, so a file holding other pickled objects is found here, not at the
  resume) and lists what is missing;
* :func:`find_resume_checkpoint` picks the newest *complete* checkpoint of an output folder, skipping (with a
  warning naming each) the newer ones that are not;
* :func:`verify_checkpoint` checks a checkpoint named explicitly: a truncated file is an error, and so is missing
  optimizer/scheduler/trainer state unless the caller allows an incomplete resume.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging

from .preflight import FinetuneError

logger = logging.get_logger(__name__)

__all__ = ["CheckpointError", "CheckpointReport", "RESTARTED", "RNG_STATE_NAME", "STATE_FILES",
           "checkpoint_param_groups", "find_resume_checkpoint", "inspect_checkpoint", "restarted_parts",
           "verify_checkpoint"]

#: transformers' RNG state of a single-process run; a run of N processes writes ``rng_state_<rank>.pth`` instead.
RNG_STATE_NAME = "rng_state.pth"
_RNG_STATE = re.compile(r"^rng_state(_\d+)?\.pth$")
#: What a checkpoint needs besides the model weights to resume exactly where it stopped.
STATE_FILES = (OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME, RNG_STATE_NAME)
#: What starts afresh when a state file is missing.
RESTARTED = {
    OPTIMIZER_NAME: "the optimizer moments and the collision step counter",
    SCHEDULER_NAME: "the LR schedule",
    TRAINER_STATE_NAME: "the step count (training starts again at step 0 from the checkpoint's weights)",
    RNG_STATE_NAME: "the random number generators (data order, dropout, collision draws)",
}
#: Torch files a resume loads with ``torch.load(weights_only=True)``: a pickle of anything else is refused there.
_LOADED_BY_RESUME = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth|"
                               r"pytorch_model(-\d+-of-\d+)?\.bin|adapter_model\.bin)$")
_WEIGHTS = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, "adapter_model.safetensors",
            "adapter_model.bin")
#: The option that allows resuming from a checkpoint without (some of) :data:`STATE_FILES`.
ALLOW_OPTION = "resume_incomplete_checkpoint"


class CheckpointError(FinetuneError):
    """A checkpoint that cannot be resumed from (truncated, incomplete, absent)."""


@dataclass
class CheckpointReport:
    """What :func:`inspect_checkpoint` found: ``missing`` files and ``broken`` ones (``"name (why)"``)."""

    path: str
    missing: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.broken

    def usable(self, allow_incomplete: bool) -> bool:
        """Whole, or (``allow_incomplete``) only short of state files, with readable weights."""
        return self.complete or (allow_incomplete and not self.broken and "model weights" not in self.missing)

    def describe(self) -> str:
        parts = [f"{name} missing" for name in self.missing] + [f"{entry} truncated or unreadable"
                                                               for entry in self.broken]
        return "; ".join(parts) or "complete"


def restarted_parts(missing: list[str]) -> list[str]:
    """What of a run starts afresh when a checkpoint lacks the state files ``missing``."""
    return [RESTARTED[name] for name in STATE_FILES if name in missing]


def _weights_only_load(path: Path) -> None:
    """Load ``path`` as a resume loads it: tensors and plain containers only, nothing else unpickled."""
    import torch
    from transformers.trainer_pt_utils import safe_globals  # the numpy types of the RNG state

    with safe_globals():
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _read_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read back (None when it can), by its kind; other files are not inspected."""
    name = path.name
    try:
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt"):
                pass
        elif name.endswith((".pt", ".pth", ".bin")):  # torch.save writes zip archives: the directory is at the end
            with zipfile.ZipFile(path):
                pass
            if _LOADED_BY_RESUME.match(name):
                _weights_only_load(path)
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
    except pickle.UnpicklingError:
        return "holds pickled objects other than tensors, which resume does not load (torch.load weights_only)"
    except Exception as err:  # noqa: BLE001 - whatever the reader says, the file is not usable
        text = " ".join(str(err).split())
        return text[:120] or type(err).__name__
    return None


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointReport:
    """Every file of the checkpoint that can be checked cheaply is read far enough to know it is whole."""
    folder = Path(path)
    report = CheckpointReport(str(path))
    if not folder.is_dir():
        report.missing.append("the checkpoint folder")
        return report
    names = {entry.name for entry in folder.iterdir()}
    if not any(name in names for name in _WEIGHTS):
        report.missing.append("model weights")
    for name in STATE_FILES:
        if name not in names and not (name == OPTIMIZER_NAME and OPTIMIZER_NAME_BIN in names) and not (
                name == RNG_STATE_NAME and any(_RNG_STATE.match(n) for n in names)):
            report.missing.append(name)
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            problem = _read_problem(entry)
            if problem:
                report.broken.append(f"{entry.name} ({problem})")
    index = next((folder / n for n in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME) if n in names), None)
    if index is not None and not any(b.startswith(index.name) for b in report.broken):
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        report.missing += sorted(shard for shard in shards if shard not in names)
    return report


def verify_checkpoint(path: str | os.PathLike, *, allow_incomplete: bool = False) -> CheckpointReport:
    """The report of a checkpoint named explicitly; :class:`CheckpointError` when it cannot be resumed from."""
    report = inspect_checkpoint(path)
    if "the checkpoint folder" in report.missing:
        raise CheckpointError(f"resume_from_checkpoint: checkpoint folder does not exist: {path}")
    if report.broken or "model weights" in report.missing:
        raise CheckpointError(f"cannot resume from {path}: {report.describe()}; resume from an earlier checkpoint "
                              "(or 'last': the newest complete one)")
    if report.missing and not allow_incomplete:
        raise CheckpointError(_incomplete_message(report))
    return report


def _incomplete_message(report: CheckpointReport) -> str:
    return (f"checkpoint {report.path} has no {' / '.join(report.missing)}: resuming would silently restart "
            f"{', '.join(restarted_parts(report.missing))}. Resume from a complete checkpoint, or set "
            f"{ALLOW_OPTION}=true (ko-finetune: --set {ALLOW_OPTION}=true) to restart those from its weights")


def find_resume_checkpoint(output_dir: str | os.PathLike, *, allow_incomplete: bool = False) -> CheckpointReport:
    """The newest checkpoint of ``output_dir`` that can be resumed from; newer ones that cannot are skipped with a
    warning naming each. :class:`CheckpointError` when there is none."""
    folder = Path(output_dir)
    candidates = list(reversed(sort_checkpoints(str(folder)))) if folder.is_dir() else []
    if not candidates:
        raise CheckpointError(f"resume_from_checkpoint: no checkpoint-* folder in {output_dir} to resume from")
    skipped: list[CheckpointReport] = []
    for candidate in candidates:
        report = inspect_checkpoint(candidate)
        if report.usable(allow_incomplete):
            return report
        logger.warning("skipping checkpoint %s: %s (was the run killed while saving it?)", candidate,
                       report.describe())
        skipped.append(report)
    listed = "; ".join(f"{Path(r.path).name}: {r.describe()}" for r in skipped)
    hint = (f"; {ALLOW_OPTION}=true would restart what is missing from one that only lacks state files"
            if not allow_incomplete and any(r.usable(True) for r in skipped) else "")
    raise CheckpointError(f"no checkpoint in {output_dir} can be resumed from ({listed}){hint}; or start the run "
                          "again (overwrite_output_dir: true, --overwrite-output-dir)")


def checkpoint_param_groups(path: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups saved in a checkpoint (their settings, without the moments); None when the
    checkpoint has no ``optimizer.pt``."""
    optimizer_file = Path(path) / OPTIMIZER_NAME
    if not optimizer_file.is_file():
        return None
    import torch

    state = torch.load(optimizer_file, map_location="cpu", weights_only=True, mmap=True)
    return [{k: v for k, v in group.items() if k != "params"} for group in state.get("param_groups", [])]
