"""Checkpoints written by earlier releases resume exactly as they ran, whatever the current defaults.

The fixtures (``tests/fixtures/legacy_checkpoints_<version>.pt``, written by ``tests/fixtures/legacy_checkpoints.py``
with ko-hf 0.1 and 0.2) hold an optimizer state dict after a few steps and the weights the old release reached a
few steps later. The current optimizer is built from the same hand-written groups — which now mean the current
defaults (DSMC pairing, λ 0.05, the bounded soft form) — and must continue with the old ones after loading.
"""

import sys
from pathlib import Path

import pytest
import torch

from ko_hf.optim import DEFAULTS_KEY, KOAdamW

FIXTURES = Path(__file__).with_name("fixtures")
sys.path.insert(0, str(FIXTURES))
try:
    import legacy_checkpoints as recorded_cases
finally:
    sys.path.remove(str(FIXTURES))


def cases():
    for version in ("0.1", "0.2"):
        data = torch.load(FIXTURES / f"legacy_checkpoints_{version}.pt", weights_only=True)
        for name, case in data["cases"].items():
            yield pytest.param(version, case, id=f"{version}-{name}")


def continue_from(case, flagged):
    model = recorded_cases.make_model()
    model.load_state_dict(case["checkpoint"]["model"])
    optimizer = recorded_cases.make_optimizer(model, dict(flagged))
    optimizer.load_state_dict(case["checkpoint"]["optimizer"])
    recorded_cases.train(model, optimizer, recorded_cases.batches(recorded_cases.STEPS_AFTER, offset=1))
    return model, optimizer


@pytest.mark.parametrize("version, case", cases())
def test_checkpoint_resumes_exactly_as_it_ran(version, case):
    model, optimizer = continue_from(case, case["group"])
    for key, value in case["final"].items():
        assert torch.equal(model.state_dict()[key], value), f"{key} differs from what ko-hf {version} computed"
    assert optimizer.param_groups[1][DEFAULTS_KEY] == version


@pytest.mark.parametrize("version, case", cases())
def test_the_same_groups_built_today_mean_the_current_defaults(version, case):
    """The check above can fail: a fresh optimizer from the same hand-written group collides with today's defaults,
    which would have trained differently wherever the old group relied on a default."""
    flagged = dict(case["group"])
    optimizer = recorded_cases.make_optimizer(recorded_cases.make_model(), flagged)
    group = optimizer.param_groups[1]
    saved = case["checkpoint"]["optimizer"]["param_groups"][1]
    assert group[DEFAULTS_KEY] == "0.3"
    if "collision_pairing" not in flagged:
        assert group["collision_pairing"] == "dsmc"
        assert saved.get("collision_pairing", "all") == "all"
    if "collision_distance_scale" not in flagged:
        assert group["collision_distance_scale"] == 0.05 and saved["collision_distance_scale"] == 1.0


def test_a_0_1_group_that_relied_on_defaults_would_train_differently_under_today_s_defaults():
    data = torch.load(FIXTURES / "legacy_checkpoints_0.1.pt", weights_only=True)
    case = data["cases"]["soft_minimal"]
    state = case["checkpoint"]["optimizer"]
    modern = {**state, "param_groups": [dict(g) for g in state["param_groups"]]}
    modern["param_groups"][1]["collision_form"] = "bounded"
    model = recorded_cases.make_model()
    model.load_state_dict(case["checkpoint"]["model"])
    optimizer = recorded_cases.make_optimizer(model, case["group"])
    optimizer.load_state_dict(modern)
    recorded_cases.train(model, optimizer, recorded_cases.batches(recorded_cases.STEPS_AFTER, offset=1))
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in case["final"].items())


def test_a_run_folder_of_0_2_resumes_with_the_settings_it_ran_with(tiny_model_dir, csv_data, tmp_path):
    """ko-finetune 0.2 kept no run record and its groups had no collision_form: resuming such a folder without
    naming the form continues with the paper's form it ran with, as the straight run did."""
    import shutil

    from test_cli import run
    from test_finetune import head_weight

    flags = ["--max-steps", "4", "--max-train-samples", "12", "--set", "save_steps=2", "--lr", "5e-3",
             "--batch-size", "4", "--seed", "1", "--max-length", "32", "--no-plots", "--collision", "soft",
             "--coll-coef", "0.9"]
    out = tmp_path / "out"
    assert run(tiny_model_dir, "--dataset", csv_data, "-o", out, *flags, "--form", "paper").exit_code == 0
    old = tmp_path / "as-0.2-left-it"
    shutil.copytree(out, old)
    shutil.rmtree(old / "checkpoint-4")
    (old / "ko_run.json").unlink()
    optimizer_file = old / "checkpoint-2" / "optimizer.pt"
    state = torch.load(optimizer_file, weights_only=True)
    for group in state["param_groups"]:
        group.pop("collision_form", None)
        group.pop("ko_hf_defaults", None)
    torch.save(state, optimizer_file)
    resumed = run(tiny_model_dir, "--dataset", csv_data, "-o", old, "--resume-from-checkpoint", "last", *flags)
    assert resumed.exit_code == 0, resumed.output
    torch.testing.assert_close(head_weight(old), head_weight(out), rtol=0, atol=0)
    bounded = run(tiny_model_dir, "--dataset", csv_data, "-o", old, "--resume-from-checkpoint",
                  str(old / "checkpoint-2"), *flags, "--form", "bounded")
    assert bounded.exit_code != 0 and "collision_form: checkpoint 'paper', arguments 'bounded'" in bounded.output
