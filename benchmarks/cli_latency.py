"""How long `ko-finetune` takes to report a mistake: wall time from starting the process to its exit with `Error:`.

Each case starts a fresh `python -m ko_hf_cli ...` process (as a user's shell does) and is run `--repeats` times;
the median is reported. The baseline, measured in the same run, is the import a mistake used to wait for before
it was checked: `import ko_hf.finetune` (torch, transformers' Trainer, datasets). Target: under 2 s for the
mistakes the command line can see without loading anything (numbers, output folder, a busy folder, a mistyped
command); the ratio to the baseline is printed as well.

    HF_HUB_OFFLINE=1 python benchmarks/cli_latency.py [--repeats 5] [--output benchmarks/results/cli_latency_cpu.md]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    cli = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="ko-latency-"))
    (work / "a-file").write_text("x")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    (work / "busy").mkdir()
    (work / "busy" / ".ko-finetune.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
    ko = [sys.executable, "-m", "ko_hf_cli"]
    base = ["bert-base-cased", "--dataset", "demo"]
    cases = {
        "--epochs 0": [*ko, *base, "--epochs", "0", "-o", str(work / "o")],
        "--batch-size 0": [*ko, *base, "--batch-size", "0", "-o", str(work / "o")],
        "--lr -1": [*ko, *base, "--lr", "-1", "-o", str(work / "o")],
        "output folder is a file": [*ko, *base, "-o", str(work / "a-file")],
        "output folder in use by another run": [*ko, *base, "-o", str(work / "busy")],
        "mistyped command (trian)": [*ko, "trian", "--dataset", "demo"],
        "--set with an unreadable pair": [*ko, *base, "--set", "save_steps", "-o", str(work / "o")],
        "--collision elastic": [*ko, *base, "--collision", "elastic", "-o", str(work / "o")],
        "--set coll_coef=2": [*ko, *base, "--set", "coll_coef=2", "-o", str(work / "o")],
    }
    try:
        baseline = statistics.median(timed([sys.executable, "-c", "import ko_hf.finetune"], env)[0]
                                     for _ in range(cli.repeats))
        rows = []
        for name, command in cases.items():
            times, outputs = [], []
            for _ in range(cli.repeats):
                seconds, out = timed(command, env)
                times.append(seconds)
                outputs.append(out)
            last = outputs[-1]
            error = next((line for line in last.stderr.splitlines() if line.startswith("Error: ")), "(no Error line)")
            assert last.returncode == 2, (name, last.returncode, last.stderr[-500:])
            rows.append((name, statistics.median(times), min(times), max(times), error))
    finally:
        holder.kill()
        holder.wait()

    import torch

    from ko_hf.markdown import markdown_table

    table = markdown_table(
        ["mistake", "median (s)", "min (s)", "max (s)", "/ baseline", "first Error line"],
        [[name, f"{median:.2f}", f"{low:.2f}", f"{high:.2f}", f"{median / baseline:.2f}", error[:110].replace("|", "/")]
         for name, median, low, high, error in rows],
        align=["left", "right", "right", "right", "right", "left"])
    report = "\n".join([
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {sys.version.split()[0]}; "
        f"load average before: {os.getloadavg()[0]:.2f}; {cli.repeats} runs per case",
        f"baseline: `python -c 'import ko_hf.finetune'` median {baseline:.2f} s",
        "",
        table,
    ])
    print(report)
    if cli.output:
        cli.output.write_text(f"# Time to report a mistake (`ko-finetune`, CPU)\n\n- command: `HF_HUB_OFFLINE=1 python "
                              f"benchmarks/cli_latency.py --repeats {cli.repeats} --output {cli.output}`\n- "
                              f"date: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}\n\n```\n{report}\n```\n")


if __name__ == "__main__":
    main()
