"""A KO setting declared once in ko_hf.settings reaches every use: the CLI, the arguments, the param groups, configs.

Each test adds a dummy setting to ``ko_hf.settings.KO_SETTINGS`` (monkeypatch) and builds what it checks from the
table as it is then (``ko_arguments_class``, ``build_app``), so nothing is reloaded.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from transformers import HfArgumentParser
from typer.testing import CliRunner

import ko_hf.arguments
from ko_hf import KOTrainer, settings
from ko_hf.arguments import ko_arguments_class
from ko_hf.run.checkpoints import checkpoint_param_groups
from ko_hf.finetune import FinetuneError, FinetuneOptions, load_config_file, parse_config
from ko_hf.settings import KOSetting
from ko_hf.trainer import collision_setting_differences
from ko_hf_cli.main import build_app, dispatch

from tiny import tiny_bert

DUMMY = KOSetting("collision_dummy", float, 0.5, "A dummy knob of the collision, for tests only (default: 0.5).",
                  in_group=True, legacy=0.0, low=0.0, high=1.0, flag="dummy-knob", key="dummy", metavar="D")


@pytest.fixture
def dummy(monkeypatch):
    """The table with DUMMY at its end, and ko_hf.arguments.KOTrainingArguments rebuilt from it (what configs are
    parsed into and what pickled arguments name)."""
    monkeypatch.setattr(settings, "KO_SETTINGS", (*settings.KO_SETTINGS, DUMMY))
    cls = ko_arguments_class()
    monkeypatch.setattr(ko_hf.arguments, "KOTrainingArguments", cls)
    return cls


def run(app, *argv):
    return CliRunner().invoke(app, dispatch([str(a) for a in argv]), env={"COLUMNS": "200"})


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def panel(help_text: str, title: str) -> str:
    """The lines of one rich help panel."""
    start = help_text.index(f"─ {title} ")
    return help_text[start:help_text.index("╰", start)]


# --------------------------------------------------------------------------------------------------- (a) CLI


def test_dummy_setting_is_a_train_option_in_the_ko_panel(dummy):
    help_text = run(build_app(), "train", "--help").output
    ko = panel(help_text, "KO collision")
    assert "--dummy-knob" in ko and "A dummy knob of the collision" in ko and " D " in ko
    for setting in settings.ko_settings():  # every declared setting, with its flag and metavar
        assert setting.cli_flag in ko, setting.name
    assert "--collision-seed" in ko  # the one setting that had no flag before


def test_app_built_without_the_dummy_has_no_such_option():
    assert "--dummy-knob" not in run(build_app(), "train", "--help").output


def test_dummy_flag_value_is_checked_by_its_declaration_before_anything_loads(dummy, tmp_path):
    line = error_line(run(build_app(), "no-such-model-folder/", "--dataset", "nosuchset", "-o", tmp_path / "o",
                          "--dummy-knob", "1.5"))
    assert "collision_dummy=1.5 is invalid; it must be a finite number in [0, 1]" in line
    line = error_line(run(build_app(), "no-such-model-folder/", "--dataset", "nosuchset", "-o", tmp_path / "o",
                          "--set", "collision_dummy=much"))
    assert "collision_dummy='much' is invalid" in line


# --------------------------------------------------------------------------------------------------- (b) arguments, groups


def test_dummy_setting_is_a_field_of_the_arguments_class(dummy, tmp_path):
    field = dummy.__dataclass_fields__["collision_dummy"]
    assert field.default == 0.5 and field.metadata["help"] == DUMMY.help
    args = dummy(output_dir=str(tmp_path), use_cpu=True)
    assert args.collision_dummy == 0.5
    (parsed,) = HfArgumentParser(dummy).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "true", "--collision_dummy", "0.25"])
    assert parsed.collision_dummy == 0.25
    with pytest.raises(ValueError, match=r"collision_dummy=2 is invalid; it must be a finite number in \[0, 1\]"):
        dummy(output_dir=str(tmp_path), use_cpu=True, collision_dummy=2)
    assert json.loads(args.to_json_string())["collision_dummy"] == 0.5  # what Trainer logs and the card reads
    from ko_hf.trainer import KOTrainingArguments  # built at import, from the table as it was then

    assert "collision_dummy" not in KOTrainingArguments.__dataclass_fields__


def test_dummy_setting_is_a_key_of_the_flagged_param_group(dummy, tmp_path):
    args = dummy(output_dir=str(tmp_path), use_cpu=True, collision="soft", collision_dummy=0.25, report_to="none")
    trainer = KOTrainer(model=tiny_bert(), args=args)
    optimizer = trainer.create_optimizer()
    flagged = [g for g in optimizer.param_groups if g.get("collision", "none") != "none"]
    assert flagged and all(g["collision_dummy"] == 0.25 for g in flagged)
    # a group built by hand without the key means the declared default, as KOTrainingArguments does
    from ko_hf import KOAdamW

    weight = tiny_bert().classifier.weight
    assert KOAdamW([{"params": [weight], "collision": "soft"}], lr=0.1).param_groups[0]["collision_dummy"] == 0.5
    # a group saved before the setting existed ran with its legacy value
    older = KOAdamW([{"params": [weight], "collision": "soft"}], lr=0.1)
    state = older.state_dict()
    del state["param_groups"][0]["collision_dummy"]
    older.load_state_dict(state)
    assert older.param_groups[0]["collision_dummy"] == 0.0
    with pytest.raises(ValueError, match="collision_dummy=-1 is invalid"):
        KOAdamW([{"params": [weight], "collision": "soft", "collision_dummy": -1}], lr=0.1)
    # a checkpoint trained with another value of the setting is another run
    saved = [{**g, "collision_dummy": 0.75} for g in flagged]
    assert collision_setting_differences(saved, flagged) == ["collision_dummy: checkpoint 0.75, arguments 0.25"]


def test_compatibility_names_follow_the_table(dummy):
    from ko_hf import optim, trainer

    assert trainer.KO_FIELDS == settings.setting_names() and trainer.KO_FIELDS[-1] == "collision_dummy"
    assert settings.group_settings({"collision": "soft"})["collision_dummy"] == 0.5
    assert settings.legacy_values()["collision_dummy"] == 0.0
    assert {"collision_step", "collision_names"} <= set(optim.GROUP_STATE_DEFAULTS)


# --------------------------------------------------------------------------------------------------- (c) YAML, --set


def test_dummy_setting_is_a_yaml_and_set_key(dummy, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: m\ndataset: demo\noutput_dir: {tmp_path / 'o'}\nuse_cpu: true\n"
                      "collision_dummy: 5e-1\n")  # YAML reads 5e-1 as text: the declaration reads it as a number
    options, args = parse_config(load_config_file(recipe))
    assert isinstance(options, FinetuneOptions) and isinstance(args, dummy) and args.collision_dummy == 0.5
    with pytest.raises(FinetuneError, match="collision_dummy='x' is invalid"):
        parse_config({**load_config_file(recipe), "collision_dummy": "x"})


def test_dummy_flag_reaches_the_saved_param_groups(dummy, tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "run"
    result = run(build_app(), tiny_model_dir, "--dataset", csv_data, "-o", out, "--collision", "hard",
                 "--dummy-knob", "0.25", "--collision-seed", "7", "--max-steps", "1", "--set", "save_steps=1",
                 "--max-length", "32", "--no-plots")
    assert result.exit_code == 0, result.output
    flagged = [g for g in checkpoint_param_groups(out / "checkpoint-1") if g.get("collision") == "hard"]
    assert flagged and all(g["collision_dummy"] == 0.25 and g["collision_seed"] == 7 for g in flagged)


# --------------------------------------------------------------------------------------------------- the CLI stays light


def _without_torch(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where importing torch or transformers fails."""
    guard = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
    return subprocess.run([sys.executable, "-c", guard + code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_help_and_ko_mistakes_need_no_torch(tmp_path):
    out = _without_torch("from ko_hf_cli.main import main; main(['train', '--help'])")
    assert out.returncode == 0, out.stderr
    assert "--collision-seed" in out.stdout and "--distance-scale" in out.stdout
    for argv, message in [(["--collision", "elastic"], "collision='elastic' is not a collision type"),
                          (["--set", "coll_coef=2"], "coll_coef=2 is invalid"),
                          (["--set", "collision_seed=1.5"], "collision_seed=1.5 is invalid; it must be an integer")]:
        command = ["m", "--dataset", "demo", "-o", str(tmp_path / "o"), *argv]
        out = _without_torch(f"from ko_hf_cli.main import main; main({command!r})")
        assert out.returncode == 2, out.stderr[-2000:]
        assert out.stderr.startswith("Error: ") and message in out.stderr, out.stderr[-2000:]


# --------------------------------------------------------------------------------------------------- --set types


@pytest.mark.parametrize("pair, message", [
    ("warmup_steps=abc", "warmup_steps must be a float, got 'abc'"),
    ("save_strategy=sometimes", "save_strategy='sometimes' is invalid; valid: no, steps, epoch, best"),
    ("bf16=maybe", "bf16 must be a bool (true or false), got 'maybe'"),
    ("seed=[1, 2]", "seed must be a int, got [1, 2]"),
    ("lora_target_modules=[1, 2]", "lora_target_modules must be a list of str, got [1, 2]"),
])
def test_set_values_are_type_checked_before_the_model_loads(pair, message, tmp_path):
    # the model folder does not exist: the type is reported first
    line = error_line(run(build_app(), "no-such-model-folder/", "--dataset", "nosuchset", "-o", tmp_path / "o",
                          "--set", pair))
    assert message in line


def test_help_states_the_dataclasses_defaults():
    """Defaults written in ``train --help`` (TrainingArguments' cannot be read there without importing
    transformers) are the dataclasses' own."""
    import typer

    from ko_hf.arguments import KOTrainingArguments
    from ko_hf.run.preflight import RUN_DEFAULTS

    command = typer.main.get_command(build_app()).commands["train"]
    stated = {}
    for param in command.params:
        found = re.search(r"\(default: ([^;)]+)[;)]", getattr(param, "help", None) or "")
        if found:
            stated[param.opts[0]] = found.group(1)
    expected = {"--max-length": FinetuneOptions.max_length, "--lora-r": FinetuneOptions.lora_r,
                "--lora-alpha": FinetuneOptions.lora_alpha, "--lora-dropout": FinetuneOptions.lora_dropout,
                "--epochs": KOTrainingArguments.num_train_epochs, "--learning-rate": KOTrainingArguments.learning_rate,
                "--batch-size": KOTrainingArguments.per_device_train_batch_size, "--seed": KOTrainingArguments.seed,
                "--report-to": RUN_DEFAULTS["report_to"], "--plots": "plots" if FinetuneOptions.plots else "no-plots",
                "--distance-scale": settings.ko_setting("collision_distance_scale").default,
                "--pairing": settings.ko_setting("collision_pairing").default,
                "--collision-seed": "--seed"}
    for flag, default in expected.items():
        assert flag in stated, (flag, sorted(stated))
        text = stated[flag]
        assert text == default if isinstance(default, str) else float(text) == float(default), (flag, text)
    assert '"ko-hf[lora]"' in run(build_app(), "train", "--help").output  # not eaten as rich markup


# --------------------------------------------------------------------------------------------------- the table's readers


def test_read_settings_types_text_by_the_declaration():
    read = settings.read_settings({"coll_coef": "5e-1", "collision_include_self": "off", "collision_seed": "3",
                                   "collision_targets": r"encoder\.layer\.\d+\.output", "collision": "hard",
                                   "learning_rate": "x"})  # not a KO setting: left alone
    assert read == {"collision": "hard", "coll_coef": 0.5, "collision_targets": [r"encoder\.layer\.\d+\.output"],
                    "collision_include_self": False, "collision_seed": 3}  # one regex, though it holds a +
    with pytest.raises(ValueError, match=r"collision='elastic' is not a collision type; valid: none, soft, hard"):
        settings.read_settings({"collision": "elastic"})
    with pytest.raises(ValueError, match=r"collision_pairing='pairs' is not a pairing; valid: dsmc, all"):
        settings.read_settings({"collision_pairing": "pairs"})


# ------------------------------------------------------------------------------------- every surface at once


def test_one_added_setting_reaches_help_param_group_card_and_compare(dummy, tmp_path):
    """The whole chain for one declaration: the CLI help, the optimizer's param group, the model card (settings
    section and reproduce snippet) and compare (parsed, recorded, described, listed in its help)."""
    from ko_hf.compare import parse_setting
    from ko_hf.compare.settings import describe_record, resolved_settings, settings_help
    from ko_hf.card.render import render_model_card
    from ko_hf.card.write import card_data_from_arguments

    assert "--dummy-knob" in panel(run(build_app(), "train", "--help").output, "KO collision")

    args = dummy(output_dir=str(tmp_path), use_cpu=True, collision="hard", collision_dummy=0.25, report_to="none")
    optimizer = KOTrainer(model=tiny_bert(), args=args).create_optimizer()
    assert [g["collision_dummy"] for g in optimizer.param_groups if g.get("collision", "none") != "none"] == [0.25]

    card = render_model_card(card_data_from_arguments(args))
    assert "collision_dummy" in card and "0.25" in card[card.index("collision_dummy"):][:200]
    snippet = card[card.index("```python"):]
    assert "collision_dummy=0.25" in snippet[:snippet.index("```", 9)]

    setting = parse_setting("hard:dummy=0.75")
    assert setting.config() == {"collision": "hard", "collision_dummy": 0.75}
    assert resolved_settings(args)["collision_dummy"] == 0.25
    assert "dummy=0.25" in describe_record({"collision": "hard", "collision_args": resolved_settings(args)})
    assert "dummy" in settings_help()
