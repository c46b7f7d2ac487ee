"""Who may write into an output folder: one run at a time, and never over another run's results by accident.

* :func:`lock_run_folder` puts a lock file (:data:`LOCK_NAME`: pid, host, start time, command) into the folder.
  A second run into the same folder stops at once with an error naming the holder. A lock left behind by a
  process that no longer exists on this host (killed, crashed) is stale and taken over, with a warning.
* :func:`run_results` lists what of an earlier run a folder holds (checkpoints, saved model, metrics);
  :func:`claim_run_folder` refuses such a folder unless the run resumes or is told to overwrite it, and
  :func:`clear_run_results` deletes those results when it is.

Standard library only: ``ko-finetune`` runs this before importing torch, so a busy folder is reported at once.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .preflight import FinetuneError, check_output_dir

__all__ = ["LOCK_NAME", "RESULT_FILES", "RunFolderLock", "claim_run_folder", "clear_run_results", "lock_run_folder",
           "run_results"]

LOCK_NAME = ".ko-finetune.lock"
#: Files a finished (or checkpointed) run leaves in its output folder; ``checkpoint-<step>`` folders count too.
RESULT_FILES = ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
                "test_results.json", "head_results.json", "training_args.bin", "model.safetensors",
                "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors", "ko_result.json")
#: transformers names checkpoints ``checkpoint-<global step>`` (``trainer_utils.PREFIX_CHECKPOINT_DIR``).
CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
#: A lock file without readable content younger than this may still be being written by its creator.
_FRESH_SECONDS = 10.0

_HELD: dict[str, RunFolderLock] = {}


def _log():
    from transformers.utils import logging  # only when there is something to say (never on the fast path)

    return logging.get_logger(__name__)


def run_results(folder: str | os.PathLike) -> list[str]:
    """Names of an earlier run's results in ``folder`` (sorted; empty when there are none or no folder)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(entry.name for entry in path.iterdir()
                  if entry.name in RESULT_FILES or (CHECKPOINT_DIR.match(entry.name) and entry.is_dir()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunFolderLock:
    """The lock file of one output folder, held by this process; see the module docstring."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        #: the folders acquire() created (deepest last): removed again on release when the run left them empty
        self.created: list[Path] = []

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _is_stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:  # empty or garbled: stale unless its creator may still be writing it
            try:
                return time.time() - self.path.stat().st_mtime > _FRESH_SECONDS
            except FileNotFoundError:
                return True
        if holder.get("host") != socket.gethostname():
            return False  # cannot see the processes of another machine
        pid = holder.get("pid")
        return not isinstance(pid, int) or not _pid_alive(pid)

    def acquire(self) -> RunFolderLock:
        """Take the lock, or raise :class:`FinetuneError` naming the process that holds it."""
        missing = self.folder
        while not missing.exists() and missing.parent != missing:
            self.created.insert(0, missing)
            missing = missing.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FinetuneError(f"cannot create output_dir {self.folder}: {err.strerror or err}") from None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._is_stale(holder):
                    raise FinetuneError(self._busy_message(holder)) from None
                _log().warning("%s: taking over the lock of a process that no longer runs (%s)", self.folder,
                               _describe(holder) if holder else "empty lock file")
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as err:
                raise FinetuneError(f"output_dir {self.folder} is not writable: {err.strerror or err}") from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}, handle)
            self.held = True
            return self
        raise FinetuneError(self._busy_message(self._holder()))

    def _busy_message(self, holder: dict[str, Any] | None) -> str:
        who = _describe(holder) if holder else "a process that is still writing its lock file"
        return (f"output_dir {self.folder} is in use by another run: {who}. Wait for it to finish or choose another "
                f"output_dir; if that process is gone, delete {self.path}")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        _HELD.pop(str(self.folder.resolve()), None)
        holder = self._holder()
        if holder is None or holder.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        for folder in reversed(self.created):  # a run that failed before writing anything leaves no folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty (the run wrote into it), or gone
                break
        self.created = []


def _describe(holder: dict[str, Any]) -> str:
    parts = [f"pid {holder.get('pid')} on {holder.get('host')}"]
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    return " ".join(parts)


def lock_run_folder(folder: str | os.PathLike) -> RunFolderLock:
    """The lock of ``folder`` for this process: taken now, or the one it already holds. Released at exit."""
    key = str(Path(folder).resolve())
    held = _HELD.get(key)
    if held is not None and held.held:
        return held
    lock = RunFolderLock(folder).acquire()
    _HELD[key] = lock
    return lock


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        lock.release()


def claim_run_folder(folder: str | os.PathLike, *, resuming: bool, overwrite: bool,
                     main_process: bool = True) -> RunFolderLock | None:
    """Check and lock ``folder`` for a run (the lock on the main process only).

    A folder holding an earlier run's results is refused unless the run resumes from it (``resuming``) or may
    ``overwrite`` them; :func:`clear_run_results` deletes them once the run has loaded everything it needs.
    """
    check_output_dir(folder)
    lock = lock_run_folder(folder) if main_process else None
    found = run_results(folder)
    if found and not resuming and not overwrite:
        if lock is not None:
            lock.release()
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise FinetuneError(
            f"output_dir {folder} holds another run's results ({shown}); to replace them pass "
            "--overwrite-output-dir (overwrite_output_dir: true), to continue that run pass "
            "--resume-from-checkpoint last, or choose another --output-dir")
    return lock


def clear_run_results(folder: str | os.PathLike) -> list[str]:
    """Delete an earlier run's results in ``folder`` (checkpoints included, so that resuming later cannot pick up
    the earlier run's); returns what was deleted."""
    found = run_results(folder)
    for name in found:
        target = Path(folder) / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if found:
        _log().warning("overwrite_output_dir: deleted the earlier run's %s in %s", ", ".join(found), folder)
    return found
