"""Who may write into an output folder: one run at a time, and never over another run's results by accident.

* :func:`lock_run_folder` takes an OS lock (``fcntl.flock``) on the folder's lock file (:data:`LOCK_NAME`) and holds
  it for the run's life; the kernel drops it when the process ends, however it ends. The lock is the truth: the
  file only carries the holder's details (pid, host, start time, command with its secrets hidden; mode 0600) for the
  message a second run gets, which stops at once naming the holder. A lock file left by a run that ended without
  releasing it (killed, crashed) holds no OS lock and is taken over, with a warning; one whose details name another
  host is not (a lock taken there may not be visible here).
* :func:`run_results` lists what of an earlier run a folder holds (checkpoints, saved model, metrics);
  :func:`claim_run_folder` refuses such a folder unless the run resumes or is told to overwrite it, and
  :func:`clear_run_results` deletes those results when it is -- only in a folder that a training run wrote.
* :func:`write_json_atomic` writes a result file so that it is either whole or absent (a temporary file, then
  ``os.replace``), and :func:`writing_into` turns a full disk into one clear error.

Standard library only: ``ko-finetune`` runs this before importing torch, so a busy folder is reported at once.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .preflight import FinetuneError, check_model_folder_kept, check_output_dir
from ..redaction import redact_argv, redact_text

__all__ = ["LOCK_NAME", "RESULT_FILES", "RUN_TRACES", "OutputWriteError", "RunFolderLock", "claim_run_folder",
           "clear_run_results", "lock_run_folder", "run_results", "write_json_atomic", "write_text_atomic",
           "writing_into"]

LOCK_NAME = ".ko-finetune.lock"
#: Files a finished (or checkpointed) run leaves in its output folder; ``checkpoint-<step>`` folders count too.
RESULT_FILES = ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
                "test_results.json", "head_results.json", "training_args.bin", "model.safetensors",
                "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors", "ko_result.json")
#: What only a training run writes (Trainer's state and arguments, ko-finetune's record of the run's settings,
#: checkpoints): a folder with results but none of these holds a saved model that no run wrote there.
#: The record of the settings that defined a run (:mod:`ko_hf.run.record`).
RECORD_NAME = "ko_run.json"
RUN_TRACES = ("trainer_state.json", "training_args.bin", RECORD_NAME)
#: transformers names checkpoints ``checkpoint-<global step>`` (``trainer_utils.PREFIX_CHECKPOINT_DIR``).
CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
#: How long a second run waits for the holder of a lock to write its details before naming it as "starting".
_DETAILS_WAIT_SECONDS = 2.0
#: Out-of-space errors: whatever file they hit, the output folder's disk is full.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

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


def _written_by_a_run(folder: Path, found: list[str]) -> bool:
    return any(name in RUN_TRACES or CHECKPOINT_DIR.match(name) for name in found) or (folder / RECORD_NAME).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _try_os_lock(fd: int) -> bool:
    """An exclusive OS lock on ``fd``'s file, without waiting: False when another open file holds it."""
    import fcntl  # POSIX (Linux, macOS)

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _read_details(fd: int) -> dict[str, Any] | None:
    """The holder's details written in the lock file (None: empty, garbled or unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _own_details() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(redact_argv([Path(sys.argv[0]).name, *sys.argv[1:]]))}


def _is_live(holder: dict[str, Any] | None) -> bool:
    """Details that can be a live holder's (another host's processes cannot be seen from here)."""
    if holder is None:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    return isinstance(pid, int) and _pid_alive(pid)


class RunFolderLock:
    """The lock of one output folder, held by this process; see the module docstring."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._fd: int | None = None
        self._owner = os.getpid()
        #: the folders acquire() created (deepest last): removed again on release when the run left them empty
        self.created: list[Path] = []

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except IsADirectoryError:
            raise FinetuneError(f"{self.path} is a folder, but ko-finetune uses that name for the output folder's "
                                "lock file; remove or rename that folder") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise FinetuneError(f"{self.path} is a symbolic link, but ko-finetune uses that name for the output "
                                    "folder's lock file (it is written, so a link is not followed); remove it"
                                    ) from None
            raise FinetuneError(f"output_dir {self.folder} is not writable: cannot open its lock file {self.path} "
                                f"({err.strerror or err})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FinetuneError(f"{self.path} is not a regular file, but ko-finetune uses that name for the output "
                                "folder's lock file; remove it")
        return fd

    def _is_current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at the lock's path (a releasing holder unlinks it before unlocking)."""
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

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
        for _ in range(20):
            fd = self._open()
            if not _try_os_lock(fd):
                holder = self._wait_for_details(fd)
                os.close(fd)
                raise FinetuneError(self._busy_message(holder))
            if not self._is_current(fd):  # locked the file of a holder that released it meanwhile: open again
                os.close(fd)
                continue
            try:
                self._take(fd)
            except BaseException:
                os.close(fd)
                raise
            return self
        raise FinetuneError(self._busy_message(None))

    def _take(self, fd: int) -> None:
        """Holding the OS lock: check what an earlier holder left, then write this process's details."""
        left = _read_details(fd)
        if left is not None and left.get("host") not in (None, socket.gethostname()):
            raise FinetuneError(
                f"output_dir {self.folder} is locked by a run on another host ({_describe(left)}); a lock taken "
                f"there may not be visible here. Wait for it to finish or choose another output_dir; if that run "
                f"has ended, delete {self.path}")
        os.fchmod(fd, 0o600)  # a lock file of ko-hf 0.1 was 0644
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_own_details()).encode("utf-8"), 0)
        self._fd, self.held = fd, True
        if left:  # an earlier holder ended without releasing it (killed, crashed)
            _log().warning("%s: taking over the lock left by a run that no longer holds it (%s)", self.folder,
                           _describe(left))

    def _wait_for_details(self, fd: int) -> dict[str, Any] | None:
        """The holder's details; a holder that has just taken the lock may not have written them yet."""
        deadline = time.monotonic() + _DETAILS_WAIT_SECONDS
        while True:
            holder = _read_details(fd)
            if _is_live(holder) or time.monotonic() > deadline:
                return holder if _is_live(holder) else None
            time.sleep(0.02)

    def _busy_message(self, holder: dict[str, Any] | None) -> str:
        who = _describe(holder) if holder else "a run that is starting (its details are not written yet)"
        return (f"output_dir {self.folder} is in use by another run: {who}. Wait for it to finish or choose another "
                "output_dir")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        _HELD.pop(str(self.folder.resolve()), None)
        fd, self._fd = self._fd, None
        if os.getpid() != self._owner:  # a forked child: the lock is its parent's
            return
        if fd is not None:
            if self._is_current(fd):  # unlinked while still locked: whoever opened it meanwhile opens again
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(fd)  # drops the OS lock
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
    if holder.get("command"):  # written redacted; a lock file of ko-hf 0.1 was not
        parts.append(f"({' '.join(redact_argv(str(holder['command']).split(' ')))})")
    return redact_text(" ".join(parts))


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
                     main_process: bool = True, model: str | os.PathLike | None = None) -> RunFolderLock | None:
    """Check and lock ``folder`` for a run (the lock on the main process only).

    ``folder`` may not be the pretrained ``model``'s own folder, nor inside or around it (its weights would be
    replaced or deleted). A folder holding an earlier run's results is refused unless the run resumes from it
    (``resuming``) or may ``overwrite`` them; :func:`clear_run_results` deletes them once the run has loaded
    everything it needs. Results that no training run wrote (a saved model without a run's traces) are never
    deleted: such a folder is refused even with ``overwrite``.
    """
    check_output_dir(folder)
    if model is not None:
        check_model_folder_kept(folder, model)
    lock = lock_run_folder(folder) if main_process else None
    found = run_results(folder)
    problem = None
    if found and not _written_by_a_run(Path(folder), found):
        problem = (f"output_dir {folder} holds a saved model or results that no training run wrote there "
                   f"({_listed(found)}: no trainer_state.json, training_args.bin or checkpoint); ko-finetune does "
                   "not replace or delete them, even with --overwrite-output-dir: choose another --output-dir")
    elif found and not resuming and not overwrite:
        problem = (f"output_dir {folder} holds another run's results ({_listed(found)}); to replace them pass "
                   "--overwrite-output-dir (overwrite_output_dir: true), to continue that run pass "
                   "--resume-from-checkpoint last, or choose another --output-dir")
    if problem is not None:
        if lock is not None:
            lock.release()
        raise FinetuneError(problem)
    return lock


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def clear_run_results(folder: str | os.PathLike) -> list[str]:
    """Delete an earlier run's results in ``folder`` (checkpoints included, so that resuming later cannot pick up
    the earlier run's) and its record of settings; returns what was deleted. Nothing is deleted in a folder that
    no training run wrote (:class:`FinetuneError`)."""
    found = run_results(folder)
    if found and not _written_by_a_run(Path(folder), found):
        raise FinetuneError(f"output_dir {folder}: {_listed(found)} were not written by a training run; not "
                            "deleting them")
    record = Path(folder) / RECORD_NAME
    for name in found:
        target = Path(folder) / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if found:
        _log().warning("overwrite_output_dir: deleted the earlier run's %s in %s", ", ".join(found), folder)
    with contextlib.suppress(FileNotFoundError):
        record.unlink()
    return found


# --------------------------------------------------------------------------------------------------- writing


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that the file is either whole or as it was (never empty or cut short): into a
    temporary file next to it, then ``os.replace``. The temporary file is removed when writing fails."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int = 4) -> None:
    """:func:`write_text_atomic` of ``data`` as JSON (keys sorted, as transformers writes its result files)."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")


class OutputWriteError(FinetuneError):
    """Writing a run's results failed for want of space (or of a writable output folder)."""


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in _DISK_FULL:
        return True
    text = str(err)  # torch's zip writer and safetensors raise their own errors, carrying the OS's words
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


@contextlib.contextmanager
def writing_into(folder: str | os.PathLike) -> Iterator[None]:
    """Within the block, a full disk (whatever raises it) or a file of ``folder`` that cannot be written becomes
    :class:`OutputWriteError`, naming the folder and what the run leaves behind."""
    try:
        yield
    except FinetuneError:
        raise
    except Exception as err:  # noqa: BLE001 - only the two cases below are translated
        filename = getattr(err, "filename", None)
        inside = isinstance(err, OSError) and filename is not None and _is_inside(filename, folder)
        if not (_disk_full(err) or inside):
            raise
        where = f" ({filename})" if filename else ""
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:200]
        raise OutputWriteError(
            f"cannot write into output_dir {folder}{where}: {reason}. Free space (or fix the folder) and run the "
            "same command with --resume-from-checkpoint last to continue from the newest complete checkpoint, if "
            "the run saved one (the metrics and trainer-state files are written whole or not at all)"
        ) from err


def _is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return False
    return True
