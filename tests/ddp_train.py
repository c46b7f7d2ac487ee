"""Trains the tiny model with hard collision; run under torchrun (one process per rank) or alone.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train.py OUT_DIR PER_DEVICE_BATCH OPTIM
Each rank writes its final weights to OUT_DIR/rank<r>.pt.
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_bert, tiny_dataset  # noqa: E402

from ko_hf import KOTrainer, KOTrainingArguments  # noqa: E402


def main(out_dir: str, per_device_batch: int, optim: str) -> None:
    args = KOTrainingArguments(
        output_dir=out_dir,
        use_cpu=True,
        per_device_train_batch_size=per_device_batch,
        train_sampling_strategy="sequential",  # the same global batches with and without data parallelism
        # transformers 5 multiplies the loss by the world size for models whose forward takes **kwargs, but
        # BERT's classification loss is a per-rank mean: the gradient would be world-size times too large.
        average_tokens_across_devices=False,
        optim=optim,
        learning_rate=2e-3 if optim.startswith("adamw") else 0.05,
        max_steps=4,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=11,
        collision="hard",
        coll_coef=1.0,
        collision_targets=["head", "pooler"],
    )
    trainer = KOTrainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=tiny_dataset(n=64))
    trainer.train()
    rank = int(os.environ.get("RANK", 0))
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, Path(out_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
