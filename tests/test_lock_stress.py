"""The output folder's lock under many processes at once (seconds): whoever holds it is alone in the folder.

Each worker waits for a start signal, then tries to take the lock; a holder proves it is alone by creating a marker
file exclusively, keeps it a moment, removes it and releases the lock. A stale lock (left by a SIGKILLed holder)
lies in the folder at the start, as after a killed run that two commands then resume at once.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_run_folder import REPO, holding_lock

WORKER = r"""
import json, os, random, sys, time
from pathlib import Path
from ko_hf.run.preflight import FinetuneError
from ko_hf.run.folder import lock_run_folder

folder, go, rounds, hold = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
random.seed(os.getpid())
while not go.exists():
    time.sleep(0.001)
outcomes = []
for _ in range(rounds):
    try:
        lock = lock_run_folder(folder)
    except FinetuneError as err:
        outcomes.append(["busy", str(err)])
    else:
        try:
            os.close(os.open(folder / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            outcomes.append(["overlap", ""])
        else:
            time.sleep(hold)
            os.unlink(folder / "inside")
            outcomes.append(["held", ""])
        lock.release()
    time.sleep(random.uniform(0, hold))
print(json.dumps({"pid": os.getpid(), "outcomes": outcomes}))
"""


def _race(folder: Path, workers: int, rounds: int, hold: float) -> list[dict]:
    go = folder.parent / f"{folder.name}.go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(go), str(rounds), str(hold)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(workers)]
    time.sleep(0.5)  # let them start and wait for the signal
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _killed_holder_lock(folder: Path) -> int:
    """Leave the lock file of a holder killed with SIGKILL in ``folder``; returns the dead holder's pid."""
    with holding_lock(folder) as pid:
        os.kill(pid, signal.SIGKILL)
    assert (folder / ".ko-finetune.lock").exists()
    return pid


def test_stale_lock_and_simultaneous_starts_let_exactly_one_run_in(tmp_path):
    folder = tmp_path / "run"
    dead = _killed_holder_lock(folder)
    results = _race(folder, workers=12, rounds=1, hold=1.5)
    outcomes = [(r["pid"], kind, message) for r in results for kind, message in r["outcomes"]]
    held = [pid for pid, kind, _ in outcomes if kind == "held"]
    assert len(held) == 1 and not [o for o in outcomes if o[1] == "overlap"], outcomes  # was: all took over
    busy = [message for _, kind, message in outcomes if kind == "busy"]
    assert len(busy) == 11 and all(f"pid {held[0]} " in message for message in busy), busy  # the real holder
    assert not any(f"pid {dead} " in message for message in busy)


def test_many_processes_taking_and_releasing_never_share_the_lock(tmp_path):
    folder = tmp_path / "run"
    _killed_holder_lock(folder)
    results = _race(folder, workers=8, rounds=25, hold=0.005)
    kinds = [kind for r in results for kind, _ in r["outcomes"]]
    assert "overlap" not in kinds
    assert kinds.count("held") >= 8 and len(kinds) == 8 * 25
    assert not (folder / ".ko-finetune.lock").exists()  # the last holder removed it
