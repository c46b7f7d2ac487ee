"""Resuming: the checkpoint's collision settings against the arguments, incomplete and half-written checkpoints,
the step-count warning of ratio logging steps. One tiny checkpointed run (module fixture) is copied per test."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

from ko_hf.finetune import FinetuneError, finetune, parse_config, prepare_finetune, run_prepared

from test_finetune import head_weight, make_config

#: The checkpointed run: hard collision at coef 0.5, checkpoints at steps 3 and 6, logging every half of the run.
RUN = dict(collision="hard", coll_coef=0.5, max_steps=6, save_strategy="steps", save_steps=3, logging_steps=0.5)


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, csv_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume-run") / "out"
    finetune(*parse_config(make_config(tiny_model_dir, csv_data, out, **RUN)))
    assert (out / "checkpoint-3" / "optimizer.pt").is_file() and (out / "checkpoint-6").is_dir()
    return out


def copy_run(finished_run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    return out


def resume_config(tiny_model_dir, csv_data, out, resume, **change):
    return parse_config(make_config(tiny_model_dir, csv_data, out, resume_from_checkpoint=str(resume),
                                    **{**RUN, **change}))


@pytest.fixture
def transformers_logs(caplog):
    import logging

    logging.Logger.warning_once.cache_clear()  # transformers says some warnings once per process
    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        yield caplog
    hf_logging.disable_propagation()


# --------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("change, named", [
    ({"collision": "soft", "coll_coef": 0.1}, "collision: checkpoint 'hard', arguments 'soft'"),
    ({"coll_coef": 0.3}, "coll_coef: checkpoint 0.5, arguments 0.3"),
    ({"collision_distance_scale": 1.0}, "collision_distance_scale: checkpoint 0.05, arguments 1.0"),
    ({"collision": "none"}, "collision: checkpoint 'hard', arguments 'none'"),  # was "different number of groups"
])
def test_resume_with_other_collision_settings_is_an_error_naming_both(
        tiny_model_dir, csv_data, finished_run, tmp_path, change, named):
    out = copy_run(finished_run, tmp_path)
    options, args = resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3", **change)
    with pytest.raises(FinetuneError, match=re.escape(named)):
        finetune(options, args)
    assert head_weight(out).equal(head_weight(finished_run))  # nothing was trained or saved


def test_resume_from_a_run_without_collision_with_collision_is_an_error(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "plain"
    finetune(*parse_config(make_config(tiny_model_dir, csv_data, out, **{**RUN, "collision": "none",
                                                                        "max_steps": 3})))
    options, args = resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3", collision="soft")
    with pytest.raises(FinetuneError, match=re.escape("collision: checkpoint 'none', arguments 'soft'")):
        finetune(options, args)


def test_the_rule_covers_every_param_group_setting():
    """Generic over the param groups' keys: a setting added later (here a made-up ``collision_pairing``) is
    compared without edits; the step counter is state and carries over."""
    from ko_hf.trainer import collision_setting_differences

    saved = [{"lr": 1e-3}, {"collision": "hard", "coll_coef": 0.2, "collision_seed": 1, "collision_step": 40,
                            "collision_names": ["classifier.weight"], "collision_pairing": "dsmc", "lr": 1e-3}]
    wanted = [{"params": []}, {"params": [], "collision": "hard", "coll_coef": 0.2, "collision_seed": 1,
                               "collision_step": 0, "collision_names": ["classifier.weight"],
                               "collision_pairing": "all"}]
    assert collision_setting_differences(saved, wanted) == ["collision_pairing: checkpoint 'dsmc', arguments 'all'"]
    wanted[1]["collision_pairing"] = "dsmc"
    assert collision_setting_differences(saved, wanted) == []
    wanted[1]["collision_names"] = ["bert.pooler.dense.weight"]
    assert collision_setting_differences(saved, wanted) == [
        "collision targets: checkpoint ['classifier.weight'], arguments ['bert.pooler.dense.weight']"]


def test_resume_with_the_same_settings_keeps_the_step_counter(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))
    run_prepared(prepared)
    optimizer = prepared.trainer.optimizer
    flagged = [g for g in getattr(optimizer, "optimizer", optimizer).param_groups if g.get("collision") == "hard"]
    assert [g["collision_step"] for g in flagged] == [6] and flagged[0]["coll_coef"] == 0.5
    torch.testing.assert_close(head_weight(out), head_weight(finished_run))


# --------------------------------------------------------------------------------------------------- incomplete


def test_checkpoint_without_optimizer_state_is_an_error(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-3" / "optimizer.pt").unlink()
    (out / "checkpoint-3" / "scheduler.pt").unlink()
    with pytest.raises(FinetuneError, match=r"no optimizer.pt / scheduler.pt.*resume_incomplete_checkpoint=true"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))


def test_incomplete_resume_with_the_option_is_a_warned_restart(tiny_model_dir, csv_data, finished_run, tmp_path,
                                                                transformers_logs):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-3" / "optimizer.pt").unlink()
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3",
                                               resume_incomplete_checkpoint=True))
    run_prepared(prepared)
    report = prepared.trainer.resume_report
    assert report.restarted and report.missing == ["optimizer.pt"] and report.checkpoint.endswith("checkpoint-3")
    assert "without optimizer.pt" in transformers_logs.text
    assert prepared.trainer.state.global_step == 6


def test_checkpoint_without_trainer_state_restarts_from_its_weights_with_the_option(
        tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-3" / "trainer_state.json").unlink()
    with pytest.raises(FinetuneError, match="no trainer_state.json"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3",
                                               resume_incomplete_checkpoint=True))
    run_prepared(prepared)
    assert prepared.trainer.resume_report.missing == ["trainer_state.json"]
    assert prepared.trainer.state.global_step == 6 and prepared.trainer.state.log_history[0]["step"] <= 3


# --------------------------------------------------------------------------------------------------- half-written


def _half_write(checkpoint: Path) -> None:
    """What a kill during ``_save_checkpoint`` leaves: the weights cut short, no trainer state yet."""
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    (checkpoint / "trainer_state.json").unlink()


def test_half_written_newest_checkpoint_is_skipped(tiny_model_dir, csv_data, finished_run, tmp_path,
                                                   transformers_logs):
    out = copy_run(finished_run, tmp_path)
    _half_write(out / "checkpoint-6")
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, "last"))
    run_prepared(prepared)
    assert prepared.trainer.resume_report.checkpoint == str(out / "checkpoint-3")
    assert f"skipping checkpoint {out / 'checkpoint-6'}" in transformers_logs.text
    torch.testing.assert_close(head_weight(out), head_weight(finished_run))  # the same result as straight through


def test_truncated_file_in_a_named_checkpoint_is_an_error(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    optimizer = out / "checkpoint-3" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])
    with pytest.raises(FinetuneError, match=r"cannot resume from .*checkpoint-3: optimizer.pt .*truncated"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))


def test_no_complete_checkpoint_is_an_error(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    for step in (3, 6):
        _half_write(out / f"checkpoint-{step}")
    with pytest.raises(FinetuneError, match=r"no checkpoint in .* can be resumed from \(checkpoint-6: .*"
                                            r"checkpoint-3: .*--overwrite-output-dir"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, "last"))


# --------------------------------------------------------------------------------------------------- logging


def test_resumed_run_with_ratio_logging_steps_does_not_warn(tiny_model_dir, csv_data, finished_run, tmp_path,
                                                              transformers_logs):
    out = copy_run(finished_run, tmp_path)  # resumed from its last checkpoint: no step left, the check still runs
    finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-6"))
    assert "do not match" not in transformers_logs.text and "0.5 (from args)" not in transformers_logs.text
    transformers_logs.clear()
    finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-6", logging_steps=2))
    assert "logging_steps: 2 (from args) != 3" in transformers_logs.text  # a real change still warns


def test_checkpoint_of_ko_hf_0_1_resumes(tiny_model_dir, csv_data, finished_run, tmp_path):
    """Checkpoints of ko-hf 0.1 hold no state of its callbacks (step times, the card's start record); resuming must
    not trip over their absence when the next checkpoint is written (transformers looks each one up by name)."""
    import json

    out = copy_run(finished_run, tmp_path)
    state_file = out / "checkpoint-3" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stateful_callbacks"] = {"TrainerControl": state["stateful_callbacks"]["TrainerControl"]}
    state_file.write_text(json.dumps(state))
    result = finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))
    saved = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())["stateful_callbacks"]
    assert {"StepTimerCallback", "KOModelCardCallback"} <= set(saved) and result.median_step_time > 0
