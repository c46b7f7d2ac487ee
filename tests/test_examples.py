"""The examples run as their docstrings say, on a tiny model and local data."""

import runpy

import pytest
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_accelerate_loop_trains_with_ko_param_groups(tiny_model_dir, csv_data, capsys):
    module = runpy.run_path(str(EXAMPLES / "accelerate_loop.py"))
    result = module["main"](["--model", str(tiny_model_dir), "--dataset", str(csv_data), "--epochs", "1",
                             "--cpu", "--max-length", "16"])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert -1.0 <= result["classifier.weight/grad_cosine"] <= 1.0  # the head collided, with the hard defaults
    assert "test accuracy" in capsys.readouterr().out


def test_setfit_head_phase_steps_ko(tiny_model_dir, csv_data, capsys):
    pytest.importorskip("setfit")
    module = runpy.run_path(str(EXAMPLES / "setfit_ko.py"))
    result = module["main"](["--model", str(tiny_model_dir), "--dataset", str(csv_data), "--per-class", "2",
                             "--head-epochs", "2"])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert -1.0 <= result["linear.weight/grad_cosine"] <= 1.0  # SetFit's head collided
    assert "head collisions" in capsys.readouterr().out
