"""Which weights collide, through the wrappers users put around a model: PEFT, torch.compile, DDP/DataParallel."""

import logging
import subprocess
import sys

import pytest
import torch

from ko_hf import KOTrainer, KOTrainingArguments, collision_target_names

from tiny import tiny_bert

peft = pytest.importorskip("peft")


def lora(model, **config):
    return peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"],
                                                      **config))


def trainable_head(model):
    """The copy of the classifier PEFT trains (modules_to_save), never the frozen original."""
    return model.base_model.model.classifier.modules_to_save["default"].weight


def args(tmp_path, **overrides):
    return KOTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **overrides)


# ------------------------------------------------------------------ a module name selects its weight


def test_module_name_selects_its_weight_not_its_bias():
    assert collision_target_names(tiny_bert(), "classifier") == ["classifier.weight"]
    assert collision_target_names(tiny_bert(), r"bert\.pooler\..*") == ["bert.pooler.dense.weight"]
    with pytest.raises(ValueError, match=r"classifier.bias.*\(3,\).*2-D"):  # a 1-D parameter named exactly
        collision_target_names(tiny_bert(), "classifier.bias")


# ------------------------------------------------------------------ PEFT


def test_peft_head_is_the_trainable_copy_of_the_classifier():
    model = lora(tiny_bert())
    assert collision_target_names(model) == ["classifier.weight"]
    assert collision_target_names(model, "head") == ["classifier.weight"]
    # the module name, a natural regex and the full PEFT name all land on the trainable copy
    for target in ("classifier", r".*classifier.*", "base_model.model.classifier.modules_to_save.default.weight"):
        assert collision_target_names(model, target) == ["classifier.weight"], target
    assert collision_target_names(model, "pooler") == ["bert.pooler.dense.weight"]
    from ko_hf.targets import unwrapped_named_parameters

    params = dict(unwrapped_named_parameters(model))
    assert params["classifier.weight"] is trainable_head(model)
    assert not any("original_module" in name or "modules_to_save" in name for name in params)
    assert "bert.encoder.layer.0.attention.self.query.weight" in params  # LoRA's base_layer hop is left out


def test_peft_frozen_pooler_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match=r"bert.pooler.dense.weight.*frozen.*modules_to_save"):
        KOTrainer(model=lora(tiny_bert()), args=args(tmp_path, collision_targets=["head", "pooler"]))
    model = lora(tiny_bert(), modules_to_save=["pooler"])  # PEFT adds the classifier itself for SEQ_CLS
    trainer = KOTrainer(model=model, args=args(tmp_path, collision_targets=["head", "pooler"]))
    assert trainer.collision_targets == ["bert.pooler.dense.weight", "classifier.weight"]


def test_peft_optimizer_collides_the_trainable_copy_and_metrics_use_plain_names(tmp_path):
    model = lora(tiny_bert())
    trainer = KOTrainer(model=model, args=args(tmp_path, collision="hard"))
    assert trainer.collision_targets == ["classifier.weight"]
    trainer.create_optimizer()
    flagged = [g for g in trainer.optimizer.param_groups if g.get("collision", "none") != "none"]
    assert len(flagged) == 1 and flagged[0]["collision_names"] == ["classifier.weight"]
    assert flagged[0]["params"][0] is trainable_head(model)
    metrics = trainer.collision_metrics()
    assert "ko/classifier.weight/weight_correlation" in metrics
    assert not any("modules_to_save" in key or "base_model" in key for key in metrics)


# ------------------------------------------------------------------ torch.compile, DataParallel, DDP


def test_compiled_model_targets_have_no_orig_mod_prefix(tmp_path):
    compiled = torch.compile(tiny_bert())  # compiles lazily: nothing is compiled here
    assert collision_target_names(compiled, ["head", "pooler"]) == ["bert.pooler.dense.weight", "classifier.weight"]
    trainer = KOTrainer(model=compiled, args=args(tmp_path))
    assert trainer.collision_targets == ["classifier.weight"]
    trainer.create_optimizer()
    flagged = [g for g in trainer.optimizer.param_groups if g.get("collision", "none") != "none"]
    assert flagged[0]["collision_names"] == ["classifier.weight"]
    assert flagged[0]["params"][0] is compiled._orig_mod.classifier.weight
    assert not any("_orig_mod" in key for key in trainer.collision_metrics())


def test_data_parallel_wrapper_is_transparent():
    model = tiny_bert()
    wrapped = torch.nn.DataParallel(model)
    assert collision_target_names(wrapped) == ["classifier.weight"]
    assert collision_target_names(wrapped, "bert.pooler.dense") == ["bert.pooler.dense.weight"]
    assert collision_target_names(wrapped, "module.classifier.weight") == ["classifier.weight"]


DDP_CHECK = """
import sys, tempfile, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from tiny import tiny_bert
from ko_hf import collision_target_names
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
ddp = torch.nn.parallel.DistributedDataParallel(torch.compile(tiny_bert()))
print(collision_target_names(ddp, ["head", "pooler"]))
dist.destroy_process_group()
"""


def test_ddp_around_a_compiled_model_is_transparent():
    from pathlib import Path

    code = DDP_CHECK.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['bert.pooler.dense.weight', 'classifier.weight']"


# ------------------------------------------------------------------ the not-found error and the candidate list


def test_not_found_lists_head_candidates_first_and_says_how_to_list_all():
    model = lora(tiny_bert())
    with pytest.raises(ValueError) as error:
        collision_target_names(model, "decoder")
    message = str(error.value)
    shown = message.split("candidates", 1)[1]
    assert shown.index("classifier.weight") < shown.index("bert.pooler.dense.weight") < shown.index("encoder")
    assert "original_module" not in message and "modules_to_save" not in message
    assert "ko_hf.targets.candidate_targets(model)" in message and "python -m ko_hf.targets" in message
    from ko_hf.targets import candidate_targets, unwrapped_named_parameters

    names = [c.name for c in candidate_targets(model)]
    assert names[:2] == ["classifier.weight", "bert.pooler.dense.weight"]
    two_d = [n for n, p in unwrapped_named_parameters(model) if p.dim() >= 2]
    assert sorted(names) == sorted(two_d)  # all of them, on request
    assert next(c for c in candidate_targets(model) if c.name == "classifier.weight").trainable


def test_candidate_listing_command(tmp_path):
    folder = tmp_path / "tiny"
    tiny_bert().save_pretrained(folder)
    out = subprocess.run([sys.executable, "-m", "ko_hf.targets", str(folder)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[1].split()[0] == "classifier.weight" and "head" in lines[1]
    assert len([line for line in lines[1:] if line.strip()]) == sum(
        p.dim() >= 2 for p in tiny_bert().parameters())


# ------------------------------------------------------------------ two-class warning only when something collides


@pytest.mark.parametrize("collision, warns", [("none", False), ("soft", True), ("hard", True)])
def test_two_class_warning_only_when_collisions_are_on(tmp_path, caplog, collision, warns):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        KOTrainer(model=tiny_bert(num_labels=2), args=args(tmp_path, collision=collision)).create_optimizer()
    assert ("two-class head" in caplog.text) is warns
