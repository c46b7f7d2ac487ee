#!/usr/bin/env python
"""KO collisions under FSDP2 (``torch.distributed.fsdp.fully_shard``): a plain training loop with ``KOAdamW``.

``KOTrainer`` refuses FSDP (Trainer's FSDP path could not be tested end to end here); the KO optimizer itself
handles FSDP2's sharded parameters: for each collision target it all-gathers the whole gradient and weight,
collides them with the same seeded draws on every rank, and writes back each rank's own shard. This script is
the loop to copy. On CPU (gloo) it runs as written::

    torchrun --nproc-per-node 2 examples/fsdp2_train.py --out fsdp2-out              # sharded over 2 processes
    python examples/fsdp2_train.py --out single-out --world-batches 2               # the same global batches, unsharded

Each process writes ``rank<r>.pt`` (the full weights after training) to ``--out``; ``--compare DIR`` prints the
largest difference to another run's weights. By default the model is a tiny BERT built from a config and the data
is synthetic (the label is carried by one token), so nothing is downloaded; ``--model PATH`` fine-tunes a saved
encoder instead (its tokenizer is not needed: the synthetic data are token ids below its vocabulary size).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ko_hf.settings import COLLISION_TYPES


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(args.seed)  # the same initial weights on every rank (and in the unsharded run)
    if args.model:
        return AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=args.num_labels)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, num_labels=args.num_labels,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def synthetic_batches(args: argparse.Namespace, vocab_size: int, global_batch: int):
    """``steps`` global batches of token ids whose label is carried by the token at position 1."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    for _ in range(args.steps):
        labels = torch.randint(args.num_labels, (global_batch,), generator=generator)
        ids = torch.randint(args.num_labels + 5, vocab_size, (global_batch, args.length), generator=generator)
        ids[:, 1] = labels + 1
        yield ids, labels


def shard(model: torch.nn.Module) -> None:
    """FSDP2: every encoder layer its own unit, then the root (embeddings, pooler, head)."""
    from torch.distributed.fsdp import fully_shard

    encoder = getattr(model.base_model, "encoder", None)
    for layer in getattr(encoder, "layer", []):
        fully_shard(layer)
    fully_shard(model)


def ko_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW with Trainer's weight-decay split, plus one flagged group per collision target (built after
    sharding): ``ko_param_groups`` gives what KOTrainer would build."""
    from ko_hf import KOAdamW, ko_param_groups

    groups = ko_param_groups(model, args.collision, coll_coef=args.coef, collision_targets=args.targets,
                             collision_seed=args.seed, weight_decay=0.01)
    return KOAdamW(groups, lr=args.lr)


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone()
            for k, v in model.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for rank<r>.pt")
    parser.add_argument("--model", default=None, help="a saved encoder folder (default: a tiny BERT from a config)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="examples per process and step")
    parser.add_argument("--world-batches", type=int, default=None,
                        help="unsharded reference: take this many processes' batches per step in one process")
    parser.add_argument("--length", type=int, default=12)
    parser.add_argument("--num-labels", type=int, default=3)
    parser.add_argument("--collision", default="hard", choices=COLLISION_TYPES)
    parser.add_argument("--coef", type=float, default=None,
                        help="coll_coef (default: the collision type's; 1.0: every pair collides)")
    parser.add_argument("--targets", nargs="+", default=["head", "pooler"])
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--compare", type=Path, default=None, help="print the largest difference to DIR/rank0.pt")
    args = parser.parse_args()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    else:
        rank, world = 0, 1
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model = build_model(args).to(device)
    if distributed:
        shard(model)
    optimizer = ko_optimizer(model, args)

    per_step = args.batch_size * (world if distributed else (args.world_batches or 1))
    model.train()
    for ids, labels in synthetic_batches(args, model.config.vocab_size, per_step):
        if distributed:  # this rank's slice of the global batch
            ids, labels = ids.chunk(world)[rank], labels.chunk(world)[rank]
        loss = model(input_ids=ids.to(device), labels=labels.to(device)).loss
        loss.backward()  # FSDP2 reduce-scatters: each rank holds the mean gradient's shard
        optimizer.step()  # KO all-gathers each target, collides it identically, keeps this rank's shard
        optimizer.zero_grad()

    state = full_state(model)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out / f"rank{rank}.pt")
    if rank == 0:
        stats = optimizer.pop_collision_stats()
        print(f"trained {args.steps} steps on {world} process(es); collisions: "
              + ", ".join(f"{n}: grad change {v['grad_change_ratio']:.3f}" for n, v in stats.items()))
        if args.compare is not None:
            other = torch.load(args.compare / "rank0.pt")
            worst = max(state, key=lambda k: (state[k].float() - other[k].float()).abs().max())
            print(f"largest difference to {args.compare}: {(state[worst].float() - other[worst].float()).abs().max():.3g}"
                  f" ({worst})")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
