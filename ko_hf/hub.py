"""What the Hugging Face Hub can do for this run: is it switched off (which variable), reachable, is a file cached.

Without a network and without an offline flag, huggingface_hub retries a refused download five times with
backoff (about 25 s, one warning per retry) before transformers gives up. :func:`hub_unreachable` asks the Hub
once, with a short timeout and through huggingface_hub's own HTTP session (so ``HF_ENDPOINT`` and proxy settings
apply), so that a run can say at once what happened instead.
"""

from __future__ import annotations

import functools
import os

from huggingface_hub import constants, try_to_load_from_cache

__all__ = ["dataset_offline_flag", "hub_offline_flag", "hub_unreachable", "is_cached", "is_repo_id"]

#: Seconds to wait for the Hub's answer before calling it unreachable.
PROBE_TIMEOUT = 5.0


def _set_variable(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().upper() in constants.ENV_VARS_TRUE_VALUES:
            return f"{name}={value}"
    return None


def hub_offline_flag() -> str | None:
    """``"HF_HUB_OFFLINE=1"`` (the variable that is set, as huggingface_hub read it), or None when online."""
    if not constants.HF_HUB_OFFLINE:
        return None
    return _set_variable(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or "HF_HUB_OFFLINE"


def dataset_offline_flag() -> str | None:
    """The variable that keeps ``datasets`` off the Hub (``HF_DATASETS_OFFLINE`` or ``HF_HUB_OFFLINE``), or None."""
    import datasets

    if not datasets.config.HF_HUB_OFFLINE:
        return None
    return _set_variable(("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or "HF_DATASETS_OFFLINE"


def is_repo_id(name: object, *, namespaced: bool = False) -> bool:
    """True when ``name`` is a valid Hub repo id (huggingface_hub's ``validate_repo_id``): ``bert-base-cased``,
    ``owner/name``; with ``namespaced``, only ``owner/name``. A local path (``./x``, ``/abs/x``, ``a/b/c``) is not."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or name.endswith((".json", ".git")) or (namespaced and "/" not in name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_cached(repo_id: str, filename: str = "config.json", repo_type: str = "model") -> bool:
    """True when ``filename`` of ``repo_id`` is in the local Hugging Face cache."""
    try:
        return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)
    except Exception:  # noqa: BLE001 - an id the cache cannot even name is not cached
        return False


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hub (``constants.ENDPOINT``) cannot be reached, or None when it answers; asked once per process."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT)
    except Exception as err:  # noqa: BLE001 - DNS, refused, timeout, proxy, TLS: all mean "no Hub"
        return f"{constants.ENDPOINT}: {' '.join(str(err).split()) or type(err).__name__}"
    return None
