"""ko-finetune --lora: LoRA adapters in the encoder, the head in full; the output reloads (adapter + head)."""

import json
import sys

import pytest
import torch

from ko_hf.finetune import parse_config, prepare_finetune, run_prepared

from test_cli import FAST_FLAGS, assert_user_error, run
from test_finetune import make_config

peft = pytest.importorskip("peft")


def test_lora_run_trains_adapters_and_head_and_reloads(tiny_model_dir, csv_data, tmp_path):
    from ko_hf.lora import load_lora_classifier

    out = tmp_path / "out"
    options, args = parse_config(make_config(tiny_model_dir, csv_data, out, num_train_epochs=2, collision="hard",
                                             coll_coef=0.9, lora=True, lora_r=4, lora_alpha=8,
                                             collision_targets=["head", "pooler"]))
    prepared = prepare_finetune(options, args)
    trainer = prepared.trainer
    assert isinstance(trainer.model, peft.PeftModel)
    assert trainer.collision_targets == ["bert.pooler.dense.weight", "classifier.weight"]  # pooler made trainable
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and not any("attention.self.key" in n for n in trainable)
    result = run_prepared(prepared)
    assert result.head_layers.keys() == {"bert.pooler.dense.weight", "classifier.weight"}
    for name in ("adapter_config.json", "adapter_model.safetensors", "head_config.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "all_results.json").read_text())
    assert "ko/classifier.weight/weight_correlation" in saved and "test_accuracy" in saved

    trained = trainer.model.eval()
    reloaded = load_lora_classifier(out).eval()
    assert reloaded.config.id2label == trained.config.id2label == {0: "BookRestaurant", 1: "GetWeather",
                                                                   2: "PlayMusic"}
    batch = prepared.test_dataset[:6]
    inputs = {k: torch.tensor(batch[k]) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expected = trained(**inputs).logits
        torch.testing.assert_close(reloaded(**inputs).logits, expected)
        # plain peft works too, given the number of labels
        auto = peft.AutoPeftModelForSequenceClassification.from_pretrained(str(out), num_labels=3).eval()
        torch.testing.assert_close(auto(**inputs).logits, expected)


def test_cli_lora_one_liner_and_yaml(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "cli"
    result = run(tiny_model_dir, "--dataset", csv_data, "--lora", "--lora-r", "2", "--lora-alpha", "4",
                 "--lora-target-modules", "query", "--lora-target-modules", "key", "--collision", "hard",
                 "--output-dir", out, *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (2, 4, ["key", "query"])
    assert "classifier" in adapter["modules_to_save"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert any("ko/classifier.weight/accepted_pair_fraction" in e for e in state["log_history"])
    options, _ = parse_config({**make_config(tiny_model_dir, csv_data, tmp_path / "yaml"), "lora": "true",
                               "lora_r": "4", "lora_target_modules": ["query", "value"]})
    assert (options.lora, options.lora_r, options.lora_target_modules) == (True, 4, ["query", "value"])


def test_lora_mistakes_are_one_error_line(tiny_model_dir, csv_data, tmp_path, monkeypatch):
    base = [tiny_model_dir, "--dataset", csv_data, "--output-dir", tmp_path / "out", "--lora", *FAST_FLAGS]
    assert_user_error(run(*base, "--lora-r", "0"), "lora_r=0", "positive integer")
    assert_user_error(run(*base, "--lora-dropout", "1.5"), "lora_dropout=1.5")
    assert_user_error(run(*base, "--lora-target-modules", "nosuchmodule"), "cannot add LoRA adapters",
                      "nosuchmodule")
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    assert_user_error(run(*base), "needs peft", 'pip install "ko-hf[lora]"')
    assert not (tmp_path / "out").exists()
