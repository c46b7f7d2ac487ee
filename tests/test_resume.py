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
                            "collision_names": ["classifier.weight"], "collision_pairing": "dsmc",
                            "collision_form": "bounded", "lr": 1e-3}]
    wanted = [{"params": []}, {"params": [], "collision": "hard", "coll_coef": 0.2, "collision_seed": 1,
                               "collision_step": 0, "collision_names": ["classifier.weight"],
                               "collision_pairing": "all", "collision_form": "bounded"}]
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
    with pytest.raises(FinetuneError, match=re.escape("logging_steps: checkpoint 0.5, arguments 2")):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-6", logging_steps=2))
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-6"))
    prepared.args.logging_steps = 2  # KOTrainer alone (no record of the run to refuse it): transformers warns
    run_prepared(prepared)
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


# --------------------------------------------------------------------------------------------------- the run's settings


def test_a_resumed_mapping_takes_what_it_does_not_give_from_the_checkpoints_run(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    _, args = parse_config({"model_name_or_path": "m", "dataset": "demo", "output_dir": str(out),
                            "resume_from_checkpoint": "last", "use_cpu": True})
    assert (args.max_steps, args.save_steps, args.logging_steps) == (6, 3, 0.5)  # not -1, 500, 500
    assert (args.collision, args.coll_coef, args.learning_rate, args.seed) == ("hard", 0.5, 5e-3, 3)
    _, given = parse_config({"model_name_or_path": "m", "dataset": "demo", "output_dir": str(out),
                             "resume_from_checkpoint": "last", "use_cpu": True, "max_steps": 9})
    assert given.max_steps == 9  # what is given stays given (and is checked against the run before training)


def test_resume_with_other_data_or_schedule_is_an_error_naming_each(tiny_model_dir, csv_data, finished_run,
                                                                    tmp_path):
    out = copy_run(finished_run, tmp_path)
    options, args = resume_config(tiny_model_dir, csv_data, out, "last", max_steps=12, max_train_samples=9,
                                  learning_rate=1e-3)
    with pytest.raises(FinetuneError, match=r"learning_rate: checkpoint 0.005, arguments 0.001; max_steps: "
                                            r"checkpoint 6, arguments 12; max_train_samples: checkpoint None, "
                                            r"arguments 9\).*extend_run=true") as err:
        finetune(options, args)
    assert "collision" not in str(err.value)
    assert head_weight(out).equal(head_weight(finished_run))


def test_extend_run_trains_a_finished_run_further(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    with pytest.raises(FinetuneError, match="extend_run: the checkpoint's run stops at max_steps=6; give a larger"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, "last", extend_run=True))
    with pytest.raises(FinetuneError, match="max_steps: checkpoint 6, arguments 4"):  # shorter is no extension
        finetune(*resume_config(tiny_model_dir, csv_data, out, "last", max_steps=4, extend_run=True))
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, "last", max_steps=9, extend_run=True))
    run_prepared(prepared)
    assert prepared.trainer.state.global_step == 9 and prepared.trainer.resume_report.resumed_at_step == 6
    _, args = parse_config(make_config(tiny_model_dir, csv_data, out, resume_from_checkpoint="last"))
    assert args.max_steps == 9  # the record says the extended length now


def test_resuming_the_last_checkpoint_of_a_finished_run_takes_no_step(tiny_model_dir, csv_data, tmp_path):
    """22 training rows in batches of 8: 3 steps an epoch, so step 4 ends inside the second epoch (transformers
    would take a 5th step there before it checks the count)."""
    run = {**RUN, "max_steps": 4, "save_steps": 2}
    out = tmp_path / "four"
    finetune(*parse_config(make_config(tiny_model_dir, csv_data, out, **run)))
    finished = head_weight(out).clone()
    prepared = prepare_finetune(*parse_config(make_config(tiny_model_dir, csv_data, out, **run,
                                                          resume_from_checkpoint=str(out / "checkpoint-4"))))
    result = run_prepared(prepared)
    assert prepared.trainer.state.global_step == 4  # was 5 of 4
    report = prepared.trainer.resume_report
    assert report.finished_before_resume and report.resumed_at_step == 4 and not report.restarted
    assert head_weight(out).equal(finished)
    assert result.train_metrics["train_loss"] > 0 and not result.diverged


def test_incomplete_resume_still_checks_the_collision_settings(tiny_model_dir, csv_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-3" / "optimizer.pt").unlink()  # the param groups that carried the settings are gone
    with pytest.raises(FinetuneError, match=re.escape("coll_coef: checkpoint 0.5, arguments 0.3")):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3", coll_coef=0.3,
                                resume_incomplete_checkpoint=True))
    # KOTrainer itself reads them from the run's record when the optimizer state is missing
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3",
                                               resume_incomplete_checkpoint=True))
    prepared.args.coll_coef = 0.3
    with pytest.raises(FinetuneError, match=re.escape("coll_coef: checkpoint 0.5, arguments 0.3")):
        prepared.trainer.resolve_resume_checkpoint(str(out / "checkpoint-3"))
    prepared.args.coll_coef = 0.5
    run_prepared(prepared)
    assert prepared.trainer.resume_report.restarted_parts == ["the optimizer moments and the collision step counter"]


def test_checkpoint_without_rng_state_is_incomplete(tiny_model_dir, csv_data, finished_run, tmp_path,
                                                    transformers_logs):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-3" / "rng_state.pth").unlink()
    with pytest.raises(FinetuneError, match=r"no rng_state.pth: resuming would silently restart the random number"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3"))
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-3",
                                               resume_incomplete_checkpoint=True))
    run_prepared(prepared)
    assert prepared.trainer.resume_report.missing == ["rng_state.pth"]
    assert "without rng_state.pth: the random number generators" in transformers_logs.text


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_state_file_that_is_not_a_weights_only_pickle_is_broken(tiny_model_dir, csv_data, finished_run, tmp_path,
                                                                  transformers_logs, name):
    import datetime

    out = copy_run(finished_run, tmp_path)
    torch.save({"state": datetime.date(2025, 1, 1)}, out / "checkpoint-6" / name)  # unpickling would build it
    with pytest.raises(FinetuneError, match=rf"cannot resume from .*checkpoint-6: {re.escape(name)} \(holds pickled "
                                            "objects other than tensors"):
        finetune(*resume_config(tiny_model_dir, csv_data, out, out / "checkpoint-6"))
    prepared = prepare_finetune(*resume_config(tiny_model_dir, csv_data, out, "last"))
    assert prepared.resume_from_checkpoint == str(out / "checkpoint-3")  # "last" skips it, naming the file
    assert f"skipping checkpoint {out / 'checkpoint-6'}: {name} (holds pickled objects" in transformers_logs.text
    prepared.lock.release()
