"""Trains the tiny model under torchrun and writes its model card (rank 0); see test_modelcard.py.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/ddp_card.py OUT_DIR
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_bert, tiny_dataset  # noqa: E402

from ko_hf import KOTrainer, KOTrainingArguments  # noqa: E402


def main(out_dir: str) -> None:
    args = KOTrainingArguments(
        output_dir=out_dir,
        use_cpu=True,
        per_device_train_batch_size=8,
        average_tokens_across_devices=False,
        max_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=11,
        collision="hard",
    )
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(n=64))
    trainer.train()
    trainer.create_model_card(plots=False)


if __name__ == "__main__":
    main(sys.argv[1])
