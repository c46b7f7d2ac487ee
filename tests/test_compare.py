"""ko_hf.compare and `ko-finetune compare`: the statistics against hand-computed values, the settings syntax,
resuming (runner calls counted with a fake runner), and a real comparison of a tiny BERT (2 settings x 2 seeds)."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import typer
from transformers import BertConfig, BertModel, BertTokenizerFast
from typer.testing import CliRunner

from ko_hf import settings as ko_settings
from ko_hf.compare import (
    _plot_layer,
    RESULT_FILE,
    ComparisonError,
    mean_std,
    paired_difference_ci,
    parse_seeds,
    parse_setting,
    parse_settings,
    render_markdown,
    run_comparison,
    student_t_quantile,
    summarize,
)
from ko_hf.finetune import parse_config
from ko_hf.trainer import DEFAULT_COLL_COEF, DEFAULT_DISTANCE_SCALE, DEFAULT_PAIRING

# ------------------------------------------------------------------ statistics


@pytest.mark.parametrize("df, expected", [(1, 12.706204736174704), (2, 4.302652729749464), (3, 3.182446305284263),
                                          (4, 2.7764451051977987), (9, 2.2621571628540993),
                                          (30, 2.0422724563012373), (10**6, 1.959966)])
def test_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, rel=1e-6)
    assert student_t_quantile(0.025, df) == pytest.approx(-expected, rel=1e-6)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 7, 15, 60, 500):
        for p in (0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995):
            assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_t_quantile_rejects_bad_input():
    with pytest.raises(ValueError, match="p must be"):
        student_t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_quantile(0.975, 0)


def test_mean_std_is_the_sample_std():
    stat = mean_std([1, 2, 3, 4])
    assert (stat.mean, stat.n) == (2.5, 4)
    assert stat.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, n-1 = 3
    one = mean_std([0.9])
    assert one.mean == 0.9 and math.isnan(one.std) and one.n == 1
    assert mean_std([]).n == 0 and math.isnan(mean_std([]).mean)


def test_paired_difference_ci_by_hand():
    a, b = [0.90, 0.92, 0.95], [0.89, 0.90, 0.91]
    diff = paired_difference_ci(a, b)
    # d = [0.01, 0.02, 0.04]: mean 0.07/3, sample sd sqrt(4.6667e-4 / 2), t(0.975, 2) = 4.302653
    mean, sd = 0.07 / 3, math.sqrt((0.01 - 0.07 / 3) ** 2 + (0.02 - 0.07 / 3) ** 2 + (0.04 - 0.07 / 3) ** 2) / math.sqrt(2)
    half = 4.302652729749464 * sd / math.sqrt(3)
    assert diff.mean == pytest.approx(mean)
    assert diff.std == pytest.approx(sd)
    assert (diff.low, diff.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert diff.low == pytest.approx(-0.0146125, abs=1e-6) and diff.high == pytest.approx(0.0612792, abs=1e-6)
    assert diff.n == 3 and not diff.excludes_zero
    ninety = paired_difference_ci(a, b, confidence=0.90)
    assert ninety.high - ninety.low < diff.high - diff.low


def test_paired_difference_ci_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.931, 0.925, 0.940, 0.936, 0.929], [0.925, 0.927, 0.931, 0.930, 0.921]
    d = [x - y for x, y in zip(a, b)]
    low, high = stats.t.interval(0.95, len(d) - 1, loc=sum(d) / len(d), scale=stats.sem(d))
    diff = paired_difference_ci(a, b)
    assert (diff.low, diff.high) == (pytest.approx(low), pytest.approx(high))
    assert diff.excludes_zero


def test_paired_difference_edge_cases():
    same = paired_difference_ci([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])  # identical differences: zero-width interval
    assert same.low == pytest.approx(0.1) and same.high == pytest.approx(0.1)
    single = paired_difference_ci([0.9], [0.8])
    assert single.mean == pytest.approx(0.1) and math.isnan(single.low) and single.n == 1
    assert single.to_dict()["low"] is None  # JSON has no NaN
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_ci([1, 2], [1])


# ------------------------------------------------------------------ settings and seeds


def test_settings_syntax():
    settings = parse_settings("adamw,soft, hard:coef=0.8:lambda=1")
    assert [s.name for s in settings] == ["adamw", "soft", "hard:coef=0.8:lambda=1"]
    assert settings[0].config() == {"collision": "none"}
    assert settings[1].config() == {"collision": "soft"}  # no coef: the library default
    assert settings[2].config() == {"collision": "hard", "coll_coef": 0.8, "collision_distance_scale": 1.0}
    assert settings[2].dirname == "hard_coef-0.8_lambda-1"
    pooler = parse_setting("soft:targets=head+pooler:include_self=true")
    assert pooler.config() == {"collision": "soft", "collision_targets": ["head", "pooler"],
                               "collision_include_self": True}
    assert [s.name for s in parse_settings(["none", "hard"])] == ["none", "hard"]


def test_settings_express_pairing_and_coefs():
    old, dsmc, soft = parse_settings("hard:pairing=all,hard:pairing=dsmc:coef=0.3,soft:coef=0.7")
    assert old.config() == {"collision": "hard", "collision_pairing": "all"} and old.dirname == "hard_pairing-all"
    assert dsmc.config() == {"collision": "hard", "collision_pairing": "dsmc", "coll_coef": 0.3}
    assert dsmc.dirname == "hard_pairing-dsmc_coef-0.3" and dsmc.describe() == "hard, pairing=dsmc, coef=0.3"
    assert soft.config() == {"collision": "soft", "coll_coef": 0.7}
    options, args = parse_config({**BASE, "output_dir": "x", **dsmc.config()})
    assert (args.collision, args.collision_pairing, args.coll_coef) == ("hard", "dsmc", 0.3)


def test_finished_run_is_not_reused_once_the_defaults_it_ran_with_have_changed(tmp_path):
    """A record of ko-hf 0.1 says collision "hard" and no pairing: it paired as "all", which is not today's "hard"."""
    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["hard"], [1], runner=runner, parse=parse_config, plot=False)
    record_path = tmp_path / "hard" / "seed-1" / RESULT_FILE
    record = json.loads(record_path.read_text())
    assert record["collision_args"]["collision_pairing"] == DEFAULT_PAIRING
    del record["collision_args"]["collision_pairing"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(ComparisonError, match=r"other collision settings \(collision_pairing: 'all' then, 'dsmc' now"):
        run_comparison(BASE, tmp_path, ["hard"], [1], runner=runner, parse=parse_config, plot=False)
    run_comparison(BASE, tmp_path / "old", ["hard:pairing=all"], [1], runner=runner, parse=parse_config, plot=False)
    record = json.loads((tmp_path / "old" / "hard_pairing-all" / "seed-1" / RESULT_FILE).read_text())
    del record["collision_args"]["collision_pairing"]
    (tmp_path / "old" / "hard_pairing-all" / "seed-1" / RESULT_FILE).write_text(json.dumps(record))
    run_comparison(BASE, tmp_path / "old", ["hard:pairing=all"], [1], runner=runner, parse=parse_config, plot=False)
    assert len(runner.calls) == 2  # the 0.1-style "all" record is reused


def test_a_0_2_record_is_reused_when_the_form_it_ran_with_is_named(tmp_path):
    """A 0.2 record has no collision_form (it ran the paper's form). Naming that form in the base config (as
    benchmarks/study/study.py does) reuses it; the config's text is not compared for KO settings, their resolved
    values are."""
    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False)
    path = tmp_path / "soft" / "seed-1" / RESULT_FILE
    record = json.loads(path.read_text())
    del record["collision_args"]["collision_form"]
    path.write_text(json.dumps(record))
    paper = {**BASE, "collision_form": "paper"}
    run_comparison(paper, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False)
    assert len(runner.calls) == 1  # reused
    with pytest.raises(ComparisonError, match=r"other collision settings \(collision_form: 'paper' then, 'bounded'"):
        run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False)


@pytest.mark.parametrize("spec, why", [("sft", "unknown type 'sft'"), ("hard:coef=1.5", "coef must be in"),
                                       ("hard:coef", "not KEY=VALUE"), ("hard:speed=2", "unknown key 'speed'"),
                                       ("adamw:coef=0.1", "takes no options"), ("soft:coef=x", "must be a number"),
                                       ("hard:coef=0.7:coef=0.8", "given twice"), ("soft/x", "only letters"),
                                       ("hard:pairing=pairs", r"pairing must be one of dsmc\|all")])
def test_bad_setting_names_spec_and_valid_forms(spec, why):
    with pytest.raises(ComparisonError, match=why) as err:
        parse_setting(spec)
    assert repr(spec) in str(err.value) and "valid forms" in str(err.value)


def test_examples_of_the_help_and_the_errors_parse():
    from ko_hf.compare.settings import EXAMPLES, setting_forms, settings_help

    assert [s.name for s in parse_settings(list(EXAMPLES))] == list(EXAMPLES)
    for example in EXAMPLES:
        assert example in settings_help() and repr(example) in setting_forms()


def test_setting_parser_imports_neither_torch_nor_transformers():
    """The CLI builds `compare --help` from it."""
    import subprocess
    import sys

    code = ("import sys; from ko_hf.compare import parse_setting, SETTING_FORMS; "
            "from ko_hf.compare.settings import settings_help; settings_help(); parse_setting('hard:coef=0.5'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_duplicate_settings_rejected():
    with pytest.raises(ComparisonError, match="given twice"):
        parse_settings("soft,hard,soft")


def test_seeds_syntax():
    assert parse_seeds("3") == [1, 2, 3]
    assert parse_seeds(2) == [1, 2]
    assert parse_seeds("1,5,9") == [1, 5, 9]
    assert parse_seeds("7,") == [7]
    for bad in ("0", "x", "1,1", "a,b"):
        with pytest.raises(ComparisonError, match="bad seeds"):
            parse_seeds(bad)


# ------------------------------------------------------------------ the runner, with a fake


BASE = {"model_name_or_path": "tiny-model", "dataset": "demo", "use_cpu": True, "report_to": "none",
        "max_steps": 2, "save_strategy": "no"}
ACCURACY = {"none": 0.90, "soft": 0.91, "hard": 0.93}


class FakeRunner:
    """Stands in for finetune(): deterministic metrics from (collision, seed); counts and records its calls."""

    def __init__(self):
        self.calls = []
        self.args = []

    def __call__(self, options, args, **finetune_keywords):
        self.calls.append((args.collision, args.seed, args.coll_coef, args.resume_from_checkpoint, args.output_dir))
        self.args.append(args)
        accuracy = ACCURACY[args.collision] + 0.01 * args.seed * (args.collision == "hard")
        history = [{"loss": 1.0, "step": 1, "ko/weight_correlation": 0.5},
                   {"train_loss": 0.9, "step": 2, "ko/weight_correlation": 0.2 if args.collision == "none" else 0.1}]
        return SimpleNamespace(
            output_dir=args.output_dir, train_metrics={"train_loss": 0.9},
            eval_metrics={"eval_accuracy": accuracy, "eval_macro_f1": accuracy - 0.05},
            test_metrics={"test_accuracy": accuracy, "test_macro_f1": accuracy - 0.05}, label_names=["a", "b"],
            median_step_time=0.1 * (1.5 if args.collision == "hard" else 1.0), log_history=history,
            card_path=None, metrics_path=None, head_metrics={}, is_world_process_zero=True)


def test_fake_comparison_tables_and_resume(tmp_path):
    runner = FakeRunner()
    comparison = run_comparison(BASE, tmp_path, ["adamw", "hard"], [1, 2], runner=runner, parse=parse_config,
                                plot=False)
    assert len(runner.calls) == 4
    assert {(c[0], c[1]) for c in runner.calls} == {("none", 1), ("none", 2), ("hard", 1), ("hard", 2)}
    assert all(Path(c[4]).name.startswith("seed-") for c in runner.calls)
    assert (tmp_path / "hard" / "seed-2" / RESULT_FILE).is_file()

    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["baseline"] == "adamw" and data["split"] == "test" and data["seeds"] == [1, 2]
    adamw, hard = data["settings"]
    assert adamw["accuracy"]["mean"] == pytest.approx(0.90) and adamw["is_baseline"]
    assert hard["accuracy"]["mean"] == pytest.approx(0.945) and hard["accuracy"]["std"] == pytest.approx(0.01 / 2**0.5)
    # differences 0.04 and 0.05: mean 0.045, sd 0.00707, t(0.975, 1) = 12.706
    assert hard["accuracy_diff"]["mean"] == pytest.approx(0.045)
    assert hard["accuracy_diff"]["high"] == pytest.approx(0.045 + 12.7062047 * 0.00707107 / 2**0.5, rel=1e-5)
    assert hard["macro_f1_diff"]["mean"] == pytest.approx(0.045)
    assert hard["weight_correlation"]["mean"] == pytest.approx(0.1)
    assert adamw["weight_correlation"]["mean"] == pytest.approx(0.2)
    assert hard["step_time_ratio"]["mean"] == pytest.approx(1.5)
    assert len(data["runs"]) == 4 and data["missing_runs"] == []

    md = (tmp_path / "comparison.md").read_text()
    for column in ("setting", "test accuracy (%)", "Δ accuracy vs adamw (95% CI)", "test macro-F1 (%)",
                   "Δ macro-F1 vs adamw (95% CI)", "head weight corr.", "step time / adamw"):
        assert column in md
    coef, scale = DEFAULT_COLL_COEF["hard"], DEFAULT_DISTANCE_SCALE  # "hard" alone: the library defaults
    pairing = DEFAULT_PAIRING
    assert (f"| hard | hard, coef={coef}, λ={scale}, pairing={pairing}, form=bounded | 2 | 94.50 ± 0.71 | "
            "+4.50 [-1.85, +10.85] |" in md)
    assert comparison.settings[1].differences["accuracy"].n == 2

    # a rerun trains nothing; a deleted result is redone; a new seed trains only its runs
    run_comparison(BASE, tmp_path, ["adamw", "hard"], [1, 2], runner=runner, parse=parse_config, plot=False)
    assert len(runner.calls) == 4
    (tmp_path / "adamw" / "seed-1" / RESULT_FILE).unlink()
    run_comparison(BASE, tmp_path, ["adamw", "hard"], [1, 2, 3], runner=runner, parse=parse_config, plot=False)
    assert [(c[0], c[1]) for c in runner.calls[4:]] == [("none", 1), ("none", 3), ("hard", 3)]
    assert json.loads((tmp_path / "comparison.json").read_text())["settings"][1]["accuracy"]["n"] == 3


def write_checkpoint(folder: Path) -> Path:
    """A checkpoint folder with every file a resume needs (tiny contents)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    torch.save({}, folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_unfinished_run_resumes_from_its_last_checkpoint(tmp_path):
    runner = FakeRunner()
    for step in (2, 4):
        write_checkpoint(tmp_path / "soft" / "seed-1" / f"checkpoint-{step}")
    run_comparison(BASE, tmp_path, ["adamw", "soft"], [1], runner=runner, parse=parse_config, plot=False)
    resumes = {(c[0], c[1]): c[3] for c in runner.calls}
    assert resumes[("none", 1)] is None
    assert resumes[("soft", 1)] == str(tmp_path / "soft" / "seed-1" / "checkpoint-4")
    record = json.loads((tmp_path / "soft" / "seed-1" / RESULT_FILE).read_text())
    assert "resume_from_checkpoint" not in record["config"] and record["config"]["seed"] == 1


def test_half_written_newest_checkpoint_is_skipped(tmp_path, caplog):
    from transformers.utils import logging as hf_logging

    runner = FakeRunner()
    run_dir = tmp_path / "soft" / "seed-1"
    write_checkpoint(run_dir / "checkpoint-2")
    newest = write_checkpoint(run_dir / "checkpoint-4")  # killed while saving: weights cut, no trainer state
    (newest / "model.safetensors").write_bytes((newest / "model.safetensors").read_bytes()[:20])
    (newest / "trainer_state.json").unlink()
    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False)
    hf_logging.disable_propagation()
    assert runner.calls[0][3] == str(run_dir / "checkpoint-2")
    assert f"skipping checkpoint {newest}" in caplog.text


def test_run_without_a_complete_checkpoint_starts_again(tmp_path):
    runner = FakeRunner()
    run_dir = tmp_path / "soft" / "seed-1"
    broken = write_checkpoint(run_dir / "checkpoint-2")
    (broken / "optimizer.pt").write_bytes(b"PK")
    messages = []
    run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False,
                   progress=messages.append)
    assert runner.calls[0][3] is None and runner.args[0].resume_from_checkpoint is None
    assert "from the start (no complete checkpoint)" in messages[0]


class CheckpointingRunner(FakeRunner):
    """A fake run that leaves what a real one leaves: checkpoints with optimizer state, and its final model."""

    def __call__(self, options, args, **finetune_keywords):
        out = Path(args.output_dir)
        for step in (1, 2):
            write_checkpoint(out / f"checkpoint-{step}")
        (out / "model.safetensors").write_bytes(b"final weights")
        (out / "all_results.json").write_text("{}")
        return super().__call__(options, args, **finetune_keywords)


def test_finished_runs_keep_their_model_not_their_checkpoints(tmp_path):
    run_comparison(BASE, tmp_path / "pruned", ["adamw", "soft"], [1], runner=CheckpointingRunner(), parse=parse_config,
                   plot=False)
    for setting in ("adamw", "soft"):
        run_dir = tmp_path / "pruned" / setting / "seed-1"
        assert sorted(p.name for p in run_dir.iterdir()) == ["all_results.json", RESULT_FILE, "model.safetensors"]
    run_comparison(BASE, tmp_path / "kept", ["adamw"], [1], runner=CheckpointingRunner(), parse=parse_config,
                   plot=False, keep_checkpoints=True)
    assert (tmp_path / "kept" / "adamw" / "seed-1" / "checkpoint-2" / "optimizer.pt").is_file()


def test_an_unfinished_run_keeps_its_checkpoints_to_resume(tmp_path):
    class Killed(CheckpointingRunner):
        def __call__(self, options, args, **finetune_keywords):
            super().__call__(options, args, **finetune_keywords)
            raise KeyboardInterrupt  # killed after its checkpoints, before its record

    with pytest.raises(KeyboardInterrupt):
        run_comparison(BASE, tmp_path, ["soft"], [1], runner=Killed(), parse=parse_config, plot=False)
    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_config, plot=False)
    assert runner.calls[0][3] == str(tmp_path / "soft" / "seed-1" / "checkpoint-2")
    assert not (tmp_path / "soft" / "seed-1" / "checkpoint-2").exists()  # finished now: pruned


def test_compare_command_keeps_checkpoints_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr("ko_hf.finetune.finetune", CheckpointingRunner())
    for flags, kept in (([], False), (["--keep-checkpoints"], True)):
        out = tmp_path / f"cmp-{kept}"
        result = CliRunner().invoke(_app(), [
            "compare", "tiny-model", "--dataset", "demo", "-s", "adamw", "--seeds", "1,", "-o", str(out),
            "--set", "use_cpu=true", "--no-plots", *flags])
        assert result.exit_code == 0, result.output
        assert (out / "adamw" / "seed-1" / "checkpoint-2").is_dir() is kept


def test_runs_use_the_defaults_of_train(tmp_path):
    from ko_hf.run.preflight import RUN_DEFAULTS

    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["adamw"], [1], runner=runner, parse=parse_config, plot=False)
    args = runner.args[0]
    assert args.logging_steps == RUN_DEFAULTS["logging_steps"] == 0.02  # was 500: one point per curve
    assert args.save_total_limit == RUN_DEFAULTS["save_total_limit"] == 2  # was: every checkpoint kept
    assert args.report_to == [] and args.logging_nan_inf_filter is False
    record = json.loads((tmp_path / "adamw" / "seed-1" / RESULT_FILE).read_text())
    assert "logging_steps" not in record["config"]  # defaults are not part of what a run computes


def test_comparison_folder_in_use_stops_at_once(tmp_path):
    from test_run_folder import holding_lock

    from ko_hf.finetune import FinetuneError

    with holding_lock(tmp_path) as pid:
        runner = FakeRunner()
        with pytest.raises(FinetuneError, match=f"in use by another run: pid {pid}"):
            run_comparison(BASE, tmp_path, ["adamw"], [1], runner=runner, parse=parse_config, plot=False)
        assert runner.calls == []


def test_finished_run_with_another_config_is_not_reused(tmp_path):
    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["adamw"], [1], runner=runner, parse=parse_config, plot=False)
    with pytest.raises(ComparisonError, match=r"different config \(keys \['max_steps'\]\)"):
        run_comparison({**BASE, "max_steps": 5}, tmp_path, ["adamw"], [1], runner=runner, parse=parse_config,
                       plot=False)
    assert len(runner.calls) == 1


def _model_folder(path, weights=b"weights"):
    path.mkdir(parents=True)
    path.joinpath("config.json").write_text('{"model_type": "bert"}')
    path.joinpath("model.safetensors").write_bytes(weights)
    path.joinpath("tokenizer.json").write_text("{}")
    return str(path)


def _compare_on(tmp_path, model, runner):
    return run_comparison({**BASE, "model_name_or_path": model}, tmp_path / "runs", ["adamw"], [1], runner=runner,
                          parse=parse_config, plot=False)


def _one_finished_run(tmp_path, folder):
    """A comparison of one run on a model folder made at ``tmp_path / folder``; its runner."""
    runner = FakeRunner()
    _compare_on(tmp_path, _model_folder(tmp_path / folder), runner)
    return runner


def test_finished_run_of_the_same_model_at_another_path_is_reused(tmp_path):
    """A committed study continued from another virtual environment: the packaged model sits at another path."""
    runner = _one_finished_run(tmp_path, "venv-a/model")
    record = json.loads(next((tmp_path / "runs").glob(f"*/seed-1/{RESULT_FILE}")).read_text())
    assert record["model_fingerprint"].startswith("sha256:")
    shutil.rmtree(tmp_path / "venv-a")  # the first environment is gone: only the record's fingerprint is left
    second = _model_folder(tmp_path / "venv-b" / "model")
    tmp_path.joinpath("venv-b", "model", "tokenizer.json").write_text('{"other": "tokenizer files do not count"}')
    _compare_on(tmp_path, second, runner)
    assert len(runner.calls) == 1


def test_finished_run_of_another_model_at_another_path_is_not_reused(tmp_path):
    runner = _one_finished_run(tmp_path, "a")
    for other in (_model_folder(tmp_path / "b", weights=b"other weights"), "some-org/some-model"):
        with pytest.raises(ComparisonError, match=r"different config \(keys \['model_name_or_path'\]\) "
                                                  r"\(model_name_or_path '.*a' then, '.*' now"):
            _compare_on(tmp_path, other, runner)
    assert len(runner.calls) == 1


def test_record_without_fingerprint_is_fingerprinted_from_its_recorded_path(tmp_path):
    runner = _one_finished_run(tmp_path, "a")
    result = next((tmp_path / "runs").glob(f"*/seed-1/{RESULT_FILE}"))
    record = json.loads(result.read_text())
    del record["model_fingerprint"]  # as ko-hf wrote its records before it kept fingerprints
    result.write_text(json.dumps(record))
    second = _model_folder(tmp_path / "b")
    _compare_on(tmp_path, second, runner)
    assert len(runner.calls) == 1
    shutil.rmtree(tmp_path / "a")  # nothing left to tell: not reused
    with pytest.raises(ComparisonError, match="model_name_or_path"):
        _compare_on(tmp_path, second, runner)


def test_moved_comparison_with_only_its_result_files_is_reused(tmp_path):
    runner = FakeRunner()
    run_comparison(BASE, tmp_path / "here", ["adamw", "soft"], [1], runner=runner, parse=parse_config, plot=False)
    for result in (tmp_path / "here").glob(f"*/seed-*/{RESULT_FILE}"):  # e.g. committed without the models
        target = tmp_path / "there" / result.relative_to(tmp_path / "here")
        target.parent.mkdir(parents=True)
        target.write_bytes(result.read_bytes())
    comparison = run_comparison(BASE, tmp_path / "there", ["adamw", "soft"], [1], runner=runner, parse=parse_config,
                                plot=False)
    assert len(runner.calls) == 2
    assert comparison.settings[1].metrics["accuracy"].mean == pytest.approx(ACCURACY["soft"])


def test_bad_config_fails_before_any_run(tmp_path):
    runner = FakeRunner()
    with pytest.raises(ComparisonError, match="learning_rte"):
        run_comparison({**BASE, "learning_rte": 1e-3}, tmp_path, ["adamw", "hard"], [1, 2], runner=runner,
                       parse=parse_config, plot=False)
    with pytest.raises(ComparisonError, match="'hard:lambda=-1'"):
        parse_settings("adamw,hard:lambda=-1")
    assert runner.calls == []


def test_summarize_without_baseline_and_on_validation():
    records = [{"setting": "soft", "collision": "soft", "seed": s, "test_metrics": None, "config": {"coll_coef": 0.1},
                "eval_metrics": {"eval_accuracy": 0.8 + s / 100, "eval_macro_f1": 0.7}} for s in (1, 2)]
    comparison = summarize(records, ["soft"])
    assert comparison.baseline == "soft" and comparison.split == "validation"
    assert comparison.settings[0].metrics["accuracy"].mean == pytest.approx(0.815)
    assert comparison.settings[0].weight_correlation.n == 0


def test_weight_correlation_compares_the_layers_every_run_measures():
    """With head vs head+pooler targets, the column must not mix the pooler into some rows only."""
    def record(setting, seed, layers, **extra):
        return {"setting": setting, "collision": "none" if setting == "adamw" else "hard", "seed": seed,
                "config": {}, "test_metrics": {"test_accuracy": 0.9, "test_macro_f1": 0.9}, **extra}

    records = [
        # an older record: only the logged per-layer values
        record("adamw", 1, None, final_ko_metrics={"ko/classifier.weight/weight_correlation": 0.2,
                                                   "ko/weight_correlation": 0.2}),
        record("hard+pooler", 1, None, head_metrics={"weight_correlation": 0.3},
               head_layers={"classifier.weight": {"weight_correlation": 0.1, "neuron_similarity": 0.2},
                            "bert.pooler.dense.weight": {"weight_correlation": 0.5}}),
    ]
    comparison = summarize(records, ["adamw", "hard+pooler"])
    assert comparison.correlation_layers == ["classifier.weight"]
    assert [s.weight_correlation.mean for s in comparison.settings] == [pytest.approx(0.2), pytest.approx(0.1)]
    assert comparison.to_dict()["weight_correlation_layers"] == ["classifier.weight"]
    assert "`classifier.weight` (the weight every run measures)" in render_markdown(comparison)
    assert _plot_layer(records) == "classifier.weight"  # the figure follows the same layer
    assert _plot_layer(records[:1]) is None  # same targets everywhere: the aggregate curves compare

    # no layer in common: each run's own aggregate
    records[0]["final_ko_metrics"] = {"ko/other.weight/weight_correlation": 0.2, "ko/weight_correlation": 0.2}
    comparison = summarize(records, ["adamw", "hard+pooler"])
    assert comparison.correlation_layers == []
    assert [s.weight_correlation.mean for s in comparison.settings] == [pytest.approx(0.2), pytest.approx(0.3)]


# ------------------------------------------------------------------ a setting declared once reaches compare

#: A KO setting that exists only in the table (acting on hard collision), as the next setting someone adds would.
DUMMY = ko_settings.KOSetting("collision_dummy", float, 0.5, "A setting declared in one place.", in_group=True, legacy=0.25,
                              low=0.0, high=1.0, key="dummy", applies_to=("hard",))


@pytest.fixture
def dummy_setting(monkeypatch):
    monkeypatch.setattr(ko_settings, "KO_SETTINGS", (*ko_settings.KO_SETTINGS, DUMMY))
    return DUMMY


def parse_with_dummy(mapping):
    """parse_config, with the dummy carried by the arguments as a field of KOTrainingArguments would be (the
    dataclass' fields are made when it is imported, before the dummy is added)."""
    mapping = dict(mapping)
    value = mapping.pop(DUMMY.name, DUMMY.default)
    options, args = parse_config(mapping)
    setattr(args, DUMMY.name, value)
    return options, args


def test_a_setting_added_to_the_table_reaches_compare(tmp_path, dummy_setting):
    import ko_hf.compare

    spec = parse_setting("hard:dummy=0.75")
    assert spec.config() == {"collision": "hard", "collision_dummy": 0.75} and spec.dirname == "hard_dummy-0.75"
    assert spec.describe() == "hard, dummy=0.75"
    assert ko_hf.compare.SETTING_KEYS["dummy"] == "collision_dummy"  # read from the table, not kept from import
    with pytest.raises(ComparisonError, match=r"dummy must be in \[0, 1\], got '2'") as err:
        parse_setting("hard:dummy=2")
    assert "KEY in coef|lambda|pairing|form|targets|include_self|dummy" in str(err.value)

    runner = FakeRunner()
    run_comparison(BASE, tmp_path, ["soft", "hard", "hard:dummy=0.75"], [1], runner=runner, parse=parse_with_dummy,
                   plot=False)
    record = json.loads((tmp_path / "hard_dummy-0.75" / "seed-1" / RESULT_FILE).read_text())
    assert record["collision_args"]["collision_dummy"] == 0.75
    hard = f"hard, coef={DEFAULT_COLL_COEF['hard']}, λ={DEFAULT_DISTANCE_SCALE}, pairing={DEFAULT_PAIRING}, form=bounded"
    md = (tmp_path / "comparison.md").read_text()
    assert f"| hard:dummy=0.75 | {hard}, dummy=0.75 |" in md and f"| hard | {hard}, dummy=0.5 |" in md
    assert f"| soft | soft, coef={DEFAULT_COLL_COEF['soft']}, form=bounded |" in md  # it does not act on soft

    # records written before the setting existed: the runs behaved as its group default
    for name in ("soft", "hard"):
        path = tmp_path / name / "seed-1" / RESULT_FILE
        old = json.loads(path.read_text())
        del old["collision_args"]["collision_dummy"]
        path.write_text(json.dumps(old))
    assert summarize([old], ["hard"]).settings[0].description == f"{hard}, dummy=0.25"
    run_comparison(BASE, tmp_path, ["soft"], [1], runner=runner, parse=parse_with_dummy, plot=False)
    assert len(runner.calls) == 3  # soft collision ignores the setting: the old run is reused
    with pytest.raises(ComparisonError, match=r"other collision settings \(collision_dummy: 0.25 then, 0.5 now"):
        run_comparison(BASE, tmp_path, ["hard"], [1], runner=runner, parse=parse_with_dummy, plot=False)

    result = CliRunner().invoke(_app(), ["compare", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "include_self (true or false) or dummy (in [0, 1])" in text
    assert f"lambda {DEFAULT_DISTANCE_SCALE:g}, dummy 0.5; soft:" in text  # its default, for the type it acts on


# ------------------------------------------------------------------ the CLI command


def _app():
    from ko_hf_cli.compare_command import compare  # the source lives in cli/ (pyproject: package-dir)

    app = typer.Typer()
    app.command("compare")(compare)
    app.command("noop")(lambda: None)  # two commands, so `compare` is a subcommand as on the real app
    return app


def test_cli_compare_maps_flags_and_prints_table(tmp_path, monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr("ko_hf.finetune.finetune", runner)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table to the terminal width
    config = tmp_path / "base.yaml"
    config.write_text("model_name_or_path: from-config\ndataset: demo\ncollision: hard\ncoll_coef: 0.9\n"
                      "use_cpu: true\nsave_strategy: 'no'\n")
    result = CliRunner().invoke(_app(), [
        "compare", "tiny-model", "--config", str(config), "--settings", "adamw", "-s", "soft:coef=0.2",
        "--seeds", "1,2", "--output-dir", str(tmp_path / "cmp"), "--max-steps", "3", "--learning-rate", "1e-3",
        "--batch-size", "4", "--set", "logging_steps=1", "--set", "eval_strategy=no", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert len(runner.calls) == 4 and {c[2] for c in runner.calls if c[0] == "soft"} == {0.2}
    record = json.loads((tmp_path / "cmp" / "soft_coef-0.2" / "seed-2" / RESULT_FILE).read_text())
    assert record["config"]["model_name_or_path"] == "tiny-model"  # the argument overrides the config
    assert record["config"]["max_steps"] == 3 and record["config"]["learning_rate"] == 1e-3
    assert record["config"]["per_device_train_batch_size"] == 4 and record["config"]["logging_steps"] == 1
    assert record["config"]["plots"] is False and "coll_coef" in record["config"]
    assert record["config"]["eval_strategy"] == "no"  # not YAML 1.1's False
    assert "collision, coll_coef of the base config are replaced" in result.output
    assert "Δ accuracy vs adamw (95% CI)" in result.output and "soft:coef=0.2" in result.output
    assert (tmp_path / "cmp" / "comparison.md").is_file()


def test_cli_compare_table_fits_80_columns(tmp_path, monkeypatch):
    monkeypatch.setattr("ko_hf.finetune.finetune", FakeRunner())
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(_app(), [
        "compare", "tiny-model", "--dataset", "demo", "-s", "adamw,soft,hard:coef=0.8:lambda=1", "--seeds", "1,2",
        "-o", str(tmp_path / "cmp"), "--set", "use_cpu=true", "--set", "save_strategy=no", "--no-plots"])
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("tiny-model on demo"):result.output.index("mean ± sample std")]
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80
    for text in ("accuracy", "macro-F1", "weight corr", "adamw", "hard:coef=0.8:lam", "(baseline)", "±"):
        assert text in table


def test_cli_compare_help_names_every_setting_key():
    """`compare --help` documents the settings syntax the parser accepts: every key, and pairing's values."""
    from ko_hf.collision import PAIRINGS
    from ko_hf.compare import SETTING_KEYS

    result = CliRunner().invoke(_app(), ["compare", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    for key in SETTING_KEYS:
        assert key in text, key
    assert all(pairing in text for pairing in PAIRINGS) and "hard:pairing=all" in text
    from ko_hf.trainer import DEFAULT_COLL_COEF, DEFAULT_DISTANCE_SCALE, DEFAULT_PAIRING

    assert (f"hard: pairing {DEFAULT_PAIRING}, form bounded, coef {DEFAULT_COLL_COEF['hard']:g}, lambda "
            f"{DEFAULT_DISTANCE_SCALE:g}; soft: form bounded, coef {DEFAULT_COLL_COEF['soft']:g}") in text


def test_cli_compare_bad_setting_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(_app(), ["compare", "m", "--dataset", "demo", "--settings", "adamw,hrad",
                                         "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown type 'hrad'" in result.output and "valid forms" in result.output


# ------------------------------------------------------------------ a real comparison: tiny BERT, 2 x 2 runs


def _tiny_model(folder: Path) -> Path:
    words = ["rain", "sunny", "cold", "song", "jazz", "album", "please", "the", "now", "me"]
    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=32)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=15, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=32)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_csv(folder: Path) -> Path:
    rows = {"weather": ["rain", "sunny", "cold"], "music": ["song", "jazz", "album"], "other": ["please", "now", "me"]}
    folder.mkdir(parents=True)
    for split, n in (("train", 8), ("test", 3)):
        pd.DataFrame([{"text": f"the {ws[i % 3]} {ws[(i + 1) % 3]}", "label": label}
                      for label, ws in rows.items() for i in range(n)]).to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_real_comparison_of_a_tiny_bert(tmp_path, recwarn):
    base = {"model_name_or_path": str(_tiny_model(tmp_path / "model")), "dataset": str(_tiny_csv(tmp_path / "data")),
            "max_length": 16, "use_cpu": True, "max_steps": 3, "per_device_train_batch_size": 8,
            "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "plots": False}
    messages = []
    comparison = run_comparison(base, tmp_path / "cmp", ["adamw", "hard:coef=0.9"], [1, 2], progress=messages.append)
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]  # no pinned memory without an accelerator
    heads = [m for m in messages if "training into" in m]
    assert len(heads) == 4 and heads[1].startswith("[2/4] hard:coef=0.9 seed 1: training into")
    # a few progress lines per run (which run, which step, ETA), not one per log
    progress = [m for m in messages if m.startswith("[2/4]") and ": step " in m]
    assert progress and all("s/step, ETA" in m for m in progress) and len(messages) <= 4 * 12
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["split"] == "test" and [s["name"] for s in data["settings"]] == ["adamw", "hard:coef=0.9"]
    for setting in data["settings"]:
        assert setting["accuracy"]["n"] == 2 and 0 <= setting["accuracy"]["mean"] <= 1
        assert setting["weight_correlation"]["n"] == 2  # AdamW's head is watched too
        assert setting["step_time_ratio"]["n"] == 2
    assert data["settings"][1]["accuracy_diff"]["n"] == 2 and data["settings"][1]["accuracy_diff"]["low"] is not None
    record = json.loads((tmp_path / "cmp" / "hard_coef-0.9" / "seed-1" / RESULT_FILE).read_text())
    assert record["median_step_time"] > 0 and record["log_history"]
    assert set(record["head_layers"]) == {"classifier.weight"} == set(data["weight_correlation_layers"])
    assert record["final_ko_metrics"]["ko/classifier.weight/accepted_pair_fraction"] >= 0  # one target: no aggregate
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| adamw | none (AdamW) | 2 |" in md and "hard, coef=0.9, λ=0.05" in md
    if comparison.figure:
        assert Path(comparison.figure).is_file() and "comparison.png" in md
    else:
        assert "Figure: not drawn" in md
    messages.clear()
    run_comparison(base, tmp_path / "cmp", ["adamw", "hard:coef=0.9"], [1, 2], progress=messages.append)
    assert all("skipped" in m for m in messages) and len(messages) == 4


def test_zero_step_resume_keeps_step_time_and_loss(tmp_path):
    """A run killed after its last checkpoint, before its record: the rerun resumes with no step left."""
    base = {"model_name_or_path": str(_tiny_model(tmp_path / "model")), "dataset": str(_tiny_csv(tmp_path / "data")),
            "max_length": 16, "use_cpu": True, "max_steps": 3, "per_device_train_batch_size": 8,
            "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 3, "eval_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "plots": False}
    run_comparison(base, tmp_path / "cmp", ["hard"], [1], keep_checkpoints=True)  # as if killed before pruning
    result = tmp_path / "cmp" / "hard" / "seed-1" / RESULT_FILE
    first = json.loads(result.read_text())
    result.unlink()
    messages = []
    run_comparison(base, tmp_path / "cmp", ["hard"], [1], progress=messages.append)
    assert "resuming from" in messages[0] and "checkpoint-3" in messages[0]
    again = json.loads(result.read_text())
    assert again["median_step_time"] == pytest.approx(first["median_step_time"], rel=1e-4)  # was None
    assert again["train_metrics"]["train_loss"] == pytest.approx(first["train_metrics"]["train_loss"], rel=1e-6)
    assert again["train_metrics"]["train_loss"] > 0  # was 0.0


class DivergingRunner(FakeRunner):
    """Hard collision's seed-2 run diverges (as finetune() reports a NaN loss or weights)."""

    def __call__(self, options, args, **finetune_keywords):
        result = super().__call__(options, args, **finetune_keywords)
        result.diverged = args.collision == "hard" and args.seed == 2
        return result


def test_diverged_runs_are_named_in_the_summary_the_markdown_and_the_json(tmp_path, monkeypatch):
    monkeypatch.setattr("ko_hf.finetune.finetune", DivergingRunner())
    out = tmp_path / "cmp"
    result = CliRunner().invoke(_app(), [
        "compare", "tiny-model", "--dataset", "demo", "-s", "adamw,hard", "--seeds", "1,2", "-o", str(out),
        "--set", "use_cpu=true", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "Warning: diverged runs" in result.output and "hard (seed 2)" in result.output
    markdown = (out / "comparison.md").read_text()
    assert "**Diverged runs**" in markdown and "hard (seed 2)" in markdown and "| 2 (diverged) |" in markdown
    data = json.loads((out / "comparison.json").read_text())
    assert [s["diverged_seeds"] for s in data["settings"]] == [[], [2]]
    assert [run["diverged"] for run in data["runs"]] == [False, False, False, True]


def test_a_comparison_without_diverged_runs_says_nothing_of_them(tmp_path):
    comparison = run_comparison(BASE, tmp_path, ["adamw", "hard"], [1], runner=FakeRunner(), parse=parse_config,
                                plot=False)
    assert comparison.diverged() is None and "Diverged" not in (tmp_path / "comparison.md").read_text()
