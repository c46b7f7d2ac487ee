"""KOTrainer under PEFT/LoRA with the default target: collisions land on the trainable head, resume is bitwise,
the saved adapter (with its head) reloads."""

import pytest
import torch

from ko_hf import KOTrainer, KOTrainingArguments

from test_trainer import COMMON, GradientRecorder, TrainerCallbackStop, assert_same_weights, check_recorded, weights
from tiny import tiny_bert, tiny_dataset

peft = pytest.importorskip("peft")


def lora_model(seed=0):
    model = tiny_bert(seed=seed)
    torch.manual_seed(seed + 100)
    return peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                                      target_modules=["query", "value"]))


def lora_args(out, **overrides):
    return KOTrainingArguments(output_dir=str(out), **{**COMMON, "collision": "hard", "coll_coef": 0.9, **overrides})


def head(model):
    return model.base_model.model.classifier


def test_lora_collides_the_trainable_head(tmp_path, monkeypatch):
    recorder = GradientRecorder(monkeypatch)
    model = lora_model()
    frozen_before = head(model).original_module.weight.detach().clone()
    start = head(model).modules_to_save["default"].weight.detach().clone()
    trainer = KOTrainer(model=model, args=lora_args(tmp_path / "out"), train_dataset=tiny_dataset())
    trainer.train()
    check_recorded(recorder, trainer.state.global_step)  # what reached AdamW is the collision of the head's gradient
    assert torch.equal(head(model).original_module.weight, frozen_before)
    assert not torch.equal(head(model).modules_to_save["default"].weight, start)
    logged = [e for e in trainer.state.log_history if "ko/classifier.weight/accepted_pair_fraction" in e]
    assert logged and any(e["ko/classifier.weight/grad_change_ratio"] > 0 for e in logged)


def test_lora_resume_is_bitwise(tmp_path):
    setting = dict(max_steps=8, save_strategy="steps", save_steps=4, per_device_train_batch_size=4)
    straight = KOTrainer(model=lora_model(), args=lora_args(tmp_path / "straight", **setting),
                         train_dataset=tiny_dataset())
    straight.train()

    class StopAt(TrainerCallbackStop):
        step = 4

    first = KOTrainer(model=lora_model(), args=lora_args(tmp_path / "resumed", **setting),
                      train_dataset=tiny_dataset(), callbacks=[StopAt()])
    first.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-4"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    resumed = KOTrainer(model=lora_model(), args=lora_args(tmp_path / "resumed", **setting),
                        train_dataset=tiny_dataset())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 8
    assert_same_weights(weights(straight.model), weights(resumed.model))


def test_lora_adapter_with_head_reloads(tmp_path):
    trainer = KOTrainer(model=lora_model(), args=lora_args(tmp_path / "out"), train_dataset=tiny_dataset())
    trainer.train()
    trainer.save_model()
    trained = trainer.model.eval()
    reloaded = peft.PeftModel.from_pretrained(tiny_bert(), str(tmp_path / "out")).eval()
    assert torch.equal(head(reloaded).modules_to_save["default"].weight, head(trained).modules_to_save["default"].weight)
    batch = tiny_dataset(n=4)[:4]
    inputs = {k: torch.tensor(batch[k]) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained(**inputs).logits)


def saved_peft_classifier(tmp_path, num_labels=3, id2label=None):
    """``trainer.save_model()`` of a KOTrainer run on a PEFT classifier whose base is a local folder: what PEFT
    itself writes (adapter config and weights with the head), nothing of ko-finetune's."""
    from transformers import AutoModelForSequenceClassification

    base = tmp_path / "base"
    tiny_bert().bert.save_pretrained(base)
    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=num_labels, **labels)
    torch.manual_seed(100)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    trainer = KOTrainer(model=model, args=lora_args(tmp_path / "out"),
                        train_dataset=tiny_dataset(num_labels=num_labels))
    trainer.train()
    trainer.save_model()
    return tmp_path / "out", trainer.model.eval()


def logits(model):
    batch = tiny_dataset(n=4)[:4]
    with torch.no_grad():
        return model(**{k: torch.tensor(batch[k]) for k in ("input_ids", "attention_mask")}).logits


def test_any_saved_peft_classifier_reloads(tmp_path, capfd):
    """trainer.save_model() writes no head_config.json: load_lora_classifier reads the number of labels from the
    saved head, through peft's AutoPeftModelForSequenceClassification, without transformers' LOAD REPORT."""
    from ko_hf.lora import HEAD_CONFIG_NAME, load_lora_classifier

    out, trained = saved_peft_classifier(tmp_path)
    assert not (out / HEAD_CONFIG_NAME).exists()
    capfd.readouterr()
    reloaded = load_lora_classifier(out).eval()
    assert isinstance(reloaded, peft.PeftModelForSequenceClassification)
    assert reloaded.config.num_labels == 3
    torch.testing.assert_close(logits(reloaded), logits(trained))
    assert "LOAD REPORT" not in capfd.readouterr().err
    named = load_lora_classifier(out, id2label={0: "x", 1: "y", 2: "z"}).eval()  # names given by the caller
    assert named.config.id2label == {0: "x", 1: "y", 2: "z"}
    torch.testing.assert_close(logits(named), logits(trained))


def test_a_two_label_peft_classifier_reloads_with_its_base_labels(tmp_path):
    from ko_hf.lora import load_lora_classifier

    out, trained = saved_peft_classifier(tmp_path, num_labels=2)
    torch.testing.assert_close(logits(load_lora_classifier(out).eval()), logits(trained))
