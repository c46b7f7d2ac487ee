"""The loss scale of KOTrainer: a classification loss is a batch mean, so gradient accumulation and data
parallelism (tests/test_distributed.py) must not rescale it as transformers 5 does for a loss summed over tokens."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from ko_hf import KOTrainer, KOTrainingArguments

from tiny import VOCAB, tiny_bert, tiny_dataset


def first_step(tmp_path, batch, accumulation, model=None):
    args = KOTrainingArguments(output_dir=str(tmp_path / f"b{batch}-ga{accumulation}"), use_cpu=True,
                               per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                               train_sampling_strategy="sequential", optim="sgd", learning_rate=0.1, max_grad_norm=0,
                               max_steps=1, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                               collision="hard", coll_coef=1.0)
    model = model or tiny_bert(dropout=0.0)
    start = model.classifier.weight.detach().clone()
    trainer = KOTrainer(model=model, args=args, train_dataset=tiny_dataset(n=32))
    trainer.train()
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    return loss, model.classifier.weight.detach() - start


def test_gradient_accumulation_keeps_the_loss_and_gradient_of_one_batch(tmp_path):
    """transformers 5 leaves the loss of a model whose forward takes **kwargs undivided by the accumulation steps
    (it expects a sum over tokens); BERT's classification loss is a batch mean, so 2 steps of 4 gave twice the
    loss and gradient of 1 step of 8."""
    loss, moved = first_step(tmp_path, batch=8, accumulation=1)
    accumulated_loss, accumulated = first_step(tmp_path, batch=4, accumulation=2)
    assert accumulated_loss == pytest.approx(loss, rel=1e-5)
    torch.testing.assert_close(accumulated, moved, rtol=1e-4, atol=1e-7)


class SummedLoss(BertForSequenceClassification):
    """A classifier that declares its loss a sum normalised by ``num_items_in_batch`` (Trainer's contract)."""

    accepts_loss_kwargs = True


def test_a_model_that_declares_its_loss_kwargs_keeps_them(tmp_path):
    args = KOTrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", collision="none")
    assert KOTrainer(model=tiny_bert(), args=args).model_accepts_loss_kwargs is False
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, num_labels=3)
    assert KOTrainer(model=SummedLoss(config), args=args).model_accepts_loss_kwargs is True
    assert KOTrainer(model=BertForMaskedLM(config), args=args).model_accepts_loss_kwargs is True  # tokens summed
