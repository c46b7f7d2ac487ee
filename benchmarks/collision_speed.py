"""Speed and memory of ko_hf's collision functions, as ratios measured in one run.

    python benchmarks/collision_speed.py [--device cpu|cuda] [--quick] [--out PATH]

Prints (and writes as Markdown to benchmarks/results/collision_speed_<device>.md unless --out -):
  1. soft_collision at N = D = 768 against the matrix products it cannot avoid (w@w.T, g@g.T, S@g),
     timed alone with torch.mm in the same run (target <= 1.5x);
  2. hard_collision(pairing="dsmc") at N = D = 768 against soft_collision (target <= 1x), and
     hard_collision(pairing="all") with the coef that accepts ~1 % (<= 1 %) of pairs against soft (target <= 2x);
  3. extra peak memory (CPU: RSS peak delta in a fresh subprocess; CUDA: torch.cuda.max_memory_allocated):
     dsmc at N = 4096, D = 768 (O(N·D)), and all at N = 1024, D = 768, coef = 1 (every pair accepted, < 512 MiB);
  4. a table of soft, dsmc and all for N = 128 ... 4096 at D = 768.

Data: weight rows ~ N(0, 0.02^2) (transformers' init), gradient rows ~ N(0, 1); distance_scale = 1 (paper) for
all, and the library's defaults (coef, λ) for dsmc, whose cost does not depend on how many pairs it accepts.
Timings are medians of several repeats after warm-up; torch's thread count is left at its default.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
import time

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ko_hf.collision import (  # noqa: E402
    _acceptance_ratio,
    accepted_pair_fraction,
    hard_collision,
    soft_collision,
)

from ko_hf.settings import DEFAULT_COLL_COEF, ko_setting  # noqa: E402

D = 768
SOFT_COEF = DEFAULT_COLL_COEF["soft"]
DSMC_COEF = DEFAULT_COLL_COEF["hard"]
DEFAULT_DISTANCE_SCALE = ko_setting("collision_distance_scale").default
TARGET_FRACTION = 0.01


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device: str, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_times(fns: dict, device: str, repeats: int, warmup: int = 2) -> dict:
    """Medians of ``fns``, run round-robin (a, b, c, a, b, c, ...) so a load change hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_data(n: int, d: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = (0.02 * torch.randn(n, d, generator=gen)).to(device)
    g = torch.randn(n, d, generator=gen).to(device)
    return w, g


def coef_for_fraction(w: torch.Tensor, g: torch.Tensor, fraction: float) -> tuple[float, float]:
    """Largest coef (on a 1e-4 grid, rounded down) whose accepted-pair fraction is <= ``fraction``."""
    n = w.shape[0]
    ratio = _acceptance_ratio(w.float(), g.float(), 1.0)
    upper = ratio[torch.triu(torch.ones(n, n, dtype=torch.bool, device=ratio.device), diagonal=1)]
    # accepted iff ratio > 1 - coef: to accept <= fraction of pairs, 1 - coef >= the (1 - fraction) quantile.
    k = max(1, int(fraction * upper.numel()))
    threshold = float(torch.topk(upper, k + 1).values[-1])  # (k+1)-th largest: at most k strictly above it
    coef = 1.0 - threshold
    coef = float(int(coef * 1e4)) / 1e4  # round down: never accepts more than intended
    return coef, accepted_pair_fraction(w, g, coef)


def memory_child(n: int, d: int, device: str, pairing: str) -> dict:
    """Runs in a fresh process: extra peak memory of one hard_collision call (coef 1 for all, the default for dsmc)."""
    w, g = make_data(n, d, device)
    gen = torch.Generator(device=device).manual_seed(1)
    kwargs = {"pairing": "all"} if pairing == "all" else {"pairing": "dsmc", "distance_scale": DEFAULT_DISTANCE_SCALE}
    coef = 1.0 if pairing == "all" else DSMC_COEF
    hard_collision(w[:8], g[:8], coef, generator=gen, **kwargs)  # load kernels / lazy init with tiny inputs
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        out = hard_collision(w, g, coef, generator=gen, **kwargs)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        extra = torch.cuda.max_memory_allocated() - base
        method = "torch.cuda.max_memory_allocated() - memory_allocated() before the call"
    else:
        with open("/proc/self/statm") as f:
            rss_before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        out = hard_collision(w, g, coef, generator=gen, **kwargs)
        elapsed = time.perf_counter() - start
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        # peak_after - rss_before is >= the call's true extra peak (an upper bound if an earlier peak was higher).
        extra = peak_after - rss_before
        method = (
            "fresh subprocess: ru_maxrss after the call - current RSS before it "
            f"(peak RSS before the call was {(peak_before - rss_before) / 2**20:+.1f} MiB vs current)"
        )
    output_bytes = out.numel() * out.element_size()
    return {"extra_bytes": extra, "seconds": elapsed, "method": method, "output_bytes": output_bytes}


def measure_memory(n: int, d: int, device: str, pairing: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(n), "--device", device,
           "--pairing", pairing]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, table up to N = 1024")
    parser.add_argument("--out", default=None, help="Markdown output path ('-' for none)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pairing", default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, D, args.device, args.pairing)))
        return
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    repeats = 5 if args.quick else 11

    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    command = "python benchmarks/collision_speed.py " + " ".join(sys.argv[1:])
    machine = (
        f"{cpu_model()}, {os.cpu_count()} cores visible, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads (default)"
    )
    if device == "cuda":
        machine += f", GPU {torch.cuda.get_device_name()}"
    out("# Collision speed benchmark")
    out()
    out(f"- command: `{command.strip()}`")
    out(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    out(f"- machine: {machine}")
    out(f"- device: {device}; data: weight ~ N(0, 0.02²), grad ~ N(0, 1), fp32; all: distance_scale λ = 1; "
        f"dsmc: coef = {DSMC_COEF}, λ = {DEFAULT_DISTANCE_SCALE} (the defaults; its cost does not depend on "
        f"them); soft coef = {SOFT_COEF}; median of {repeats} repeats after 2 warm-ups, the compared ops run "
        f"round-robin; 1-min load average at start {os.getloadavg()[0]:.2f} (2 cores; other jobs may share them)")
    out()

    # 1. soft vs its unavoidable matrix products
    n = 768
    w, g = make_data(n, D, device)
    s = torch.randn(n, n, device=device)
    gen = torch.Generator(device=device)
    coef, frac = coef_for_fraction(w, g, TARGET_FRACTION)

    def run_hard(c=coef, w=w, g=g):
        gen.manual_seed(0)
        return hard_collision(w, g, c, generator=gen, pairing="all")

    def run_dsmc(w=w, g=g):
        gen.manual_seed(0)
        return hard_collision(w, g, DSMC_COEF, generator=gen, pairing="dsmc", distance_scale=DEFAULT_DISTANCE_SCALE)

    t = median_times(
        {
            "mm": lambda: (torch.mm(w, w.T), torch.mm(g, g.T), torch.mm(s, g)),
            "soft": lambda: soft_collision(w, g, SOFT_COEF),
            "dsmc": run_dsmc,
            "hard": run_hard,
        },
        device,
        repeats,
    )
    t_mm, t_soft, t_hard, t_dsmc = t["mm"], t["soft"], t["hard"], t["dsmc"]
    out(f"## 1. soft_collision, N = D = {n}")
    out()
    out("| op | median time | ratio |")
    out("|---|---:|---:|")
    out(f"| 3 × torch.mm (w@w.T, g@g.T, S@g) | {t_mm * 1e3:.2f} ms | 1.00 |")
    out(f"| soft_collision(coef={SOFT_COEF}) | {t_soft * 1e3:.2f} ms | **{t_soft / t_mm:.2f}×** (target ≤ 1.5×) |")
    out()

    # 2. hard vs soft (timed in the same round-robin as 1.)
    out(f"## 2. hard_collision vs soft_collision, N = D = {n}")
    out()
    out(f"dsmc tests and collides N/2 = {n // 2} candidate pairs whatever it accepts; for all, coef = "
        f"{coef:.4f} accepts {frac * 100:.3f} % of the {n * (n - 1) // 2} pairs "
        f"(≈ {round(frac * n * (n - 1) / 2)} pairs) on this data.")
    out()
    out("| op | median time | ratio to soft |")
    out("|---|---:|---:|")
    out(f"| soft_collision(coef={SOFT_COEF}) | {t_soft * 1e3:.2f} ms | 1.00 |")
    out(f"| hard_collision(pairing='dsmc', coef={DSMC_COEF}) | {t_dsmc * 1e3:.2f} ms | **{t_dsmc / t_soft:.2f}×** "
        "(target ≤ 1×) |")
    out(f"| hard_collision(pairing='all', coef={coef:.4f}) | {t_hard * 1e3:.2f} ms | **{t_hard / t_soft:.2f}×** "
        "(target ≤ 2×) |")
    out()

    # 3. memory: dsmc at the largest N, all with every pair accepted
    out("## 3. Extra peak memory of one call")
    out()
    mem = measure_memory(4096, D, device, "dsmc")
    extra_mib, nd_mib = mem["extra_bytes"] / 2**20, 4096 * D * 4 / 2**20
    out(f"- dsmc, N = 4096, D = {D}: **{extra_mib:.1f} MiB** = {extra_mib / nd_mib:.1f} × N·D float32 "
        f"({nd_mib:.0f} MiB; includes the result); the N×N Gram matrix alone would be "
        f"{4096 * 4096 * 4 / 2**20:.0f} MiB; time {mem['seconds'] * 1e3:.0f} ms")
    mem = measure_memory(1024, D, device, "all")
    extra_mib = mem["extra_bytes"] / 2**20
    out(f"- all, N = 1024, D = {D}, coef = 1 (all {1024 * 1023 // 2} pairs accepted): **{extra_mib:.1f} MiB** "
        f"(target < 512 MiB; includes the {mem['output_bytes'] / 2**20:.1f} MiB result) — "
        f"{'PASS' if extra_mib < 512 else 'FAIL'}; time of that single call {mem['seconds']:.2f} s (dominated by "
        f"drawing {1024 * 1023 // 2} × {D} normal numbers)")
    out(f"- method: {mem['method']}")
    out()

    # 4. scaling table
    sizes = [128, 256, 512, 1024] if args.quick else [128, 256, 512, 1024, 2048, 4096]
    out(f"## 4. Cost against N (D = {D})")
    out()
    out("`mm` = the 3 unavoidable products timed alone; dsmc at the default coef; all ≈1 % uses the per-N coef that "
        "accepts ≤ 1 % of pairs; all coef=1 accepts every pair (N ≤ 1024 only).")
    out()
    out("| N | 3 × mm | soft | soft / mm | dsmc | dsmc / soft | all ≈1 % (coef, accepted) | all ≈1 % / soft "
        "| all coef=1 | all coef=1 / soft |")
    out("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        reps = repeats if n <= 1024 else max(3, repeats // 3)
        w, g = make_data(n, D, device, seed=n)
        s = torch.randn(n, n, device=device)
        coef, frac = coef_for_fraction(w, g, TARGET_FRACTION)
        t = median_times(
            {
                "mm": lambda: (torch.mm(w, w.T), torch.mm(g, g.T), torch.mm(s, g)),
                "soft": lambda: soft_collision(w, g, SOFT_COEF),
                "dsmc": lambda: run_dsmc(w, g),
                "hard": lambda: run_hard(coef, w, g),
            },
            device,
            reps,
        )
        t_mm, t_soft, t_hard, t_dsmc = t["mm"], t["soft"], t["hard"], t["dsmc"]
        if n <= 1024:
            t_all = median_time(lambda: run_hard(1.0, w, g), device, max(3, reps // 3), warmup=1)
            all_cells = f"{t_all * 1e3:.1f} ms | {t_all / t_soft:.1f}×"
        else:
            all_cells = "— | —"
        out(f"| {n} | {t_mm * 1e3:.2f} ms | {t_soft * 1e3:.2f} ms | {t_soft / t_mm:.2f}× | {t_dsmc * 1e3:.2f} ms | "
            f"{t_dsmc / t_soft:.2f}× | {t_hard * 1e3:.2f} ms ({coef:.4f}, {frac * 100:.2f} %) | "
            f"{t_hard / t_soft:.2f}× | {all_cells} |")
    out()

    path = args.out
    if path is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"collision_speed_{device}.md")
    if path != "-":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"(written to {path})")


if __name__ == "__main__":
    main()
