"""Running a comparison: every (setting, seed) trained by one runner (:func:`ko_hf.finetune.finetune` by default)
into ``<output_dir>/<setting>/seed-<s>/``, then the report of what has finished.

A run is finished when its ``ko_result.json`` exists; a rerun skips it (after checking it ran with the same config
and the same resolved KO settings), and an unfinished run with checkpoints resumes from its last complete one. A
finished run keeps its final model, metrics, logs and model card; its checkpoints (optimizer state included: about
three times the model's size each) are deleted once its record is written, unless ``keep_checkpoints``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers.utils import logging

from .. import finetune as finetune_module
from ..run.checkpoints import CheckpointError, find_resume_checkpoint
from ..run.folder import CHECKPOINT_DIR, lock_run_folder, run_results
from ..run.preflight import RUN_DEFAULTS, is_main_process, truthy
from ..settings import ko_settings
from .identity import model_fingerprint, same_model
from .report import Comparison, plain, plot_comparison, summarize, write_comparison, write_json
from .settings import (
    DEFAULT_SEEDS,
    DEFAULT_SETTINGS,
    REPLACED_KEYS,
    CollisionSetting,
    ComparisonError,
    parse_setting,
    recorded_settings,
    resolved_settings,
    unique_seeds,
    unique_settings,
)

logger = logging.get_logger(__name__)

__all__ = ["RESULT_FILE", "collect_records", "finish_comparison", "prune_checkpoints", "run_comparison",
           "run_config"]

RESULT_FILE = "ko_result.json"

#: Keys that say where a run lives or how it was started, not what it computes: a comparison folder can be moved.
_LOCATION_KEYS = ("resume_from_checkpoint", "output_dir", "logging_dir")
#: A local model's path is a location too, but only once its files show it is the same model (.identity).
_MODEL_KEY = "model_name_or_path"


def _run_dir(output_dir: Path, setting: CollisionSetting, seed: int) -> Path:
    return output_dir / setting.dirname / f"seed-{seed}"


def run_config(base: Mapping[str, Any], setting: CollisionSetting, seed: int, run_dir: Path) -> dict[str, Any]:
    """The config of one run: ``base`` with the setting's collision keys, the seed and the run folder."""
    config = {k: v for k, v in base.items() if k not in REPLACED_KEYS}
    config.update(setting.config())
    config["seed"] = seed
    config["output_dir"] = str(run_dir)
    return config


def collect_records(output_dir: str | os.PathLike, settings: Sequence[CollisionSetting],
                    seeds: Sequence[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished runs' records and the names (``setting/seed-s``) of those not finished."""
    records, missing = [], []
    for seed in seeds:
        for setting in settings:
            path = _run_dir(Path(output_dir), setting, seed) / RESULT_FILE
            if path.is_file():
                records.append(json.loads(path.read_text(encoding="utf-8")))
            else:
                missing.append(f"{setting.dirname}/seed-{seed}")
    return records, missing


def _not_compared_as_config(key: str) -> bool:
    """Where a run is written, and the KO settings: those are compared resolved, with what a record that lacks one
    ran with (:func:`_changed_collision_args`), not as the config's text."""
    return key in _LOCATION_KEYS or key in {s.name for s in ko_settings()}


def _as_json(value: Any) -> Any:
    """``value`` as a record holds it after a JSON round trip (tuples as lists, enums as values)."""
    return json.loads(json.dumps(plain(value)))


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return _as_json({k: v for k, v in config.items() if not _not_compared_as_config(k)})


def _changed_collision_args(recorded: Mapping[str, Any], args: Any) -> list[str]:
    """The resolved KO settings that differ between a finished run's record and ``args``: each setting the run's
    collision type acts on (soft and no collision ignore the pairing), a setting the record lacks taken as what
    its absence meant (:func:`~ko_hf.compare.settings.recorded_settings`)."""
    recorded = recorded_settings(recorded)
    if not recorded or args is None:
        return []
    collision = recorded.get("collision")
    changed = []
    for setting in ko_settings():
        then, now = recorded.get(setting.name), getattr(args, setting.name, None)
        if then is None or collision not in setting.applies_to:
            continue
        if _as_json(then) != _as_json(now):
            changed.append(f"{setting.name}: {then!r} then, {now!r} now")
    return changed


def _final_ko_metrics(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last logged value of every ``ko/`` metric (the end-of-training log carries them)."""
    final: dict[str, float] = {}
    for entry in log_history or []:
        for key, value in entry.items():
            if key.startswith("ko/") and isinstance(value, (int, float)):
                final[key] = value
    return final


def _result_record(result: Any, setting: CollisionSetting, seed: int, config: Mapping[str, Any],
                   args: Any = None) -> dict[str, Any]:
    log_history = list(getattr(result, "log_history", None) or [])
    return plain({
        "setting": setting.name,
        "collision": setting.collision,
        "seed": seed,
        "config": dict(config),
        "model_fingerprint": model_fingerprint(config.get("model_name_or_path")),
        "collision_args": resolved_settings(args),
        "train_metrics": getattr(result, "train_metrics", None) or {},
        "eval_metrics": getattr(result, "eval_metrics", None) or {},
        "test_metrics": getattr(result, "test_metrics", None) or {},
        "label_names": list(getattr(result, "label_names", None) or []),
        "median_step_time": getattr(result, "median_step_time", None),
        "head_metrics": getattr(result, "head_metrics", None) or {},
        "head_layers": getattr(result, "head_layers", None) or {},
        "final_ko_metrics": _final_ko_metrics(log_history),
        "log_history": log_history,
        "diverged": bool(getattr(result, "diverged", False)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def run_comparison(
    base_config: Mapping[str, Any],
    output_dir: str | os.PathLike,
    settings: Sequence[str | CollisionSetting] = DEFAULT_SETTINGS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    runner: Callable[..., Any] | None = None,
    parse: Callable[[dict], tuple[Any, Any]] | None = None,
    confidence: float = 0.95,
    plot: bool = True,
    progress: Callable[[str], None] | None = None,
    defaults: Mapping[str, Any] | None = None,
    keep_checkpoints: bool = False,
) -> Comparison:
    """Train every (setting, seed) not finished yet, then write ``comparison.md`` / ``.json`` (and the figure).

    ``base_config``: a ``ko-finetune`` config mapping (FinetuneOptions + KOTrainingArguments keys); each run
    replaces ``collision``/``coll_coef`` with its setting's, ``seed`` with its seed and ``output_dir`` with
    ``<output_dir>/<setting>/seed-<s>``. ``runner(options, args)`` trains one run (default
    :func:`ko_hf.finetune.finetune`); ``parse(mapping)`` turns a config into ``(options, args)`` (default
    :func:`ko_hf.finetune.parse_config`). Every run's config is parsed before the first one trains, so a bad key
    or value fails at once. A run whose ``ko_result.json`` exists is skipped (its recorded config must match);
    an unfinished run resumes from its newest complete checkpoint (none complete: it starts again).

    ``defaults`` (default: :data:`ko_hf.run.preflight.RUN_DEFAULTS`, those of ``ko-finetune train``) fill in the keys
    a run's config does not set; they do not change results, so they are not part of its recorded config. With the
    default runner, ``progress`` also gets a few progress lines per run (step, ETA). The output folder is locked
    for the comparison (:func:`ko_hf.run.folder.lock_run_folder`). A run's checkpoints are deleted once it has
    finished (its record written), unless ``keep_checkpoints``; an unfinished run keeps them, to resume.
    """
    default_runner = runner is None
    runner = runner or finetune_module.finetune  # looked up now: a replaced ko_hf.finetune.finetune is used
    parse = parse or finetune_module.parse_config
    defaults = dict(RUN_DEFAULTS if defaults is None else defaults)
    say = progress or (lambda message: logger.info("%s", message))
    root = Path(output_dir)
    lock = lock_run_folder(root) if is_main_process() else None
    try:
        return _run_all(base_config, root, settings, seeds, runner=runner, parse=parse, confidence=confidence,
                        plot=plot, say=say, defaults=defaults, progress=progress if default_runner else None,
                        keep_checkpoints=keep_checkpoints)
    finally:
        if lock is not None:
            lock.release()


def _plan(base_config: Mapping[str, Any], root: Path, chosen: Sequence[CollisionSetting], seeds: Sequence[int],
          parse: Callable[[dict], tuple[Any, Any]], defaults: Mapping[str, Any]) -> list[tuple]:
    """(setting, seed, run folder, config, parsed arguments) of every run, each config parsed before any trains."""
    plan = []
    for seed in seeds:
        for setting in chosen:
            run_dir = _run_dir(root, setting, seed)
            config = run_config(base_config, setting, seed, run_dir)
            try:
                _, parsed = parse({**defaults, **config})
            except Exception as err:
                raise ComparisonError(f"setting {setting.name!r}, seed {seed}: {err}") from err
            plan.append((setting, seed, run_dir, config, parsed))
    return plan


def _check_finished(result_path: Path, config: Mapping[str, Any], parsed: Any) -> None:
    """A finished run is reused only if it ran with this config and these resolved KO settings."""
    record = json.loads(result_path.read_text(encoding="utf-8"))
    recorded = record.get("config")
    if recorded is not None and _comparable(recorded) != _comparable(config):
        changed = sorted(k for k in set(recorded) | set(config) if not _not_compared_as_config(k)
                         and _comparable({k: recorded.get(k)}) != _comparable({k: config.get(k)}))
        if _MODEL_KEY in changed and same_model(recorded.get(_MODEL_KEY), config.get(_MODEL_KEY),
                                                record.get("model_fingerprint")):
            changed.remove(_MODEL_KEY)  # the same model folder, found at another path
        if changed:
            hint = (f" ({_MODEL_KEY} {recorded.get(_MODEL_KEY)!r} then, {config.get(_MODEL_KEY)!r} now: a local "
                    "model counts as the same when its config.json and weight files are identical)"
                    if _MODEL_KEY in changed else "")
            raise ComparisonError(f"{result_path} was finished with a different config (keys {changed}){hint}; use "
                                  "another --output-dir or delete that run to redo it")
    changed = _changed_collision_args(record.get("collision_args") or {}, parsed)
    if changed:  # the same setting name, but the library's defaults have changed since
        raise ComparisonError(f"{result_path} was finished with other collision settings "
                              f"({'; '.join(changed)}; the defaults may have changed since); use another "
                              "--output-dir or delete that run to redo it")


def _run_all(base_config: Mapping[str, Any], root: Path, settings: Sequence[str | CollisionSetting],
             seeds: Sequence[int], *, runner: Callable[..., Any], parse: Callable[[dict], tuple[Any, Any]],
             confidence: float, plot: bool, say: Callable[[str], None], defaults: Mapping[str, Any],
             progress: Callable[[str], None] | None, keep_checkpoints: bool) -> Comparison:
    chosen = unique_settings([s if isinstance(s, CollisionSetting) else parse_setting(s) for s in settings])
    seeds = unique_seeds([int(s) for s in seeds], seeds)
    plan = _plan(base_config, root, chosen, seeds, parse, defaults)

    for index, (setting, seed, run_dir, config, parsed) in enumerate(plan, 1):
        result_path = run_dir / RESULT_FILE
        label = f"[{index}/{len(plan)}] {setting.name} seed {seed}"
        if result_path.is_file():
            _check_finished(result_path, config, parsed)
            say(f"{label}: finished earlier, skipped")
            continue
        checkpoint, why_not = _resume_point(run_dir, {**defaults, **config})
        run = dict(config)
        if checkpoint is not None:
            run["resume_from_checkpoint"] = checkpoint
            say(f"{label}: resuming from {checkpoint}")
        else:
            if run_results(run_dir):  # a run killed before its record: this comparison owns the folder
                run["overwrite_output_dir"] = True
            say(f"{label}: training into {run_dir}" + (f" from the start ({why_not})" if why_not else ""))
        options, args = parse({**defaults, **run})
        if progress is not None:  # the default runner, finetune: a few progress lines per run
            result = runner(options, args, progress=progress, progress_label=label)
        else:
            result = runner(options, args)
        if getattr(result, "is_world_process_zero", True) and is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(result_path, _result_record(result, setting, seed, config, args))
            if not keep_checkpoints:
                prune_checkpoints(run_dir)

    if not is_main_process():  # other ranks of a distributed launch trained along; rank 0 writes the files
        return summarize([], [s.name for s in chosen], confidence=confidence)
    return finish_comparison(base_config, root, chosen, seeds, confidence=confidence, plot=plot)


def finish_comparison(base_config: Mapping[str, Any], output_dir: str | os.PathLike,
                      settings: Sequence[CollisionSetting], seeds: Sequence[int], *, confidence: float = 0.95,
                      plot: bool = True) -> Comparison:
    """Summarize what is finished in ``output_dir`` and write the comparison files (also usable on partial runs)."""
    root = Path(output_dir)
    records, missing = collect_records(root, settings, seeds)
    comparison = summarize(records, [s.name for s in settings], confidence=confidence)
    comparison.missing = missing
    comparison.info = {
        "model": base_config.get("model_name_or_path"),
        "dataset": base_config.get("dataset"),
        "seeds": list(seeds),
        "output_dir": str(root),
        "settings_specs": [s.name for s in settings],
    }
    if plot:
        comparison.figure, comparison.figure_note = plot_comparison(records, settings, seeds, root)
    else:
        comparison.figure_note = "not drawn (plots disabled)"
    write_comparison(comparison, root)
    return comparison


def prune_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Delete the ``checkpoint-<step>`` folders of a finished run (what a resume would need, nothing of its result);
    returns their names."""
    pruned = sorted(p.name for p in Path(run_dir).iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name))
    for name in pruned:
        shutil.rmtree(Path(run_dir) / name)
    return pruned


def _resume_point(run_dir: Path, config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the newest complete checkpoint of an unfinished run, None) or (None, why none can be used)."""
    if not run_dir.is_dir() or not any(CHECKPOINT_DIR.match(p.name) for p in run_dir.iterdir()):
        return None, None
    try:
        allow = truthy(config.get("resume_incomplete_checkpoint", False))
        return find_resume_checkpoint(run_dir, allow_incomplete=allow).path, None
    except CheckpointError as err:
        logger.warning("%s", err)
        return None, "no complete checkpoint"
