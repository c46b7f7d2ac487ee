"""The model a run fine-tunes, loaded and checked before training: its config (a local folder or the Hub, cached
when the Hub is unreachable), its tokenizer, a sequence-classification class, ``max_length`` against its limits, and
weights that fit their config and are finite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
from transformers.utils import logging

from ..hub import hub_offline_flag, hub_unreachable, is_cached
from .preflight import FinetuneError

logger = logging.get_logger(__name__)

__all__ = ["check_finite_weights", "check_max_length", "check_mismatched_weights", "check_sequence_classification",
           "load_model_config", "load_tokenizer"]

#: ``tokenizer.model_max_length`` above this is transformers' "no limit known" sentinel (``int(1e30)``).
_NO_TOKENIZER_LIMIT = 1_000_000


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _looks_like_local_path(name: str) -> bool:
    """``./x``, ``/x``, ``~/x``, ``x/`` or ``a/b/c`` -- not a Hub id ``owner/name`` or ``name``."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def load_model_config(name: str) -> tuple[Any, bool]:
    """The model's config, and whether the rest must come from the local cache only (the Hub is unreachable)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FinetuneError(f"model path {name} is a file; pass the model's folder (with config.json)")
        if not (path / "config.json").is_file():
            raise FinetuneError(f"model folder {name} has no config.json (not a saved transformers model)")
    elif _looks_like_local_path(name):
        raise FinetuneError(f"model path does not exist: {name}")
    local_only = False
    if not path.exists():
        local_only = _hub_access(name)
    try:
        return AutoConfig.from_pretrained(name, local_files_only=local_only), local_only
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        if path.exists():
            raise FinetuneError(f"cannot read the model config in {name}: {first_line(err)}") from err
        raise FinetuneError(
            f"cannot load model {name!r} from the Hugging Face Hub ({first_line(err)}); check the id, or pass a "
            "local model folder"
        ) from err


def _hub_access(name: str) -> bool:
    """Checks that the Hub id ``name`` can be loaded; True when only from the local cache (the Hub is unreachable)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise FinetuneError(f"model {name!r} is neither a local folder nor a valid Hub id ({err})") from None
    cached = is_cached(name)
    flag = hub_offline_flag()
    if flag is not None:
        if not cached:
            raise FinetuneError(
                f"model {name!r} is not a local folder and not in the local Hugging Face cache, and {flag} is set "
                "(offline mode), so the Hub is not asked: unset it to download the model once, or pass a local model folder instead "
                "of the Hub id (ko-finetune /path/to/folder ..., or model_name_or_path: in a config)")
        return False  # transformers reads the cache itself
    problem = hub_unreachable()
    if problem is None:
        return False
    if not cached:
        raise FinetuneError(
            f"cannot reach the Hugging Face Hub to download model {name!r} ({problem}), and it is not in the local "
            "cache; no offline flag (HF_HUB_OFFLINE) is set. Check the network or proxy (HTTPS_PROXY), or pass a "
            "local model folder instead of the Hub id")
    logger.warning("the Hugging Face Hub is unreachable (%s): using the cached copy of %s", problem, name)
    return True


def check_sequence_classification(name: str, config) -> None:
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise FinetuneError(
            f"model {name!r} (model_type {config.model_type!r}) has no sequence-classification class in "
            "transformers (AutoModelForSequenceClassification); use a text encoder such as bert, roberta, "
            "distilbert, deberta-v2 or an all-MiniLM checkpoint"
        )


def load_tokenizer(name: str, local_only: bool = False):
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except Exception as err:  # noqa: BLE001
        flag = hub_offline_flag()
        hint = f" ({flag} is set: pass a local tokenizer folder)" if flag and not Path(name).exists() else ""
        raise FinetuneError(f"cannot load a tokenizer from {name!r}{hint}: {first_line(err)}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FinetuneError(f"the tokenizer of {name!r} has neither a pad nor an eos token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models (GPT-2, Llama): pad with eos
    return tokenizer


def check_max_length(max_length: int, config, tokenizer) -> None:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise FinetuneError(f"max_length must be a positive integer, got {max_length!r}")
    positions = getattr(config, "max_position_embeddings", None)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    limits = {}
    if isinstance(positions, int) and positions > 0:
        limits["max_position_embeddings"] = positions
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_TOKENIZER_LIMIT:
        limits["tokenizer model_max_length"] = tokenizer_limit
    if limits and max_length > min(limits.values()):
        shown = ", ".join(f"{k}={v}" for k, v in limits.items())
        raise FinetuneError(f"max_length {max_length} exceeds the model's limit ({shown}); "
                            f"set max_length (--max-length) to {min(limits.values())} or less")


def check_mismatched_weights(model: torch.nn.Module, mismatched: Any, name: str) -> None:
    """Only the new classification head may differ in shape from the pretrained checkpoint (it is initialised
    afresh for the data's labels); a weight of the encoder that does not fit would be re-initialised silently."""
    prefix = getattr(model, "base_model_prefix", "")
    encoder = sorted((key, tuple(saved), tuple(wanted)) for key, saved, wanted in mismatched
                     if prefix and key.startswith(f"{prefix}."))
    if encoder:
        key, saved, wanted = encoder[0]
        more = f" (and {len(encoder) - 1} more weights)" if len(encoder) > 1 else ""
        raise FinetuneError(f"model {name!r}: the weight {key} has shape {list(saved)} in the checkpoint but the "
                            f"model its config describes needs {list(wanted)}{more}; only the classification head "
                            "may differ (it is new for the data's labels). The weight files and config.json do not "
                            "belong together: save the model again")


def check_finite_weights(model: torch.nn.Module, name: str) -> None:
    """A corrupted weight file trains silently to NaN: refuse a model whose loaded weights are not finite."""
    bad = [key for key, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise FinetuneError(f"model {name!r} has non-finite weights (NaN or inf) in {bad[0]}{more}: the weight file "
                            "is corrupt; download or save the model again")
