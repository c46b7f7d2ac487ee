"""End-to-end overhead of KO: median training-step time with soft / hard collision divided by AdamW alone.

A DistilBERT-sized classifier (hidden 768, 6 layers, pre_classifier 768x768, 7 labels) is built from its config
(no download). Every round runs one full training step (forward, backward, gradient clipping, optimizer step)
for each setting in turn, on the same model replica and batch shape, so slow drifts of the machine hit all
settings alike; the ratio of medians is printed. Because whole-step times on a shared CPU are noisy, the
optimizer step (where the collision runs) is also timed on its own, and the overhead it adds is reported as
(median optimizer-step time of the setting - that of AdamW) / median AdamW training-step time.

Hard collision is timed once per pairing in ``--pairing`` (default both: ``dsmc``, the default, and ``all``,
Eq. 8 as printed), in the same rounds.

    python benchmarks/trainer_overhead.py                      # CPU, batch 16 x 128 tokens
    python benchmarks/trainer_overhead.py --device cuda --model bert-base
    python benchmarks/trainer_overhead.py --pairing dsmc       # hard collision with one pairing only
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from ko_hf import KOAdamW, collision_target_names
from ko_hf.settings import DEFAULT_COLL_COEF, PAIRINGS, ko_setting

DEFAULT_PAIRING = ko_setting("collision_pairing").default


def build_model(kind: str, num_labels: int) -> torch.nn.Module:
    if kind == "distilbert-base":
        return DistilBertForSequenceClassification(DistilBertConfig(num_labels=num_labels))
    if kind == "bert-base":
        return BertForSequenceClassification(BertConfig(num_labels=num_labels))
    raise ValueError(f"unknown model size {kind!r}; valid: distilbert-base, bert-base")


def build_optimizer(model: torch.nn.Module, collision: str, coef: float, distance_scale: float, pairing: str,
                    **optimizer_kwargs):
    targets = set(collision_target_names(model)) if collision != "none" else set()
    groups = [{"params": [p for n, p in model.named_parameters() if n not in targets]}]
    for name, param in model.named_parameters():
        if name in targets:
            groups.append({"params": [param], "collision": collision, "coll_coef": coef,
                           "collision_distance_scale": distance_scale, "collision_pairing": pairing,
                           "collision_names": [name]})
    return KOAdamW(groups, **{"lr": 2e-5, "weight_decay": 0.01, **optimizer_kwargs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="distilbert-base", choices=["distilbert-base", "bert-base"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--num-labels", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--soft-coef", type=float, default=DEFAULT_COLL_COEF["soft"])
    parser.add_argument("--hard-coef", type=float, default=DEFAULT_COLL_COEF["hard"])
    parser.add_argument("--distance-scale", type=float, default=ko_setting("collision_distance_scale").default)
    parser.add_argument("--pairing", default=",".join(PAIRINGS),
                        help=f"hard collision's pairings to time, comma-separated ({', '.join(PAIRINGS)}; default "
                             f"{DEFAULT_PAIRING} is the library's)")
    cli = parser.parse_args()
    pairings = [p.strip() for p in cli.pairing.split(",") if p.strip()]
    if not pairings or any(p not in PAIRINGS for p in pairings) or len(set(pairings)) != len(pairings):
        parser.error(f"--pairing must be distinct values of {', '.join(PAIRINGS)}, got {cli.pairing!r}")

    device = torch.device(cli.device)
    torch.manual_seed(0)
    base = build_model(cli.model, cli.num_labels).to(device)
    settings = {"adamw": ("none", 0.0, DEFAULT_PAIRING), "soft": ("soft", cli.soft_coef, DEFAULT_PAIRING),
                **{f"hard {p}": ("hard", cli.hard_coef, p) for p in pairings}}
    runs = {}
    for name, (collision, coef, pairing) in settings.items():
        model = copy.deepcopy(base).train()
        runs[name] = (model, build_optimizer(model, collision, coef, cli.distance_scale, pairing))
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 20000, (cli.batch_size, cli.seq_len), generator=gen).to(device)
    labels = torch.randint(cli.num_labels, (cli.batch_size,), generator=gen).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(model, optimizer) -> tuple[float, float]:
        sync()
        start = time.perf_counter()
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sync()
        before_optimizer = time.perf_counter()
        optimizer.step()
        sync()
        optimizer_time = time.perf_counter() - before_optimizer
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start, optimizer_time

    times = {name: [] for name in runs}
    optimizer_times = {name: [] for name in runs}
    accepted = []
    for round_index in range(cli.warmup + cli.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            elapsed, optimizer_elapsed = step(*runs[name])
            if round_index >= cli.warmup:
                times[name].append(elapsed)
                optimizer_times[name].append(optimizer_elapsed)
        accepted.append({p: {k: v.get("accepted_pair_fraction")
                             for k, v in runs[f"hard {p}"][1].pop_collision_stats().items()} for p in pairings})

    medians = {name: statistics.median(values) for name, values in times.items()}
    optimizer_medians = {name: statistics.median(values) for name, values in optimizer_times.items()}
    print(f"model={cli.model} device={device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads) batch={cli.batch_size}x{cli.seq_len} rounds={cli.rounds} "
          f"torch={torch.__version__}")
    print(f"soft coef={cli.soft_coef}; hard coef={cli.hard_coef}, distance_scale={cli.distance_scale}, "
          f"pairings {', '.join(pairings)}; hard accepted fraction of candidate pairs per target, mean over the "
          f"timed rounds: {mean_accepted(accepted[cli.warmup:])}")
    print("| setting | median step (s) | min (s) | max (s) | ratio to AdamW | median optimizer.step (s) | "
          "overhead from optimizer.step |")
    print("|---|---|---|---|---|---|---|")
    for name, median in medians.items():
        added = (optimizer_medians[name] - optimizer_medians["adamw"]) / medians["adamw"]
        print(f"| {name} | {median:.4f} | {min(times[name]):.4f} | {max(times[name]):.4f} | "
              f"{median / medians['adamw']:.4f} | {optimizer_medians[name]:.4f} | {1 + added:.4f} |")


def mean_accepted(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{pairing: {target: mean accepted fraction}} over the rounds (each round's fraction is of that step)."""
    out: dict[str, dict[str, float]] = {}
    for pairing in rounds[0] if rounds else ():
        out[pairing] = {k: round(statistics.mean(r[pairing][k] for r in rounds), 5) for k in rounds[0][pairing]}
    return out


if __name__ == "__main__":
    main()
