"""The day a GPU is at hand: one command that tests and measures ko-hf on it, in a few minutes.

    python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_<card>.md   # <= 8 min on one H100
    python benchmarks/gpu_check.py --device cpu --quick                                   # the rehearsal, ~1 min

Parts, each in its own process with its own time limit (a part that fails, hangs or crashes the device is reported,
and the next part runs in a fresh process); the report is rewritten after every part and every row, so whatever
stops the run leaves a report, whose path is printed at the end:

  tests    `pytest -m cuda tests/test_cuda.py`: ops and KO steps against the CPU, bf16/fp16, the fused AdamW,
           determinism, no host synchronisation, peak memory, CUDA-graph capture of whole KO steps
  ops      soft, dsmc and all (≈1 % of pairs accepted) on the head shapes of the README's Defaults table and at
           N = D = 768 and 4096, as ratios to one AdamW step over a bert-base-size model (random init from
           BertConfig(), no Hub needed); the extra peak memory of soft and dsmc at N = D = 4096 against the
           allocations traced on the meta device
  graphs   a bert-base-size KOAdamW(capturable=True, fused=True) step captured in a CUDA graph
           (ko_hf.cuda_graphs.CapturedStep): replay time against the eager step, replayed weights against eager ones
  trainer  KOTrainer training steps of the bert-base-size classifier in bf16: soft and hard (DSMC) against AdamW
           (adamw_torch_fused), in the same process, AdamW timed first and last
  ddp      on more than one visible GPU: torchrun over all of them, KO steps under DDP, ranks bitwise equal

`--device cpu --quick` runs every part the same way on the CPU with a tiny BERT and small shapes (the DDP part over
two gloo processes): a rehearsal of the code paths, whose figures say nothing about a GPU. `--parts ops,graphs`
runs some parts only.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402

PARTS = {  # name: (what, time limit in s on a GPU, in the quick rehearsal)
    "tests": ("`pytest -m cuda` (tests/test_cuda.py)", 210, 120),
    "ops": ("collision ops vs one AdamW step of the BERT; peak memory", 120, 90),
    "graphs": ("KO optimizer step captured in a CUDA graph vs eager", 120, 90),
    "trainer": ("KOTrainer steps in bf16, KO vs AdamW", 150, 120),
    "ddp": ("DDP on every visible GPU", 150, 120),
}
BUDGET = {"full": 470, "quick": 300}  # seconds for all parts; a part starts only with >= MIN_PART_S left
MIN_PART_S = 20

SIZES = {
    "full": dict(heads=[(7, 384, "MiniLM head"), (5, 384, "MiniLM head, 5 intents"), (7, 768, "BERT-style head"),
                        (2, 768, "two-class head"), (768, 768, "N = D = 768 (DistilBERT pre_classifier)"),
                        (4096, 4096, "N = D = 4096")],
                 memory_n=4096, repeats=11, batch=32, seq=128, warmup=3, steps=20),
    "quick": dict(heads=[(7, 384, "MiniLM head"), (2, 768, "two-class head"), (64, 64, "N = D = 64")],
                  memory_n=256, repeats=3, batch=8, seq=16, warmup=1, steps=3),
}
NUM_LABELS = 7


# ------------------------------------------------------------------ what every part shares


class PartReport:
    """A part's Markdown lines, written to its JSON file after every addition (a part killed by its time limit
    still leaves what it measured)."""

    def __init__(self, path: str | None) -> None:
        self.path, self.lines, self.summary, self.failures, self.skipped = path, [], "", [], ""

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.flush()

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.add(f"**FAILED: {message}**", "")

    def flush(self) -> None:
        if self.path:
            data = {"lines": self.lines, "summary": self.summary, "failures": self.failures, "skipped": self.skipped}
            tmp = f"{self.path}.tmp"
            Path(tmp).write_text(json.dumps(data))
            os.replace(tmp, self.path)


class Context:
    def __init__(self, device: str, quick: bool, report: PartReport) -> None:
        self.device, self.quick, self.report = device, quick, report
        self.sizes = SIZES["quick" if quick else "full"]

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def build_model(ctx: Context, seed: int = 0):
    """bert-base-size (BertConfig() defaults, random init) on a GPU run; a tiny BERT in the quick rehearsal."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from trainer_overhead import build_model as overhead_model

    torch.manual_seed(seed)
    if not ctx.quick:
        return overhead_model("bert-base", NUM_LABELS)
    return BertForSequenceClassification(BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=96,
                                                    max_position_embeddings=64, num_labels=NUM_LABELS))


def model_name(ctx: Context) -> str:
    return "tiny BERT (hidden 64, 2 layers)" if ctx.quick else "bert-base-size BERT (BertConfig() defaults, random init)"


def ko_settings() -> dict[str, tuple[str, float, str]]:
    """The settings compared: (collision, coef, pairing) at the library's defaults."""
    from ko_hf.settings import DEFAULT_COLL_COEF, ko_setting

    pairing = ko_setting("collision_pairing").default
    return {"adamw": ("none", 0.0, pairing), "soft": ("soft", DEFAULT_COLL_COEF["soft"], pairing),
            f"hard {pairing}": ("hard", DEFAULT_COLL_COEF["hard"], pairing)}


def optimizer_for(ctx: Context, model, setting: str, **kwargs):
    from ko_hf.settings import ko_setting
    from trainer_overhead import build_optimizer

    collision, coef, pairing = ko_settings()[setting]
    return build_optimizer(model, collision, coef, ko_setting("collision_distance_scale").default, pairing, **kwargs)


def fixed_gradients(model, seed: int = 0) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.grad = (1e-3 * torch.randn(param.shape, generator=gen)).to(param.device)


def steps_text(sizes: dict[str, Any]) -> str:
    warmup = sizes["warmup"]
    return f"{warmup} warm-up step{'s' if warmup != 1 else ''} then {sizes['steps']} timed"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


# ------------------------------------------------------------------ part: tests


def part_tests(ctx: Context) -> None:
    import pytest

    rows: list[str] = []
    counts: dict[str, int] = {}

    class Collector:
        def pytest_runtest_logreport(self, report):
            if report.when != "call" and report.outcome == "passed":
                return
            if report.when == "teardown" and report.outcome != "failed":
                return
            outcome = report.outcome if report.when == "call" or report.outcome == "skipped" else "error"
            counts[outcome] = counts.get(outcome, 0) + 1
            message = ""
            if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                message = report.longrepr[2]
            elif report.outcome != "passed":
                errors = [line for line in report.longreprtext.splitlines() if line.startswith("E ")]
                message = (errors[0][2:].strip() if errors else report.longreprtext.splitlines()[-1])[:200]
            name = report.nodeid.split("::", 1)[-1]
            rows.append(f"| `{name}` | {outcome} | {report.duration:.2f} s | {message.replace('|', '/')} |")
            ctx.report.summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            ctx.report.lines = [*header, *rows, ""]
            ctx.report.flush()

    header = ["| test | outcome | time | message |", "|---|---|---:|---|"]
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-m", "cuda", str(ROOT / "tests" / "test_cuda.py")],
                       plugins=[Collector()])
    if code not in (0, 5) or counts.get("failed") or counts.get("error"):
        ctx.report.fail(f"pytest exited with {int(code)}: {ctx.report.summary}")
    if not ctx.cuda:
        ctx.report.add("(No CUDA device: every test skips here; the rehearsal checks that they are collected.)")


# ------------------------------------------------------------------ part: ops


def adamw_step_seconds(ctx: Context) -> float:
    import torch

    from collision_speed import median_times

    model = build_model(ctx).to(ctx.device)
    fixed_gradients(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, fused=True)
    return median_times({"adamw": optimizer.step}, ctx.device, ctx.sizes["repeats"])["adamw"]


def part_ops(ctx: Context) -> None:
    import torch

    from collision_speed import DEFAULT_DISTANCE_SCALE, DSMC_COEF, SOFT_COEF, coef_for_fraction, make_data, median_times
    from ko_hf.collision import hard_collision, soft_collision
    from memory_trace import allocated_peak, collision_ops, traced_peak

    report, device = ctx.report, ctx.device
    adamw = adamw_step_seconds(ctx)
    report.add(f"One AdamW step (fused) over the {model_name(ctx)}: **{ms(adamw)}** (median of "
               f"{ctx.sizes['repeats']}); each op's time is also given as a ratio to it. soft: coef {SOFT_COEF}; "
               f"dsmc: coef {DSMC_COEF}, λ = {DEFAULT_DISTANCE_SCALE} (the defaults); all: λ = 1 and the coef that "
               "accepts ≤ 1 % of pairs on this data (as in collision_speed.py). Weight ~ N(0, 0.02²), grad ~ N(0, 1), "
               "fp32; medians, the three ops round-robin.", "",
               "| N × D | shape | soft | dsmc | all ≈1 % (coef) | soft / AdamW | dsmc / AdamW | all / AdamW |",
               "|---|---|---:|---:|---:|---:|---:|---:|")
    generator = torch.Generator(device=device)

    def seeded():
        return generator.manual_seed(0)

    for n, d, label in ctx.sizes["heads"]:
        w, g = make_data(n, d, device, seed=n + d)
        # coef_for_fraction needs two pairs; a two-row head has one, tested at hard collision's default coef
        coef = coef_for_fraction(w, g, 0.01)[0] if n * (n - 1) // 2 >= 2 else DSMC_COEF
        times = median_times({
            "soft": lambda: soft_collision(w, g, SOFT_COEF),
            "dsmc": lambda: hard_collision(w, g, DSMC_COEF, generator=seeded(), pairing="dsmc",
                                           distance_scale=DEFAULT_DISTANCE_SCALE),
            "all": lambda: hard_collision(w, g, coef, generator=seeded(), pairing="all"),
        }, device, ctx.sizes["repeats"])
        report.summary = f"AdamW step {ms(adamw)}; last row {n}×{d}: dsmc {times['dsmc'] / adamw:.3f}× AdamW"
        report.add(f"| {n} × {d} | {label} | {ms(times['soft'])} | {ms(times['dsmc'])} | {ms(times['all'])} "
                   f"({coef:.4f}) | {times['soft'] / adamw:.3f} | {times['dsmc'] / adamw:.3f} | "
                   f"{times['all'] / adamw:.3f} |")
        del w, g
    n = ctx.sizes["memory_n"]
    nd = n * n * 4
    report.add("", f"Extra peak memory of one call at N = D = {n} (N·D float32 = {nd / 2**20:.1f} MiB), the result "
                   "included; traced = the allocations of its tensor ops, recorded on the meta device; measured = "
                   "`torch.cuda.max_memory_allocated()` above what was allocated before the call.", "",
               "| op | traced | measured | measured / N·D |", "|---|---:|---:|---:|")
    w, g = make_data(n, n, device)
    for name, fn in collision_ops().items():
        traced = traced_peak(fn, n, n)
        if ctx.cuda:
            measured = allocated_peak(fn, w, g)
            cells = f"{measured / 2**20:.1f} MiB | {measured / nd:.2f}"
        else:
            cells = "— (CUDA only) | —"
        report.add(f"| {name} | {traced / 2**20:.1f} MiB | {cells} |")


# ------------------------------------------------------------------ part: graphs


def part_graphs(ctx: Context) -> None:
    import torch

    from collision_speed import median_times
    from ko_hf.cuda_graphs import CapturedStep

    report, device, repeats = ctx.report, ctx.device, ctx.sizes["repeats"]
    base = build_model(ctx).to(device)
    kwargs = dict(capturable=True, fused=True) if ctx.cuda else dict(fused=True)
    warmup = 3
    report.add(f"The optimizer step of the {model_name(ctx)}, KOAdamW({', '.join(f'{k}={v}' for k, v in kwargs.items())}"
               f"{', lr as a tensor' if ctx.cuda else ''}) with the settings' flagged head, on fixed gradients: "
               f"eager `optimizer.step()` against `CapturedStep(optimizer)` ({warmup} eager warm-up steps, one capture, "
               f"then replays; with statistics, as by default, and without). Medians of {repeats}. Both copies then "
               "take the same number of steps and their weights are compared."
               + ("" if ctx.cuda else " On the CPU the capture is rehearsed (RehearsalBackend): no graph, no "
                                      "speed-up."), "",
               "| setting | eager step | replay | replay, statistics off | eager / replay | max abs Δw vs eager |",
               "|---|---:|---:|---:|---:|---:|")

    def optimizer(model):
        extra = {"lr": torch.tensor(2e-5, device=device)} if ctx.cuda else {}
        return optimizer_for(ctx, model, setting, **kwargs, **extra)

    for setting in ko_settings():
        models = [copy.deepcopy(base) for _ in range(3)]
        for model in models:
            fixed_gradients(model)
        eager, captured, quiet = (optimizer(model) for model in models)
        replay, replay_quiet = CapturedStep(captured, warmup=warmup), CapturedStep(quiet, warmup=warmup,
                                                                                    statistics=False)
        times = median_times({"eager": eager.step, "replay": replay, "quiet": replay_quiet}, device, repeats,
                             warmup=warmup + 1)
        difference = max(float((a - b).abs().max()) for a, b in zip(models[0].parameters(), models[1].parameters()))
        report.summary = f"{setting}: eager / replay {times['eager'] / times['replay']:.2f}×"
        report.add(f"| {setting} | {ms(times['eager'])} | {ms(times['replay'])} | {ms(times['quiet'])} | "
                   f"{times['eager'] / times['replay']:.2f}× | {difference:.2e} |")
        scale = max(float(p.abs().max()) for p in models[0].parameters())
        if difference > 1e-5 * scale + 1e-6:
            report.fail(f"{setting}: the replayed weights differ from the eager ones by {difference:.2e}")
        del models, eager, captured, quiet, replay, replay_quiet


# ------------------------------------------------------------------ part: trainer


def part_trainer(ctx: Context) -> None:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from ko_hf import KOTrainer, KOTrainingArguments

    report, sizes = ctx.report, ctx.sizes
    steps = sizes["warmup"] + sizes["steps"]
    gen = torch.Generator().manual_seed(0)
    rows = steps * sizes["batch"]
    vocab = 1000 if ctx.quick else 30522
    data = Dataset.from_dict({
        "input_ids": torch.randint(1000 if not ctx.quick else 5, vocab, (rows, sizes["seq"]), generator=gen).tolist(),
        "attention_mask": [[1] * sizes["seq"]] * rows,
        "labels": torch.randint(NUM_LABELS, (rows,), generator=gen).tolist(),
    })
    sync = torch.cuda.synchronize if ctx.cuda else (lambda: None)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self.start)

    report.add(f"KOTrainer on the {model_name(ctx)}, bf16, optim adamw_torch_fused (the default), batch "
               f"{sizes['batch']} × {sizes['seq']} tokens of synthetic data, {steps_text(sizes)} "
               "(on_step_begin → on_step_end: forward, backward, clipping, optimizer step); "
               "each setting a fresh trainer on the same initial weights and batches, AdamW first and last.", "",
               "| setting | median step | min | max | ratio to AdamW (mean of both AdamW runs) |",
               "|---|---:|---:|---:|---:|")
    medians: dict[str, list[float]] = {}
    order = [*ko_settings(), "adamw"]
    with tempfile.TemporaryDirectory() as out:
        for setting in order:
            collision, coef, pairing = ko_settings()[setting]
            extra = dict(coll_coef=coef, collision_pairing=pairing) if collision != "none" else {}
            args = KOTrainingArguments(
                output_dir=out, collision=collision, **extra, bf16=True, use_cpu=not ctx.cuda,
                per_device_train_batch_size=sizes["batch"], max_steps=steps, logging_steps=steps,
                save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=0,
                learning_rate=2e-5, dataloader_num_workers=0)
            timer = StepTimer()
            trainer = KOTrainer(model=build_model(ctx), args=args, train_dataset=data, callbacks=[timer])
            trainer.train()
            timed = timer.times[sizes["warmup"]:]
            medians.setdefault(setting, []).append(statistics.median(timed))
            adamw = statistics.mean(medians["adamw"])
            report.add(f"| {setting}{' (again)' if len(medians[setting]) > 1 else ''} | {ms(medians[setting][-1])} "
                       f"| {ms(min(timed))} | {ms(max(timed))} | {medians[setting][-1] / adamw:.3f} |")
            del trainer
            if ctx.cuda:
                torch.cuda.empty_cache()
    adamw = statistics.mean(medians["adamw"])
    report.summary = ", ".join(f"{s} {statistics.mean(m) / adamw:.3f}×" for s, m in medians.items() if s != "adamw")
    report.add("", f"AdamW's two runs: {ms(medians['adamw'][0])} and {ms(medians['adamw'][-1])} "
                   "(their difference is the drift of the machine over the part).")


# ------------------------------------------------------------------ part: ddp


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def part_ddp(ctx: Context) -> None:
    import torch

    processes = torch.cuda.device_count() if ctx.cuda else 2
    if ctx.cuda and processes < 2:
        ctx.report.skipped = "one GPU visible"
        ctx.report.add("Skipped: one GPU visible, nothing to run data parallel over.")
        return
    result = Path(ctx.report.path).with_suffix(".ddp.json")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", free_port(), str(Path(__file__).resolve()),
               "--part", "ddp-worker", "--device", ctx.device, "--json", str(result)] + (["--quick"] if ctx.quick else [])
    completed = subprocess.run(command, capture_output=True, text=True)
    if result.exists():
        worker = json.loads(result.read_text())
        ctx.report.summary = worker["summary"]
        ctx.report.failures.extend(worker["failures"])
        ctx.report.add(*worker["lines"])
    if completed.returncode:
        ctx.report.fail(f"torchrun exited with {completed.returncode}")
        ctx.report.add("```", *completed.stderr.splitlines()[-30:], "```")


def part_ddp_worker(ctx: Context) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    cuda = ctx.cuda
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    sizes = ctx.sizes
    lines = [f"torchrun over {world} {'GPUs' if cuda else 'CPU processes (gloo)'}; the {model_name(ctx)} under "
             f"DistributedDataParallel, batch {sizes['batch']} × {sizes['seq']} tokens per rank (each rank its own "
             f"data), {'bf16 autocast, ' if cuda else ''}{steps_text(sizes)} "
             "(forward, backward with the all-reduce, clipping, KO step). After the steps every rank's weights are "
             "compared with rank 0's.", "",
             "| setting | median step | ratio to AdamW | ranks bitwise equal |", "|---|---:|---:|---|"]
    failures, medians = [], {}
    vocab = 1000 if ctx.quick else 30522
    for setting in ko_settings():
        model = build_model(ctx).to(device)
        parallel = DistributedDataParallel(model, device_ids=[local] if cuda else None)
        optimizer = optimizer_for(ctx, model, setting, fused=True)
        times = []
        for step in range(sizes["warmup"] + sizes["steps"]):
            gen = torch.Generator().manual_seed(1000 * rank + step)
            ids = torch.randint(5, vocab, (sizes["batch"], sizes["seq"]), generator=gen).to(device)
            labels = torch.randint(NUM_LABELS, (sizes["batch"],), generator=gen).to(device)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = parallel(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        medians[setting] = statistics.median(times[sizes["warmup"]:])
        if rank == 0:
            equal = all(torch.equal(flat, other) for other in gathered)
            if not equal:
                failures.append(f"{setting}: the ranks' weights differ")
            lines.append(f"| {setting} | {ms(medians[setting])} | {medians[setting] / medians['adamw']:.3f} | "
                         f"{'yes' if equal else '**no**'} |")
        del parallel, model, optimizer
    if rank == 0:
        ctx.report.summary = ", ".join(f"{s} {m / medians['adamw']:.3f}×" for s, m in medians.items() if s != "adamw")
        ctx.report.failures = failures
        ctx.report.add(*lines)
    dist.barrier()
    dist.destroy_process_group()


PART_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "tests": part_tests, "ops": part_ops, "graphs": part_graphs, "trainer": part_trainer, "ddp": part_ddp,
    "ddp-worker": part_ddp_worker,
}


def run_part(args: argparse.Namespace) -> int:
    """In the part's own process: run it, its report going to the JSON file the parent reads."""
    is_worker = args.part == "ddp-worker"
    rank = int(os.environ.get("RANK", 0))
    report = PartReport(args.json if not is_worker or rank == 0 else None)
    PART_FUNCTIONS[args.part](Context(args.device, args.quick, report))
    return 1 if report.failures else 0


# ------------------------------------------------------------------ the parent: runs the parts, writes the report


def machine_lines(device: str) -> list[str]:
    import torch
    import transformers

    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible; Python {platform.python_version()}, torch "
             f"{torch.__version__}, transformers {transformers.__version__}"]
    if device == "cuda":
        cards = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} "
                 f"GiB)" for i in range(torch.cuda.device_count())]
        lines.append(f"- GPU: {torch.cuda.device_count()} × {', '.join(sorted(set(cards)))}; CUDA {torch.version.cuda}"
                     + (f", driver {driver}" if (driver := nvidia_driver()) else ""))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if commit.returncode == 0:
        lines.append(f"- ko-hf commit {commit.stdout.strip()}")
    return lines


def nvidia_driver() -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def default_out(device: str, quick: bool) -> Path:
    if device == "cpu":
        return HERE / "results" / ("gpu_cpu-rehearsal.md" if quick else "gpu_cpu.md")
    import torch

    card = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    return HERE / "results" / f"gpu_{card}{'-quick' if quick else ''}.md"


class Report:
    def __init__(self, path: Path, title: str, header: list[str], parts: list[str]) -> None:
        self.path, self.title, self.header = path, title, header
        self.status = {name: ("not run yet", "") for name in parts}
        self.sections: dict[str, list[str]] = {}

    def write(self) -> None:
        lines = [f"# {self.title}", "", *self.header, "", "| part | what | status | time | result |",
                 "|---|---|---|---:|---|"]
        for name, (status, seconds) in self.status.items():
            summary = self.sections.get(name, [""])[0]
            lines.append(f"| {name} | {PARTS[name][0]} | {status} | {seconds} | {summary} |")
        for number, (name, body) in enumerate(self.sections.items(), 1):
            lines += ["", f"## {number}. {name}: {PARTS[name][0]}", "", *body[1:]]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines) + "\n")


def run_child(name: str, args: argparse.Namespace, limit: float, log) -> tuple[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--device", args.device,
                   "--json", str(result)] + (["--quick"] if args.quick else [])
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
        if args.device == "cpu":  # spinning OpenMP threads are many times slower on cores shared with other jobs
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        elif name != "ddp":  # one GPU (Trainer would wrap the model in DataParallel over several)
            env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        log.write(f"\n===== part {name}: {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            code = child.wait(timeout=limit)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            status = f"timed out after {limit:.0f} s"
        data = json.loads(result.read_text()) if result.exists() else {}
    if data.get("skipped") and status == "ok":
        status = f"skipped: {data['skipped']}"
    if data.get("failures") and status == "ok":
        status = "failed"
    return status, data


def log_tail(path: Path, lines: int = 25) -> list[str]:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    start = max((i for i, line in enumerate(text) if line.startswith("===== part ")), default=0)
    return text[start:][-lines:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes: a rehearsal of every part")
    parser.add_argument("--out", default=None, help="the Markdown report (default benchmarks/results/gpu_<card>.md)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for all parts (default {BUDGET['full']}, quick {BUDGET['quick']})")
    parser.add_argument("--part", choices=list(PART_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        return run_part(args)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"--parts {args.parts!r}: unknown {', '.join(map(repr, unknown)) or 'empty'}; "
                     f"valid: {', '.join(PARTS)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False); "
                     "use --device cpu --quick for the rehearsal")
    budget = args.budget if args.budget is not None else BUDGET["quick" if args.quick else "full"]
    out = Path(args.out) if args.out else default_out(args.device, args.quick)
    log_path = out.with_suffix(".log")
    if args.device == "cuda":
        title = f"GPU check: {torch.cuda.get_device_name(0)}{' (quick sizes)' if args.quick else ''}"
    else:
        title = ("GPU check rehearsed on the CPU (no GPU; tiny sizes: these figures say nothing about a GPU)"
                 if args.quick else "GPU check on the CPU (no GPU: these figures say nothing about a GPU)")
    started = time.time()
    header = [f"- command: `python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}`",
              f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
              *machine_lines(args.device),
              f"- 1-minute load average at the start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)",
              f"- each part ran in its own process with its own time limit, within a budget of {budget:.0f} s; "
              f"their output is in `{log_path.name}`"]
    report = Report(out, title, header, parts)
    report.write()
    failed = False
    with open(log_path, "w") as log:
        for name in parts:
            remaining = budget - (time.time() - started)
            if remaining < MIN_PART_S:
                failed = True
                report.status[name] = (f"not run: the budget of {budget:.0f} s was spent", "")
                report.write()
                continue
            limit = min(PARTS[name][2 if args.quick else 1], remaining)
            print(f"[gpu_check] {name} (limit {limit:.0f} s) ...", flush=True)
            began = time.time()
            status, data = run_child(name, args, limit, log)
            seconds = time.time() - began
            body = [data.get("summary", "")] + data.get("lines", [])
            if not status.startswith(("ok", "skipped")):
                failed = True
                log.flush()
                body += ["", f"Last lines of its output ({log_path.name}):", "", "```", *log_tail(log_path), "```"]
            report.status[name] = (status, f"{seconds:.1f} s")
            report.sections[name] = body
            report.write()
            print(f"[gpu_check] {name}: {status} ({seconds:.1f} s)", flush=True)
    print(f"[gpu_check] report: {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
