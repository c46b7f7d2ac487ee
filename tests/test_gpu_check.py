"""benchmarks/gpu_check.py: the CPU rehearsal of every part, and what keeps a run going when a part fails."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))
import gpu_check  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def table_rows(text, heading):
    """The body rows (as lists of cells) of the table whose header line starts with ``heading``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 2:]:  # after the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_quick_rehearsal_runs_every_part_and_writes_the_report(tmp_path):
    out = tmp_path / "gpu_cpu.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"[gpu_check] report: {out}"
    text = out.read_text()
    assert text.startswith("# GPU check rehearsed on the CPU (no GPU; tiny sizes")
    parts = {row[0]: row for row in table_rows(text, "| part | what |")}
    assert list(parts) == list(gpu_check.PARTS)
    assert all(row[2] == "ok" for row in parts.values()), parts
    assert re.fullmatch(r"\d+ skipped", parts["tests"][4])  # every CUDA test collected, none run without a GPU
    # the rehearsed capture computes what the eager step computes, bit for bit
    graphs = table_rows(text, "| setting | eager step | replay |")
    assert [row[0] for row in graphs] == ["adamw", "soft", "hard dsmc"]
    assert all(float(row[-1]) == 0.0 for row in graphs)
    trainer = table_rows(text, "| setting | median step | min |")
    assert [row[0] for row in trainer] == ["adamw", "soft", "hard dsmc", "adamw (again)"]
    assert all(row[-1] == "yes" for row in table_rows(text, "| setting | median step | ratio to AdamW |"))
    assert (tmp_path / "gpu_cpu.log").exists()


def test_a_part_over_its_time_limit_is_killed_and_reported(tmp_path):
    args = argparse.Namespace(device="cpu", quick=True)
    with open(tmp_path / "log", "w") as log:
        status, data = gpu_check.run_child("trainer", args, 0.5, log)
    assert status.startswith("timed out after"), status
    assert data == {}  # killed before it reported anything


def test_a_failing_part_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    ran = []

    def run_child(name, args, limit, log):
        ran.append(name)
        if name == "ops":
            log.write("Traceback: the device fell over\n")
            return "failed (exit 1)", {"summary": "", "lines": ["half a table"]}
        return "ok", {"summary": f"{name} fine", "lines": [f"{name} measured"]}

    monkeypatch.setattr(gpu_check, "run_child", run_child)
    monkeypatch.setattr(gpu_check, "machine_lines", lambda device: ["- CPU: test"])
    out = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)])
    assert gpu_check.main() == 1
    assert ran == list(gpu_check.PARTS)
    text = out.read_text()
    assert "| ops | " in text and "failed (exit 1)" in text and "half a table" in text
    assert "Traceback: the device fell over" in text  # the tail of its output
    assert text.count("| ok |") == len(gpu_check.PARTS) - 1
    assert capsys.readouterr().out.strip().endswith(f"report: {out}")


def test_the_budget_leaves_later_parts_unrun_but_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_child", lambda name, args, limit, log: ("ok", {"summary": "", "lines": []}))
    monkeypatch.setattr(gpu_check, "machine_lines", lambda device: [])
    out = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--out", str(out), "--budget", "5"])
    assert gpu_check.main() == 1  # an incomplete check is not a passed one
    assert out.read_text().count("not run: the budget of 5 s was spent") == len(gpu_check.PARTS)


@pytest.mark.parametrize("argv,message", [
    (["--parts", "ops,nope"], "--parts 'ops,nope': unknown 'nope'; valid: tests, ops, graphs, trainer, ddp"),
    (["--device", "cuda"], "--device cuda, but torch sees no CUDA device"),
])
def test_bad_arguments_are_refused_with_what_is_valid(argv, message):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
