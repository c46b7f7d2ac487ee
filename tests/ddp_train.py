"""Trains the tiny model with hard collision; run under torchrun (one process per rank) or alone.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train.py OUT_DIR PER_DEVICE_BATCH OPTIM
Each rank writes its final weights to OUT_DIR/rank<r>.pt and its logged losses (one per step) to OUT_DIR/rank<r>.json.
"""

import json
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
        # average_tokens_across_devices is left at transformers' default: KOTrainer must get the loss scale right
        optim=optim,
        learning_rate=2e-3 if optim.startswith("adamw") else 0.05,
        max_steps=4,
        save_strategy="no",
        logging_steps=1,
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
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"losses": losses}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
