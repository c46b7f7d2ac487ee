"""Guard rails: a collision that cannot act, or that turns a gradient around, is said once, plainly, per target."""

import logging
import math

import pytest
import torch
from transformers.utils import logging as hf_logging

from ko_hf import KOAdamW, soft_collision
from ko_hf.collision import row_cosines


@pytest.fixture
def warnings_logged(caplog):
    hf_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        yield caplog


def condensed_layer(n=384, d=384, seed=0):
    """A wide layer whose neurons have condensed (rows nearly parallel) and whose gradient rows are too: the state a
    384×384 hidden layer of a head reaches after training (weight correlation ≫ its 0.04 at init)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=gen)
    weight = direction + 0.3 * torch.randn(n, d, generator=gen)
    signs = torch.where(torch.rand(n, 1, generator=gen) < 0.5, -1.0, 1.0)
    grad = signs * (torch.randn(n, 1, generator=gen).abs() + 0.1) * (torch.randn(d, generator=gen)
                                                                     + 0.5 * torch.randn(n, d, generator=gen))
    return torch.nn.Parameter(weight), grad


def run_steps(optimizer, param, grad, steps):
    for _ in range(steps):
        param.grad = grad.clone()
        optimizer.step()


def test_paper_soft_form_at_coef_0_5_on_a_384_by_384_layer_is_warned_about_once(warnings_logged):
    param, grad = condensed_layer()
    optimizer = KOAdamW([{"params": [param], "collision": "soft", "coll_coef": 0.5,
                          "collision_form": "paper", "collision_names": ["pre_classifier.weight"]}], lr=1e-4)
    run_steps(optimizer, param, grad, 3)
    reversed_ = [w for w in optimizer.collision_warnings if w.kind == "reversed"]
    assert len(reversed_) == 1 and reversed_[0].target == "pre_classifier.weight" and reversed_[0].step == 1
    message = reversed_[0].message
    assert "'pre_classifier.weight' (384×384)" in message and "cos(g*, g) = -" in message
    assert "collision_form='bounded'" in message and "over step 1 " in message
    assert warnings_logged.text.count("reverses the gradient") == 1


def test_bounded_soft_form_never_turns_a_row_around_where_the_paper_s_does():
    param, grad = condensed_layer()
    paper = soft_collision(param.detach(), grad, 0.5)
    bounded = soft_collision(param.detach(), grad, 0.5, bounded=True)
    assert row_cosines(paper, grad).mean() < 0
    assert row_cosines(bounded, grad).min() >= math.sqrt(1 - 0.5**2) - 1e-6
    change = torch.linalg.vector_norm(bounded - grad, dim=1)
    assert (change <= 0.5 * torch.linalg.vector_norm(grad, dim=1) * (1 + 1e-5)).all()
    optimizer = KOAdamW([{"params": [param], "collision": "soft", "coll_coef": 0.5}], lr=1e-4)
    run_steps(optimizer, param, grad, 3)
    assert not [w for w in optimizer.collision_warnings if w.kind == "reversed"]


def test_bounded_and_paper_forms_agree_where_the_change_is_within_the_cap():
    gen = torch.Generator().manual_seed(3)
    weight, grad = 0.02 * torch.randn(7, 384, generator=gen), torch.randn(7, 384, generator=gen)
    paper, bounded = soft_collision(weight, grad, 0.1), soft_collision(weight, grad, 0.1, bounded=True)
    assert not torch.equal(paper, grad)
    torch.testing.assert_close(bounded, paper, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_a_one_row_head_is_warned_about_when_the_optimizer_is_built(warnings_logged, collision):
    score = torch.nn.Parameter(torch.randn(1, 16))
    optimizer = KOAdamW([{"params": [score], "collision": collision, "collision_names": ["score.weight"]}], lr=1e-3)
    (warning,) = optimizer.collision_warnings
    assert warning.kind == "inert" and warning.step == 0 and "cannot act on 'score.weight' (1×16)" in warning.message
    assert "one neuron" in warnings_logged.text


def test_a_two_row_head_under_the_paper_s_hard_collision_is_a_random_rotation(warnings_logged):
    head = torch.nn.Parameter(torch.randn(2, 16))
    optimizer = KOAdamW([{"params": [head], "collision": "hard", "collision_form": "paper",
                          "collision_names": ["classifier.weight"]}], lr=1e-3)
    (warning,) = optimizer.collision_warnings
    assert "two-class head" in warning.message and "random direction of the same norm" in warning.message


def test_a_two_row_head_under_the_bounded_hard_collision_is_a_small_random_tilt(warnings_logged):
    head = torch.nn.Parameter(torch.randn(2, 16))
    optimizer = KOAdamW([{"params": [head], "collision": "hard", "collision_names": ["classifier.weight"]}], lr=1e-3)
    (warning,) = optimizer.collision_warnings
    assert "two-class head" in warning.message and "random tilt of at most coll_coef" in warning.message
    assert "same norm" not in warning.message
    grad = torch.randn(1, 16)
    head.grad = torch.cat([grad, -grad])
    before = head.grad.clone()
    optimizer.apply_collisions()
    assert (head.grad - before).norm() <= 0.2 * before.norm() * (1 + 1e-5)


def test_non_finite_gradients_are_not_reported_as_reversed(warnings_logged):
    param, grad = condensed_layer(n=16, d=8)
    optimizer = KOAdamW([{"params": [param], "collision": "soft", "coll_coef": 0.5, "collision_form": "paper",
                          "collision_names": ["w"]}], lr=1e-4)
    run_steps(optimizer, param, torch.full_like(grad, float("nan")), 1)
    assert optimizer.collision_warnings == [] and "nan" not in warnings_logged.text


def test_the_guard_reads_the_device_after_the_first_step_and_once_per_window(monkeypatch):
    param, grad = condensed_layer(n=8, d=4)
    optimizer = KOAdamW([{"params": [param], "collision": "soft"}], lr=1e-4)
    optimizer.guard_window = 5
    checked = []
    original = optimizer.check_collisions
    monkeypatch.setattr(optimizer, "check_collisions", lambda: checked.append(optimizer._guard_steps) or original())
    run_steps(optimizer, param, grad, 12)
    assert checked == [1, 5, 10]
    optimizer.guard_window = None
    run_steps(optimizer, param, grad, 10)
    assert checked == [1, 5, 10]


# ------------------------------------------------------------------ through KOTrainer: the log, the summary, the card


def distilbert_with_a_condensed_384_layer(seed=0):
    """A tiny DistilBERT (dim 384) whose 384×384 pre_classifier has condensed: its rows nearly parallel, as a wide
    hidden layer of a head gets after training."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=50, dim=384, n_layers=1, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64, num_labels=3)
    model = DistilBertForSequenceClassification(config)
    with torch.no_grad():
        direction = torch.randn(384) * 0.05
        model.pre_classifier.weight.copy_(direction + 0.005 * torch.randn(384, 384))
    return model


def test_paper_soft_form_on_a_384_layer_is_in_the_log_the_summary_and_the_card(tmp_path, warnings_logged):
    from ko_hf import KOTrainer, KOTrainingArguments

    from tiny import tiny_dataset

    args = KOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=3,
                               per_device_train_batch_size=4, learning_rate=1e-4, save_strategy="no",
                               collision="soft", coll_coef=0.5, collision_form="paper",
                               collision_targets=["pre_classifier"])
    trainer = KOTrainer(model=distilbert_with_a_condensed_384_layer(), args=args, train_dataset=tiny_dataset(n=12))
    trainer.train()
    (message,) = [w for w in trainer.collision_warnings if "reverses the gradient" in w]
    assert "'pre_classifier.weight' (384×384)" in message and "collision_form='bounded'" in message
    assert warnings_logged.text.count("reverses the gradient of 'pre_classifier.weight'") == 1
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "reverses the gradient of" in card and "pre_classifier.weight" in card
    bounded = KOTrainer(model=distilbert_with_a_condensed_384_layer(), train_dataset=tiny_dataset(n=12),
                        args=KOTrainingArguments(**{**args.to_dict(), "collision_form": "bounded",
                                                    "output_dir": str(tmp_path / "bounded")}))
    bounded.train()
    assert bounded.collision_warnings == []


def test_a_one_row_head_is_in_the_log_and_the_card(tmp_path, warnings_logged):
    from datasets import Dataset

    from ko_hf import KOTrainer, KOTrainingArguments

    from tiny import tiny_bert, tiny_dataset

    data = tiny_dataset(n=8).to_dict()
    data["labels"] = [float(label) for label in data["labels"]]  # a regression head: one output neuron
    args = KOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2,
                               per_device_train_batch_size=4, save_strategy="no", collision="hard")
    trainer = KOTrainer(model=tiny_bert(num_labels=1), args=args, train_dataset=Dataset.from_dict(data))
    trainer.train()
    (message,) = trainer.collision_warnings
    assert "cannot act on 'classifier.weight' (1×32)" in message and "regression or reward head" in message
    assert "cannot act on 'classifier.weight'" in warnings_logged.text
    trainer.create_model_card()
    assert "cannot act on" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_ko_finetune_prints_the_warnings_in_its_summary(tiny_model_dir, tmp_path):
    from test_cli import run

    rows = ["text,label"] + [f"{'good' if i % 2 else 'bad'} words number {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(24)]
    (tmp_path / "two.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run(tiny_model_dir, "--dataset", tmp_path / "two.csv", "-o", tmp_path / "out", "--collision", "hard",
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "16", "--no-plots")
    assert result.exit_code == 0, result.output
    summary = " ".join(result.output.split())
    assert "Warning: hard collision on 'classifier.weight' (2×32), a two-class head" in summary
