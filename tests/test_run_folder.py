"""ko_hf.run.folder: the output folder's lock (an OS lock held for the run's life, the holder's details beside it),
result files written whole or not at all, and what an overwrite may delete. Standard library and subprocesses
only: no model is trained here."""

import contextlib
import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ko_hf.run.preflight import FinetuneError
from ko_hf.run.folder import LOCK_NAME, claim_run_folder, clear_run_results, lock_run_folder

SECRET = "hf_abcdefghijklmnop123"
REPO = Path(__file__).resolve().parents[1]

_HOLDER = """
import sys, time
sys.argv = ["ko-finetune", "m", "--dataset", "d", "--set", "hub_token={secret}", "--hub-token", "{secret}"]
from ko_hf.run.folder import lock_run_folder
lock_run_folder(sys.stdin.readline().strip())
print("locked", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def holding_lock(folder):
    """Another process that holds ``folder``'s lock (its command line carries a Hub token); yields its pid."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(secret=SECRET)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        holder.stdin.write(f"{folder}\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def ended_pid() -> int:
    """The pid of a process that has ended."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def write_left_lock(folder: Path, pid: int, host: str | None = None, command: str = "ko-finetune x") -> Path:
    """A lock file as a killed run leaves it: details, no process holding it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2025-01-01T00:00:00",
                                "command": command}))
    return path


@pytest.fixture
def run_folder_logs(caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        yield caplog
    hf_logging.disable_propagation()


# --------------------------------------------------------------------------------------------------- the lock


def test_a_held_lock_stops_a_second_run_naming_the_holder_without_its_secrets(tmp_path):
    with holding_lock(tmp_path) as pid:
        with pytest.raises(FinetuneError, match=f"in use by another run: pid {pid} on {socket.gethostname()}") as err:
            lock_run_folder(tmp_path)
        assert SECRET not in str(err.value) and "hub_token=<redacted> --hub-token <redacted>" in str(err.value)
        details = tmp_path / LOCK_NAME
        assert stat.S_IMODE(details.stat().st_mode) == 0o600  # was 0644
        assert SECRET not in details.read_text() and json.loads(details.read_text())["pid"] == pid


def test_lock_left_by_a_killed_run_is_taken_over_with_its_secrets_hidden(tmp_path, run_folder_logs):
    write_left_lock(tmp_path, ended_pid(), command=f"ko-finetune m --set hub_token={SECRET}")
    lock = lock_run_folder(tmp_path)
    try:
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert "taking over the lock" in run_folder_logs.text and SECRET not in run_folder_logs.text
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_file_naming_a_recycled_pid_is_not_in_use(tmp_path):
    """A lock file whose pid now belongs to an unrelated live process: no process holds the lock, so the folder
    is free (ko-hf 0.1 named the unrelated process as the run using the folder)."""
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_left_lock(tmp_path, unrelated.pid)
        lock = lock_run_folder(tmp_path)
        assert lock.held
        lock.release()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    path = write_left_lock(tmp_path, ended_pid(), host="another-machine")
    with pytest.raises(FinetuneError, match=f"another host .*on another-machine.*delete {path}"):
        lock_run_folder(tmp_path)  # a lock taken there may not be visible here
    assert json.loads(path.read_text())["host"] == "another-machine"  # left as it was


def test_lock_path_that_is_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    old = time.time() - 3600  # ko-hf 0.1 took it for a stale lock and failed with IsADirectoryError
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with pytest.raises(FinetuneError, match=f"{LOCK_NAME} is a folder"):
        lock_run_folder(tmp_path)


def test_lock_path_that_is_a_link_is_not_followed(tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(victim)
    with pytest.raises(FinetuneError, match="symbolic link"):
        lock_run_folder(tmp_path / "run")
    assert victim.read_text() == "keep me"


# --------------------------------------------------------------------------------------------------- overwriting


def _saved_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_output_folder_of_the_pretrained_model_is_refused(tmp_path, where):
    model = _saved_model(tmp_path / "runs" / "checkpoint-500")  # e.g. fine-tuning on from a checkpoint
    out = {"same": model, "inside": model / "out", "around": tmp_path / "runs"}[where]
    for overwrite in (False, True):
        with pytest.raises(FinetuneError, match="pretrained model's") as err:
            claim_run_folder(out, resuming=False, overwrite=overwrite, model=str(model))
        assert "another run's results" not in str(err.value)
    assert (model / "model.safetensors").read_bytes() == b"weights"


def test_results_no_run_wrote_are_never_deleted(tmp_path):
    other = _saved_model(tmp_path / "someone-elses-model")
    with pytest.raises(FinetuneError, match="no training run wrote there.*model.safetensors"):
        claim_run_folder(other, resuming=False, overwrite=True)
    with pytest.raises(FinetuneError, match="not written by a training run"):
        clear_run_results(other)
    assert (other / "model.safetensors").read_bytes() == b"weights"


def test_overwrite_deletes_a_runs_results_and_its_record(tmp_path):
    out = _saved_model(tmp_path / "out")
    (out / "trainer_state.json").write_text("{}")
    (out / "checkpoint-2").mkdir()
    (out / "ko_run.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    claim_run_folder(out, resuming=False, overwrite=True).release()
    assert clear_run_results(out) == ["checkpoint-2", "model.safetensors", "trainer_state.json"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt"]


# --------------------------------------------------------------------------------------------------- writing


def test_result_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from ko_hf.run.folder import OutputWriteError, write_json_atomic, writing_into

    path = tmp_path / "train_results.json"
    write_json_atomic(path, {"train_loss": 1.0})
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputWriteError, match=f"cannot write into output_dir {tmp_path}: No space left on device"):
        with writing_into(tmp_path):
            write_json_atomic(path, {"train_loss": 2.0})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads(path.read_text()) == {"train_loss": 1.0}  # the earlier file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_results.json"]  # no temporary file left


def test_other_errors_pass_through_writing_into(tmp_path):
    from ko_hf.run.folder import writing_into

    with pytest.raises(KeyError):
        with writing_into(tmp_path):
            raise KeyError("x")
    with pytest.raises(FileNotFoundError):
        with writing_into(tmp_path):
            open(tmp_path.parent / "elsewhere" / "x")
