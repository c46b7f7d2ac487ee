"""One set of defaults: a hand-built group, ko_param_groups and KOTrainer all mean what KOTrainingArguments means."""

import logging

import pytest
import torch
from transformers.utils import logging as hf_logging

from ko_hf import KOAdamW, KOTrainer, KOTrainingArguments, collision_generator_seed, hard_collision, ko_param_groups
from ko_hf import soft_collision
from ko_hf.settings import group_setting_names

from tiny import tiny_bert, tiny_dataset


def trainer_groups(tmp_path, collision, **extra):
    args = KOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", collision=collision,
                               **extra)
    trainer = KOTrainer(model=tiny_bert(), args=args)
    return trainer, trainer.create_optimizer().param_groups


def flagged(groups):
    return [g for g in groups if g.get("collision", "none") != "none"]


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_a_group_naming_only_the_type_collides_as_a_trainer_run_does(tmp_path, collision):
    """{"collision": "hard"} alone used to mean coef 0: the optimizer silently did nothing."""
    _, groups = trainer_groups(tmp_path, collision)
    (from_arguments,) = flagged(groups)
    model = tiny_bert()
    hand = KOAdamW([{"params": [model.classifier.weight], "collision": collision}], lr=1e-3).param_groups[0]
    assert {k: hand[k] for k in group_setting_names()} == {k: from_arguments[k] for k in group_setting_names()}
    # and it acts: the documented function of the documented defaults, visibly, on a real gradient
    batch = tiny_dataset(n=16)[:16]
    model(**{k: torch.tensor(v) for k, v in batch.items()}).loss.backward()
    weight = model.classifier.weight
    before = weight.grad.clone()
    optimizer = KOAdamW([{"params": [weight], "collision": collision}], lr=1e-3)
    optimizer.apply_collisions()
    if collision == "soft":
        expected = soft_collision(weight.detach(), before, 0.1, bounded=True)
    else:
        generator = torch.Generator().manual_seed(collision_generator_seed(42, 0, 0))
        expected = hard_collision(weight.detach(), before, 0.2, generator=generator, distance_scale=0.05,
                                  pairing="dsmc", bounded=True)
    assert torch.equal(weight.grad, expected)
    assert optimizer.pop_collision_stats()["group0.param0"]["grad_change_ratio"] > 0.001


def test_ko_param_groups_are_the_groups_kotrainer_builds(tmp_path):
    trainer, groups = trainer_groups(tmp_path, "hard", weight_decay=0.01, coll_coef=0.3, collision_seed=5)
    mine = ko_param_groups(trainer.model, "hard", weight_decay=0.01, coll_coef=0.3, collision_seed=5)
    assert len(mine) == len(groups)
    for a, b in zip(mine, groups):
        assert [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
        assert a["weight_decay"] == b["weight_decay"]
        assert all(a.get(k) == b.get(k) for k in (*group_setting_names(), "collision_names"))
    optimizer = KOAdamW(mine, lr=1e-3)
    assert flagged(optimizer.param_groups)[0]["collision_names"] == ["classifier.weight"]


@pytest.mark.parametrize("model_type", ["bert", "llama"])  # LayerNorm modules; RMSNorm weights by name
def test_decay_parameter_names_are_the_ones_trainer_picks(tmp_path, model_type):
    from transformers import AutoConfig, AutoModelForSequenceClassification, Trainer, TrainingArguments

    from ko_hf.groups import decay_parameter_names

    config = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, num_labels=3, pad_token_id=0)
    model = AutoModelForSequenceClassification.from_config(config)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    assert decay_parameter_names(model) == trainer.get_decay_parameter_names(model)


def test_ko_param_groups_without_collision_keeps_the_weight_decay_split():
    model = tiny_bert()
    groups = ko_param_groups(model, "none", weight_decay=0.1)
    assert not flagged(groups) and [g["weight_decay"] for g in groups] == [0.1, 0.0]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in groups[0]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_ko_param_groups_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match=r"unknown settings \['coef'\].*coll_coef"):
        ko_param_groups(tiny_bert(), "hard", coef=0.2)
    with pytest.raises(ValueError, match="collision='elastic' is not a collision type"):
        ko_param_groups(tiny_bert(), "elastic")
    with pytest.raises(ValueError, match=r"coll_coef=1.5 is invalid"):
        ko_param_groups(tiny_bert(), "soft", coll_coef=1.5)


# ------------------------------------------------------------------ PEFT's default classification config


peft = pytest.importorskip("peft")
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=99)


def peft_model(model_type, target_modules=None, **config):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, num_labels=3, **config)
    model = AutoModelForSequenceClassification.from_config(cfg)
    extra = {} if target_modules is None else {"target_modules": target_modules}
    return peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", **extra))


@pytest.fixture
def logged(caplog):
    hf_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        yield caplog


@pytest.mark.parametrize("model_type, config, target_modules, colliding, left_out", [
    ("bert", SMALL, None, ["classifier.weight"], []),
    ("roberta", SMALL, None, ["classifier.dense.weight", "classifier.out_proj.weight"], []),
    ("deberta-v2", SMALL, None, ["classifier.weight"], ["pooler.dense.weight"]),
    ("modernbert", dict(SMALL, global_attn_every_n_layers=1, local_attention=16, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, cls_token_id=1, sep_token_id=2), "all-linear",
     ["classifier.weight"], ["head.dense.weight"]),
])
def test_peft_default_config_collides_the_trainable_head(logged, model_type, config, target_modules, colliding,
                                                         left_out):
    model = peft_model(model_type, target_modules, **config)
    groups = flagged(ko_param_groups(model, "hard"))
    assert [g["collision_names"][0] for g in groups] == colliding
    assert all(p.requires_grad for g in groups for p in g["params"])
    if left_out:
        assert logged.text.count("are frozen") == 1 and all(name in logged.text for name in left_out)
        assert "modules_to_save" in logged.text
    else:
        assert "frozen" not in logged.text


@pytest.mark.parametrize("model_type, config", [
    ("t5", dict(d_model=32, num_layers=2, num_heads=2, d_ff=37, d_kv=16, vocab_size=99)),
    ("bart", dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, vocab_size=99)),
])
def test_peft_default_config_that_leaves_the_whole_head_frozen_is_refused(tmp_path, model_type, config):
    """PEFT's default trains no part of T5's or BART's classification head: nothing could collide."""
    model = peft_model(model_type, **config)
    with pytest.raises(ValueError, match=r"classification_head.*frozen.*modules_to_save"):
        ko_param_groups(model, "soft")
    with pytest.raises(ValueError, match=r"classification_head.*frozen.*modules_to_save"):
        KOTrainer(model=model, args=KOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))


def test_lora_factors_in_the_head_are_never_head_targets():
    model = peft_model("xlnet", "all-linear", d_model=32, n_layer=2, n_head=2, d_inner=37, vocab_size=99)
    with pytest.raises(ValueError, match=r"sequence_summary.summary.weight.*logits_proj.weight.*frozen"):
        ko_param_groups(model, "hard")
