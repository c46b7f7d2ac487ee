"""Where a base model came from: its Hub id (also for a local folder that records one) and its license.

Reads only local files (the folder, its README.md model card, the Hugging Face cache): never the network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hub import is_repo_id

__all__ = ["BaseModelOrigin", "is_hub_id", "resolve_base_model"]

_CACHE_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<repo>[^/]+)/snapshots/[^/]+/?$")
_QUOTED_REPO = re.compile(r"""["']([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)["']""")


def is_hub_id(name: str | None) -> bool:
    """``"org/model"`` or ``"model"`` (a valid Hub repo id) that is not a path on this machine."""
    if not name or not isinstance(name, str):
        return False
    if os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return False
    return is_repo_id(name)


@dataclass
class BaseModelOrigin:
    """Where a base model came from: its Hub id when known, the local folder it was loaded from, its license."""

    hub_id: str | None = None
    path: str | None = None
    #: where the id of a local folder was found
    evidence: str | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None


def _read_card(readme: Path) -> tuple[dict[str, Any], str] | None:
    if not readme.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        card = ModelCard.load(readme, ignore_metadata_errors=True)
        return card.data.to_dict(), card.text
    except Exception:  # noqa: BLE001 - an unreadable card records nothing
        return None


def _license_of(card: tuple[dict[str, Any], str] | None) -> dict[str, str | None]:
    meta = card[0] if card else {}
    value = meta.get("license")
    if not isinstance(value, str) or not value.strip():
        return {}
    return {"license": value.strip(),
            "license_name": meta.get("license_name") if isinstance(meta.get("license_name"), str) else None,
            "license_link": meta.get("license_link") if isinstance(meta.get("license_link"), str) else None}


def _names_of_card(meta: dict[str, Any], text: str) -> set[str]:
    """What a model card calls its own model: its first heading and its model-index name(s), lower-cased."""
    names = set()
    title = re.search(r"^#[ \t]+(.+?)[ \t#]*$", text, flags=re.MULTILINE)
    if title:
        names.add(title.group(1).strip().strip("`*").lower())
    for entry in meta.get("model-index") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            names.add(entry["name"].strip().lower())
    return names


def _hub_id_of_folder(folder: Path, card: tuple[dict[str, Any], str] | None) -> tuple[str | None, str | None]:
    """The Hub id a local model folder records for itself, and where it was found.

    1. a Hugging Face cache snapshot (``models--org--name/snapshots/<sha>``) is that repository;
    2. a README.md (model card) that names its own repository: an ``owner/name`` id quoted in the card (its
       usage code, e.g. ``SentenceTransformer('sentence-transformers/all-MiniLM-L6-v2')``) whose ``name`` is
       the card's title or model-index name;
    3. config.json's ``_name_or_path`` when it is a Hub id that the README does not mention: a README that
       mentions it names it as where the model came from (``base_model:``, "we used the pretrained ..."), so the
       folder holds a model derived from it, not that model.
    """
    match = _CACHE_SNAPSHOT.search(folder.resolve().as_posix())
    if match:
        repo = match.group("repo").replace("--", "/")
        if is_hub_id(repo):
            return repo, "the name of the Hugging Face cache folder"
    meta, text = card if card else ({}, "")
    names = _names_of_card(meta, text)
    for candidate in _QUOTED_REPO.findall(text):
        if candidate.split("/")[1].lower() in names and is_hub_id(candidate):
            return candidate, "the folder's README.md, which names its own repository"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    recorded = config.get("_name_or_path") if isinstance(config, dict) else None
    if isinstance(recorded, str) and is_hub_id(recorded):
        base_models = meta.get("base_model") or []
        base_models = [base_models] if isinstance(base_models, str) else list(base_models)
        if recorded not in base_models and recorded not in text:
            return recorded, "the folder's config.json (`_name_or_path`)"
    return None, None


def _cached_card(repo_id: str) -> tuple[dict[str, Any], str] | None:
    """The model card of a Hub model when the local Hugging Face cache holds one (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "README.md")
    except Exception:  # noqa: BLE001
        return None
    return _read_card(Path(path)) if isinstance(path, str) else None


def resolve_base_model(origin: str | os.PathLike | None) -> BaseModelOrigin:
    """The Hub id and license of the model ``origin`` names (a Hub id, or a local folder), reading only local files.

    A Hub id is taken as it is (its license from the model card in the local Hugging Face cache, when there is
    one). A local folder gets the Hub id it records for itself (see :func:`_hub_id_of_folder`) and the license
    of its README.md; the folder stays in ``path``.
    """
    if not origin:
        return BaseModelOrigin()
    origin = str(origin)
    folder = Path(origin).expanduser()
    if not folder.is_dir():
        if is_hub_id(origin):
            return BaseModelOrigin(hub_id=origin, **_license_of(_cached_card(origin)))
        return BaseModelOrigin(path=origin)
    card = _read_card(folder / "README.md")
    hub_id, evidence = _hub_id_of_folder(folder, card)
    return BaseModelOrigin(hub_id=hub_id, path=origin, evidence=evidence, **_license_of(card))
