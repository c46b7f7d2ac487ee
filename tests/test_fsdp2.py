"""KO collisions under FSDP2 (fully_shard) on CPU/gloo: examples/fsdp2_train.py under torchrun with 2 processes.

The collision targets are sharded DTensors (the 3-row head unevenly: 2 + 1 rows); the optimizer gathers each whole
gradient and weight, collides them identically on both ranks and writes back each rank's shard. The ranks must end
bitwise equal, and equal to one unsharded process over the same global batches up to float rounding.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_distributed import free_port, run

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "fsdp2_train.py"

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def weights(folder, rank=0):
    return torch.load(Path(folder) / f"rank{rank}.pt")


HARD = ["--collision", "hard", "--coef", "1.0"]  # every pair collides: the most sensitive check


def test_fsdp2_ranks_agree_and_equal_the_unsharded_run(tmp_path):
    run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master_addr", "127.0.0.1",
         "--master_port", free_port(), str(SCRIPT), "--out", str(tmp_path / "fsdp2"), *HARD], tmp_path)
    rank0, rank1 = weights(tmp_path / "fsdp2", 0), weights(tmp_path / "fsdp2", 1)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks drifted apart at {key}"

    run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "single"), "--world-batches", "2", *HARD], tmp_path)
    run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "no-ko"), "--world-batches", "2", "--collision",
         "none"], tmp_path)
    single, no_ko = weights(tmp_path / "single"), weights(tmp_path / "no-ko")
    for key in ("classifier.weight", "bert.pooler.dense.weight"):
        # the collision matters: without it the targets end elsewhere...
        effect = (single[key] - no_ko[key]).abs().max()
        # ...and the sharded run lands where the unsharded one does, up to float rounding
        deviation = (rank0[key] - single[key]).abs().max()
        assert effect > 1e-3, f"{key}: the collision changed nothing ({effect})"
        assert deviation <= 1e-3 * effect, f"{key}: FSDP2 differs by {deviation}; the collision moved it {effect}"
    worst = max((rank0[k] - single[k]).abs().max() for k in rank0)
    assert worst < 1e-5, f"FSDP2 and the unsharded run differ by {worst}"
