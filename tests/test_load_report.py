"""transformers' LOAD REPORT, where ko-hf loads a model: not printed for the expected new head, but an encoder
weight the checkpoint lacks or has in another shape is still a warning that names it."""

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from ko_hf.finetune import FinetuneError, finetune, parse_config

from test_finetune import FAST, save_tiny_model


@pytest.fixture
def transformers_warnings(monkeypatch):
    """What ko-hf and transformers log at warning level (their loggers do not propagate to the root logger)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    for name in ("transformers", "ko_hf"):
        logging.getLogger(name).addHandler(handler)
    yield records
    for name in ("transformers", "ko_hf"):
        logging.getLogger(name).removeHandler(handler)


def run(model, csv_data, out):
    return finetune(*parse_config({"model_name_or_path": str(model), "dataset": str(csv_data), "output_dir": str(out),
                                   "max_steps": 1, **FAST}))


def test_a_new_head_prints_no_load_report(tiny_model_dir, csv_data, tmp_path, transformers_warnings, capfd):
    run(tiny_model_dir, csv_data, tmp_path / "out")
    messages = [record.getMessage() for record in transformers_warnings]
    assert not [m for m in messages if "LOAD REPORT" in m or "initialised afresh" in m], messages
    assert "LOAD REPORT" not in capfd.readouterr().err


def test_a_missing_encoder_weight_is_still_a_warning(csv_data, tmp_path, transformers_warnings):
    model = save_tiny_model(tmp_path / "model")
    weights = load_file(model / "model.safetensors")
    key = next(k for k in weights if k.endswith("layer.1.attention.self.query.weight"))
    del weights[key]
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    run(model, csv_data, tmp_path / "out")
    warned = [record.getMessage() for record in transformers_warnings if "initialised afresh" in record.getMessage()]
    assert len(warned) == 1 and "layer.1.attention.self.query.weight" in warned[0], warned
    assert "LOAD REPORT" not in "".join(record.getMessage() for record in transformers_warnings)


def test_an_encoder_weight_of_another_shape_is_a_warning(csv_data, tmp_path, transformers_warnings):
    model = save_tiny_model(tmp_path / "model")
    weights = load_file(model / "model.safetensors")
    key = next(k for k in weights if k.endswith("layer.0.intermediate.dense.bias"))
    weights[key] = torch.zeros(weights[key].shape[0] + 1)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    try:
        run(model, csv_data, tmp_path / "out")
    except FinetuneError as err:  # a refusal naming the resized encoder weight is as good as a warning
        assert "layer.0.intermediate.dense.bias" in str(err)
        return
    warned = [record.getMessage() for record in transformers_warnings if "another shape" in record.getMessage()]
    assert len(warned) == 1 and "layer.0.intermediate.dense.bias" in warned[0], warned
