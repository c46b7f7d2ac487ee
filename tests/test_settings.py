"""The declaration of the KO settings (ko_hf.settings) and the Markdown table writer."""

import subprocess
import sys

import pytest

from ko_hf import settings
from ko_hf.markdown import markdown_table


def test_settings_module_imports_neither_torch_nor_transformers():
    code = ("import sys, ko_hf.settings, ko_hf.markdown; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_and_short_keys_are_unique():
    names = [s.name for s in settings.ko_settings()]
    keys = [s.key for s in settings.ko_settings() if s.key]
    flags = [f for s in settings.ko_settings() for f in (s.cli_flag, *(f"--{a}" for a in s.aliases))]
    assert len(set(names)) == len(names)
    assert len(set(keys)) == len(keys)
    assert len(set(flags)) == len(flags)


def test_defaults_are_valid_and_a_group_means_what_the_arguments_mean():
    for s in settings.ko_settings():
        assert s.validate(s.default) == s.default
    # one set of defaults: a group that names a type means KOTrainingArguments' defaults for it
    assert settings.group_settings({"collision": "hard"}) == {
        "collision": "hard", "coll_coef": 0.2, "collision_distance_scale": 0.05, "collision_pairing": "dsmc",
        "collision_form": "bounded", "collision_include_self": False, "collision_seed": 42}
    assert settings.group_settings({"collision": "soft"})["coll_coef"] == 0.1
    assert settings.group_settings({"collision": "hard", "coll_coef": None})["coll_coef"] == 0.2
    assert "collision_targets" not in settings.group_settings({"collision": "hard"})
    # only saved state reads what a missing key meant when the group was written (ko-hf 0.1 / 0.2)
    assert settings.legacy_values() == {"collision_pairing": "all", "collision_form": "paper"}


@pytest.mark.parametrize("name, value", [
    ("coll_coef", 1.5), ("coll_coef", -0.1), ("coll_coef", True), ("coll_coef", "0.5"), ("coll_coef", float("nan")),
    ("collision", "medium"), ("collision_pairing", "some"), ("collision_distance_scale", -1.0),
    ("collision_distance_scale", float("inf")), ("collision_include_self", 1), ("collision_seed", 1.5),
    ("collision_targets", []), ("collision_targets", [""]),
])
def test_invalid_values_name_the_value_and_what_is_valid(name, value):
    with pytest.raises(ValueError) as err:
        settings.ko_setting(name).validate(value)
    assert f"{name}={value!r}" in str(err.value)
    assert "valid" in str(err.value) or "must be" in str(err.value)


def test_parse_reads_what_format_writes():
    for name, value in [("coll_coef", 0.25), ("collision_targets", ["head", "pooler"]),
                        ("collision_include_self", True), ("collision_pairing", "all"), ("collision_seed", 7)]:
        s = settings.ko_setting(name)
        assert s.parse(s.format(value)) == value
    with pytest.raises(ValueError, match="coll_coef='x'"):
        settings.ko_setting("coll_coef").parse("x")


def test_describe_shows_what_applies_to_the_type():
    values = {"collision": "hard", "coll_coef": 0.2, "collision_distance_scale": 0.05, "collision_pairing": "dsmc",
              "collision_include_self": True, "collision_seed": 3}
    assert settings.describe(values) == "hard, coef=0.2, λ=0.05, pairing=dsmc"
    assert settings.describe({**values, "collision": "soft", "coll_coef": 0.1}) == "soft, coef=0.1, include_self"
    assert settings.describe({"collision": "none", "coll_coef": 0.0}) == "none (AdamW)"


def test_derived_values():
    assert settings.derived_values({"collision": "hard", "seed": 5}) == {"coll_coef": 0.2, "collision_seed": 5}


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(KeyError, match="coll_coef"):
        settings.ko_setting("coef")


def test_markdown_table():
    assert markdown_table(["a", "b"], [[1, "x"]], align=["left", "right"]) == "| a | b |\n|---|---:|\n| 1 | x |"
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="valid: left, right, center"):
        markdown_table(["a"], [], align="middle")
