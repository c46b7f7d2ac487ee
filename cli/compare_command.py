"""``ko-finetune compare``: the same model and data under several collision settings and seeds, with intervals.

Register on the Typer app with ``app.command("compare")(compare)``. Heavy imports (torch, transformers) happen
inside the command, so ``--help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

SETTINGS_HELP = (
    "Collision settings to compare, comma-separated or repeated: TYPE[:KEY=VALUE[:KEY=VALUE...]] with TYPE "
    "adamw (= none), soft or hard and KEY coef, lambda, pairing (dsmc or all), targets (+-separated, e.g. "
    "head+pooler) or include_self. Example: adamw,soft,hard,hard:pairing=all,hard:coef=0.8:lambda=1. Without a "
    "key a type uses the library default (hard: pairing dsmc, coef 0.2, lambda 0.05; soft: coef 0.1). "
    "[default: adamw,soft,hard]"
)


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML (``true``, ``1e-3``, ``[a, b]``), except that
    ``no``/``yes``/``on``/``off`` stay strings (the config parser turns them into booleans where a field wants one)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()  # YAML 1.1 reads no/yes/on/off as booleans: save_strategy=no means "no"
        out[key.strip()] = value
    return out


def compare(
    model: Annotated[Optional[str], typer.Argument(
        help="Pretrained encoder (folder or Hub id); overrides model_name_or_path of --config.",
        show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="YAML recipe (FinetuneOptions + KOTrainingArguments keys) used as the base of "
                               "every run; its collision/coll_coef are replaced by each setting's.")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", "-d", help="imdb, snips, demo; NAME=/local/path; a local file or folder; or a Hub id "
                                "(overrides dataset of --config).", show_default=False)] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--settings", "-s", help=SETTINGS_HELP,
                                                          show_default=False)] = None,
    seeds: Annotated[str, typer.Option(
        help="A count N (seeds 1..N) or a comma-separated list (1,2,3; a single seed: 7,).")] = "3",
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", "-o", help="Comparison folder: runs go to <dir>/<setting>/seed-<s>/ "
                                   "[default: output_dir of --config]", show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option(help="num_train_epochs.", show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop every run after this many steps.",
                                                     show_default=False)] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(show_default=False)] = None,
    max_eval_samples: Annotated[Optional[int], typer.Option(show_default=False)] = None,
    max_length: Annotated[Optional[int], typer.Option(show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Per-device batch size, training and evaluation.",
                                                      show_default=False)] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", show_default=False)] = None,
    set_values: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Any other config key, KEY=VALUE (YAML value), repeatable: --set use_cpu=true.",
        show_default=False)] = None,
    confidence: Annotated[float, typer.Option(help="Confidence level of the paired-difference intervals.")] = 0.95,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the comparison figure and the runs' "
                                                                   "model-card pictures.")] = True,
) -> None:
    """Fine-tune one model on one dataset under several collision settings and seeds; report mean ± std, the
    paired difference to AdamW with a t confidence interval, the head's weight correlation and the step-time
    ratio. Finished runs are skipped on a rerun; unfinished ones resume from their last checkpoint."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    error_console = Console(stderr=True)

    def fail(message: str) -> None:
        error_console.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(2)

    from ko_hf.compare import ComparisonError, parse_seeds, parse_settings, run_comparison, summary_table
    from ko_hf.data import DatasetError
    from ko_hf.finetune import FinetuneError, load_config_file

    user_errors = (ComparisonError, FinetuneError, DatasetError)

    try:
        chosen = parse_settings(settings or ["adamw,soft,hard"])
        seed_list = parse_seeds(seeds)
        if not 0 < confidence < 1:
            raise ComparisonError(f"--confidence must be in (0, 1), got {confidence}")
        base: dict[str, Any] = load_config_file(config) if config is not None else {}
    except user_errors as err:
        fail(str(err))
    flags = {
        "model_name_or_path": model,
        "dataset": dataset,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "max_train_samples": max_train_samples,
        "max_eval_samples": max_eval_samples,
        "max_length": max_length,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate,
    }
    base.update({k: v for k, v in flags.items() if v is not None})
    base.update(_parse_set(set_values or []))
    if not plots:
        base["plots"] = False
    replaced = [k for k in ("collision", "coll_coef") if k in base]
    if replaced:
        console.print(f"[dim]note: {', '.join(replaced)} of the base config are replaced by each setting's[/]")
    root = output_dir if output_dir is not None else base.get("output_dir")
    if not root:
        fail("give --output-dir (or output_dir: in --config): the comparison's runs and tables go there")
    for key in ("model_name_or_path", "dataset"):
        if not base.get(key):
            fail(f"no {key}: pass it ({'the MODEL argument' if key == 'model_name_or_path' else '--dataset'}) "
                 "or set it in --config")

    console.print(f"Comparing {', '.join(s.name for s in chosen)} on [bold]{base['model_name_or_path']}[/] / "
                  f"[bold]{base['dataset']}[/] with seeds {', '.join(map(str, seed_list))} -> {root}",
                  highlight=False)
    try:
        comparison = run_comparison(base, root, chosen, seed_list, confidence=confidence, plot=plots,
                                    progress=lambda message: console.print(message, highlight=False))
    except user_errors as err:  # bad config keys/values, dataset or model: caught before a run trains
        fail(str(err))

    headers, rows = summary_table(comparison)
    table = Table(title=f"{base['model_name_or_path']} on {base['dataset']}: {comparison.split} metrics")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"mean ± sample std over seeds; Δ: paired (same seed) difference to {comparison.baseline} with "
                  f"its {round(100 * confidence)}% Student-t interval — one that contains 0 is no evidence of a "
                  "difference.", highlight=False)
    if comparison.missing:
        console.print(f"[yellow]missing runs:[/] {', '.join(comparison.missing)}", highlight=False)
    console.print(f"wrote {Path(root) / 'comparison.md'} and {Path(root) / 'comparison.json'}"
                  + (f" and {comparison.figure}" if comparison.figure else
                     f" ({comparison.figure_note})" if comparison.figure_note else ""), highlight=False)
