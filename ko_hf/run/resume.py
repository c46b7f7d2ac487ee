"""A resumed run continues its checkpoint's run: which checkpoint it resumes from (its files checked), the settings
that define a run's experiment, and those of the run checked against the checkpoint's record."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from transformers.utils import logging

from ..arguments import KOTrainingArguments
from ..settings import setting_names
from .checkpoints import find_resume_checkpoint, verify_checkpoint
from .config import _NOT_DEFINING, FinetuneOptions
from .preflight import FinetuneError, resume_request
from .record import EXTEND_KEYS, TRAINING_KEYS, checkpoint_run_record, extension_problem, setting_differences

logger = logging.get_logger(__name__)

__all__ = ["check_resumed_settings", "resolve_resume", "run_settings"]


def resolve_resume(args: KOTrainingArguments) -> str | None:
    """The checkpoint a run resumes from, its files checked (the collision settings are checked by the trainer)."""
    request = resume_request(args.resume_from_checkpoint)
    if request is None:
        return None
    if request is True:
        return find_resume_checkpoint(args.output_dir, allow_incomplete=args.resume_incomplete_checkpoint).path
    return verify_checkpoint(request, allow_incomplete=args.resume_incomplete_checkpoint).path


def run_settings(options: FinetuneOptions, args: KOTrainingArguments) -> dict[str, Any]:
    """The settings that define a run's experiment (what :mod:`ko_hf.run.record` records and a resume keeps): every
    :class:`FinetuneOptions` field but how the run is carried out, the training length, batch, optimizer, schedule,
    seeds and intervals of ``args`` (:data:`~ko_hf.run.record.TRAINING_KEYS`), and the KO settings."""
    settings = {f.name: getattr(options, f.name) for f in fields(options) if f.init and f.name not in _NOT_DEFINING}
    settings.update({key: getattr(args, key) for key in TRAINING_KEYS if hasattr(args, key)})
    settings.update({name: getattr(args, name) for name in setting_names() if hasattr(args, name)})
    return settings


def check_resumed_settings(options: FinetuneOptions, args: KOTrainingArguments, checkpoint: str) -> None:
    """A resumed run continues its checkpoint's run: the settings that defined it must be the same (a larger
    ``max_steps``/``num_train_epochs`` with ``extend_run``)."""
    recorded = checkpoint_run_record(checkpoint)
    if recorded is None:
        logger.warning("the run of %s kept no record of its settings (ko_run.json; a run of ko-hf 0.1?): its data, "
                       "schedule and intervals cannot be checked against this run's", checkpoint)
        return
    current = run_settings(options, args)
    differences = setting_differences(recorded, current, extend=options.extend_run)
    if differences:
        raise FinetuneError(
            f"cannot resume from {checkpoint}: its run was started with other settings than this one gives "
            f"({'; '.join(differences)}). A resumed run continues its checkpoint's experiment: leave these settings "
            "out (they are taken from the checkpoint's run) or give its values; to train a run further, raise "
            f"{' or '.join(EXTEND_KEYS)} with extend_run=true (--set extend_run=true); or start a new run in another "
            "output_dir")
    problem = extension_problem(recorded, current) if options.extend_run else None
    if problem is not None:
        raise FinetuneError(problem)
