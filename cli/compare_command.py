"""``ko-finetune compare``: the same model and data under several collision settings and seeds, with intervals.

Register on the Typer app with ``app.command("compare")(compare)``. Heavy imports (torch, transformers) happen
inside the command, so ``--help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.models import OptionInfo

from .common import FLAG, fail, quiet_libraries, recipe_names, say

class _SettingsOption(OptionInfo):
    """``--settings``, whose help lists the setting keys with what they take and their defaults: written from
    :mod:`ko_hf.settings` when the command is built (each invocation), not when this module is imported (importing
    the CLI loads no ko_hf module), so a setting added to the table is listed."""

    @property
    def help(self) -> str:
        from rich.markup import escape  # the help is rich markup: "[default: ...]" would read as a tag

        from ko_hf.compare.settings import settings_help

        return escape(settings_help())

    @help.setter
    def help(self, value: str | None) -> None:  # OptionInfo.__init__ sets it; the table has the last word
        pass


def compare(
    model: Annotated[Optional[str], typer.Argument(
        help="Pretrained encoder (folder or Hub id); overrides model_name_or_path of --config.", metavar="MODEL",
        show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="YAML recipe (FinetuneOptions + KOTrainingArguments keys) used as the base of "
                               "every run; its collision/coll_coef are replaced by each setting's.",
        metavar="FILE")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", "-d", help=f"{recipe_names()}; NAME=/local/path; a local file or folder; or a Hub id "
                                "(overrides dataset of --config).", show_default=False, metavar="NAME|PATH")] = None,
    settings: Annotated[Optional[list[str]], _SettingsOption(default=..., param_decls=("--settings", "-s"),
                                                             show_default=False, metavar="SPEC")] = None,
    seeds: Annotated[str, typer.Option(
        help="A count N (seeds 1..N) or a comma-separated list (1,2,3; a single seed: 7,).",
        metavar="N|LIST")] = "3",
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", "-o", help="Comparison folder: runs go to <dir>/<setting>/seed-<s>/ "
                                   r"\[default: output_dir of --config]", show_default=False, metavar="DIR")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="num_train_epochs.", show_default=False,
                                                    metavar="N")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop every run after this many steps.",
                                                     show_default=False, metavar="N")] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(show_default=False, metavar="N")] = None,
    max_eval_samples: Annotated[Optional[int], typer.Option(show_default=False, metavar="N")] = None,
    max_length: Annotated[Optional[int], typer.Option(show_default=False, metavar="N")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Per-device batch size, training and evaluation.",
                                                      show_default=False, metavar="N")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", show_default=False,
                                                           metavar="X")] = None,
    set_values: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Any other config key, KEY=VALUE (YAML value), repeatable: --set use_cpu=true.",
        show_default=False, metavar="KEY=VALUE")] = None,
    confidence: Annotated[float, typer.Option(help="Confidence level of the paired-difference intervals.",
                                              metavar="P")] = 0.95,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the comparison figure and the runs' "
                                                                   "model-card pictures.", metavar=FLAG)] = True,
    keep_checkpoints: Annotated[bool, typer.Option(
        "--keep-checkpoints", help="Keep the checkpoints (optimizer state included) of finished runs; by default "
                                   "only their final model, metrics, logs and card stay.", metavar=FLAG)] = False,
) -> None:
    """Fine-tune one model on one dataset under several collision settings and seeds; report mean ± std, the
    paired difference to AdamW with a t confidence interval, the head's weight correlation and the step-time
    ratio. Finished runs are skipped on a rerun; unfinished ones resume from their last complete checkpoint. The
    runs use the defaults of ko-finetune train (logging every 2 % of the steps, the last 2 checkpoints kept); a
    finished run's checkpoints are deleted (--keep-checkpoints keeps them)."""
    from ko_hf.run.preflight import check_run_settings, is_main_process, merge_settings
    from ko_hf.run.folder import lock_run_folder

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
        "plots": False if not plots else None,
    }
    try:  # before torch and transformers are imported: a mistake here is reported at once
        if not 0 < confidence < 1:
            raise ValueError(f"--confidence must be in (0, 1), got {confidence}")
        base: dict[str, Any] = merge_settings(config, flags, set_values or [])
        root = output_dir if output_dir is not None else base.get("output_dir")
        if not root:
            raise ValueError("give --output-dir (or output_dir: in --config): the comparison's runs and tables go "
                             "there")
        for key, where in (("model_name_or_path", "the MODEL argument"), ("dataset", "--dataset")):
            if not base.get(key):
                raise ValueError(f"no {key}: pass it ({where}) or set it in --config")
        check_run_settings({**base, "output_dir": str(root)})
        if is_main_process():
            lock_run_folder(root)  # held until the comparison ends; a second comparison here stops at once
    except ValueError as err:
        raise fail(err) from None

    quiet_libraries()
    from rich.console import Console

    from ko_hf.compare import ComparisonError, parse_seeds, parse_settings, run_comparison, summary_table
    from ko_hf.compare.settings import DEFAULT_SETTINGS, REPLACED_KEYS
    from ko_hf.data import DatasetError
    from ko_hf.finetune import FinetuneError

    user_errors = (ComparisonError, FinetuneError, DatasetError)
    console = Console()
    try:
        chosen = parse_settings(settings or DEFAULT_SETTINGS)
        seed_list = parse_seeds(seeds)
    except user_errors as err:
        raise fail(err) from None
    replaced = [k for k in REPLACED_KEYS if k in base]
    if replaced:
        say(f"note: {', '.join(replaced)} of the base config are replaced by each setting's")
    say(f"Comparing {', '.join(s.name for s in chosen)} on {base['model_name_or_path']} / {base['dataset']} with "
        f"seeds {', '.join(map(str, seed_list))} -> {root}")
    try:
        comparison = run_comparison(base, root, chosen, seed_list, confidence=confidence, plot=plots,
                                    progress=say if is_main_process() else None, keep_checkpoints=keep_checkpoints)
    except user_errors as err:  # bad config keys/values, dataset or model: caught before a run trains
        raise fail(err) from None
    if not is_main_process():
        return
    console.print(_console_table(*summary_table(comparison),
                                 title=f"{base['model_name_or_path']} on {base['dataset']}: {comparison.split} metrics"))
    console.print(f"mean ± sample std over seeds; Δ: paired (same seed) difference to {comparison.baseline} with "
                  f"its {round(100 * confidence)}% Student-t interval — one that contains 0 is no evidence of a "
                  "difference.", highlight=False)
    if comparison.missing:
        console.print(f"[yellow]missing runs:[/] {', '.join(comparison.missing)}", highlight=False)
    if diverged := comparison.diverged():
        console.print(f"[yellow]Warning: diverged runs[/] (NaN or inf loss or weights; their metrics are in the "
                      f"means above): {diverged}", highlight=False)
    console.print(f"wrote {Path(root) / 'comparison.md'} and {Path(root) / 'comparison.json'}"
                  + (f" and {comparison.figure}" if comparison.figure else
                     f" ({comparison.figure_note})" if comparison.figure_note else ""), highlight=False)


def _console_table(headers: list[str], rows: list[list[str]], title: str):
    """The summary with one column per setting and one row per measure: it fits an 80-column terminal (the
    markdown file keeps one row per setting)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("", overflow="fold")
    for row in rows:
        table.add_column(row[0], justify="right", overflow="fold")
    for index, header in enumerate(headers[1:], 1):
        table.add_row(header, *(row[index] for row in rows))
    return table
