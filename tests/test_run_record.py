"""ko_hf.run.record: what a resumed run takes from its checkpoint's run, and what it may not change (pure Python)."""

import json

import pytest

from ko_hf.run.preflight import FinetuneError
from ko_hf.run.record import (
    RECORD_NAME,
    extension_problem,
    read_run_record,
    setting_differences,
    with_checkpoint_run,
    write_run_record,
)

RECORDED = {"max_steps": 30, "num_train_epochs": 3.0, "learning_rate": 5e-5, "max_train_samples": 500,
            "lr_scheduler_type": "linear", "collision": "soft", "coll_coef": 0.1, "collision_pairing": "dsmc"}


def test_a_resuming_mapping_is_filled_with_what_it_does_not_give(tmp_path):
    write_run_record(tmp_path, RECORDED)
    given = {"output_dir": str(tmp_path), "resume_from_checkpoint": "last", "learning_rate": 1e-4}
    filled = with_checkpoint_run(given)
    assert filled["max_steps"] == 30 and filled["max_train_samples"] == 500 and filled["learning_rate"] == 1e-4
    named = {"output_dir": "elsewhere", "resume_from_checkpoint": str(tmp_path / "checkpoint-20")}
    assert with_checkpoint_run(named)["max_steps"] == 30  # the run of the folder the checkpoint lies in
    assert with_checkpoint_run({"output_dir": str(tmp_path)}) == {"output_dir": str(tmp_path)}  # no resume


def test_differences_name_each_setting_with_both_values():
    current = {**RECORDED, "max_steps": 60, "learning_rate": 1e-4}
    assert setting_differences(RECORDED, current) == ["learning_rate: checkpoint 5e-05, arguments 0.0001",
                                                      "max_steps: checkpoint 30, arguments 60"]
    assert setting_differences(RECORDED, current, extend=True) == ["learning_rate: checkpoint 5e-05, arguments 0.0001"]
    assert setting_differences(RECORDED, {**RECORDED, "max_steps": 20}, extend=True) == [
        "max_steps: checkpoint 30, arguments 20"]  # extend_run only lengthens
    assert setting_differences(RECORDED, {**RECORDED, "collision_pairing": "all"}) == []  # soft ignores pairing
    assert setting_differences({**RECORDED, "collision": "hard"}, {**RECORDED, "collision": "hard",
                                                                   "collision_pairing": "all"}) == [
        "collision_pairing: checkpoint 'dsmc', arguments 'all'"]
    assert setting_differences(RECORDED, {"max_steps": 30}) == []  # a setting another version did not record


def test_local_paths_compare_as_the_same_folder(tmp_path, monkeypatch):
    data = tmp_path / "data.csv"
    data.write_text("text,label\n")
    monkeypatch.chdir(tmp_path)
    recorded = {"dataset": str(data), "model_name_or_path": "bert-base-cased"}
    assert setting_differences(recorded, {"dataset": "data.csv", "model_name_or_path": "bert-base-cased"}) == []
    assert setting_differences({"dataset": f"imdb={tmp_path}"}, {"dataset": "imdb=."}) == []


def test_extend_run_must_lengthen_the_length_that_counts():
    by_steps, by_epochs = RECORDED, {**RECORDED, "max_steps": -1}
    assert "stops at max_steps=30" in extension_problem(by_steps, by_steps)
    assert "stops at max_steps=30" in extension_problem(by_steps, {**by_steps, "num_train_epochs": 9.0})
    assert extension_problem(by_steps, {**by_steps, "max_steps": 40}) is None
    assert "num_train_epochs=3.0" in extension_problem(by_epochs, by_epochs)
    assert extension_problem(by_epochs, {**by_epochs, "num_train_epochs": 4.0}) is None
    assert extension_problem(by_epochs, {**by_epochs, "max_steps": 500}) is None


def test_the_record_is_written_whole_and_read_back(tmp_path):
    write_run_record(tmp_path, {"dataset": str(tmp_path), "max_steps": 5})
    assert read_run_record(tmp_path) == {"dataset": str(tmp_path.resolve()), "max_steps": 5}
    assert read_run_record(tmp_path / "missing") is None
    (tmp_path / RECORD_NAME).write_text(json.dumps(["not", "a", "record"]))
    with pytest.raises(FinetuneError, match="not a record of a run's settings"):
        read_run_record(tmp_path)


def test_a_recorded_setting_this_version_does_not_know_is_left_out(tmp_path):
    from ko_hf.finetune import parse_config

    write_run_record(tmp_path, {**RECORDED, "renamed_since": "x"})
    mapping = {"model_name_or_path": "m", "dataset": "demo", "output_dir": str(tmp_path), "use_cpu": True,
               "resume_from_checkpoint": "last"}
    _, args = parse_config(mapping)  # was: "unknown setting(s): 'renamed_since'"
    assert args.max_steps == 30
    with pytest.raises(FinetuneError, match="unknown setting"):  # given by the user, it is still refused
        parse_config({**mapping, "renamed_since": "y"})
