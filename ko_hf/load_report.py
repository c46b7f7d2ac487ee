"""What loading a pretrained model for classification says: the facts of transformers' LOAD REPORT, once.

transformers logs a LOAD REPORT table as a warning whenever the checkpoint's weights and the model's differ, which
for a classifier fine-tuned from an encoder is every run (its head is new) and every reload of a PEFT adapter (the
base is loaded without the head the adapter brings). Where ko-hf loads a model, :func:`quiet_load_report` drops that
table and :func:`log_loading_info` says what it held (:func:`from_pretrained_quietly` does both): the new head and
the checkpoint's unused weights at info level, an encoder weight that is missing or of another shape (left freshly
initialised: not the pretrained model) as a warning.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
from collections.abc import Iterator, Sequence
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["from_pretrained_quietly", "log_loading_info", "quiet_load_report"]

#: The logger transformers writes its LOAD REPORT to.
REPORT_LOGGER = "transformers.modeling_utils"
SHOWN = 5


class _DropLoadReport(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """transformers' LOAD REPORT is not logged while the block runs (its other messages are)."""
    report_logger = logging.get_logger(REPORT_LOGGER)
    drop = _DropLoadReport()
    report_logger.addFilter(drop)
    try:
        yield
    finally:
        report_logger.removeFilter(drop)


def _some(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def log_loading_info(model: Any, info: dict[str, Any], source: str) -> None:
    """Log what ``from_pretrained(..., output_loading_info=True)`` reported for ``model`` loaded from ``source``.

    A weight outside ``model.base_model`` (the head) that is missing or resized is the new head: info. So are the
    checkpoint's weights the model does not use (a pretraining head). A missing or resized weight of the encoder
    is a warning naming it: it was initialised afresh, so the run does not start from the pretrained encoder.
    """
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    missing = sorted(info.get("missing_keys") or ())
    resized = sorted(info.get("mismatched_keys") or ())
    head = [key for key in missing if not key.startswith(prefix)]
    head += [key for key, *_ in resized if not key.startswith(prefix)]
    if head:
        logger.info("%s: new classification head %s, initialised for this run", source, _some(head))
    unused = sorted(info.get("unexpected_keys") or ())
    if unused:
        logger.info("%s: checkpoint weights this model does not use: %s", source, _some(unused))
    fresh = [key for key in missing if key.startswith(prefix)]
    if fresh:
        logger.warning("%s has no weights for %s: initialised afresh, not pretrained (is it a checkpoint of this "
                       "architecture?)", source, _some(fresh))
    other = [f"{key} {tuple(saved)} -> {tuple(wanted)}" for key, saved, wanted in resized if key.startswith(prefix)]
    if other:
        logger.warning("%s has weights of another shape for %s: initialised afresh, not pretrained", source,
                       _some(other))


def from_pretrained_quietly(model_class: Any, name: str, *, output_loading_info: bool = False, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(name, **kwargs)`` without transformers' LOAD REPORT; what it would have said is
    logged by :func:`log_loading_info`. With ``output_loading_info`` the loading info comes back too, as
    ``from_pretrained`` gives it: ``(model, info)``."""
    with quiet_load_report():
        model, info = model_class.from_pretrained(name, output_loading_info=True, **kwargs)
    log_loading_info(model, info, str(name))
    return (model, info) if output_loading_info else model
