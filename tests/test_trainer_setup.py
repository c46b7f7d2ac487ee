"""KOTrainer's set-up: default arguments, optimizers that cannot carry collisions, ko/ figures in the results."""

import json

import pytest
import torch

from ko_hf import KOTrainer, KOTrainingArguments

from test_trainer import COMMON, ko_args
from tiny import tiny_bert, tiny_dataset


def test_trainer_without_args_builds_default_ko_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = KOTrainer(tiny_bert())
    assert isinstance(trainer.args, KOTrainingArguments)
    assert (trainer.args.output_dir, trainer.args.collision, trainer.args.coll_coef) == ("tmp_trainer", "soft", 0.1)
    assert trainer.collision_targets == ["classifier.weight"]


@pytest.mark.parametrize("optim", ["galore_adamw", "galore_adafactor_layerwise", "apollo_adamw", "lomo", "adalomo"])
def test_factory_optimizers_are_refused_when_the_arguments_are_built(tmp_path, optim):
    with pytest.raises(ValueError) as error:
        ko_args(tmp_path, collision="hard", optim=optim, optim_target_modules=["query"])
    message = str(error.value)
    assert f"optim={optim!r}" in message and "OptimizerNames" not in message
    assert "adamw_torch" in message and "collision='none'" in message
    # without collisions it is plain Trainer, which builds these optimizers itself
    assert ko_args(tmp_path, collision="none", optim=optim, optim_target_modules=["query"]).collision == "none"


def test_factory_optimizer_cls_is_refused_at_construction(tmp_path):
    def factory(params, **kwargs):  # a callable that is not a torch.optim.Optimizer class
        return torch.optim.AdamW(params, **kwargs)

    with pytest.raises(ValueError, match=r"optimizer_cls_and_kwargs builds its own parameter groups.*adamw_torch"):
        KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision="hard"),
                  optimizer_cls_and_kwargs=(factory, {"lr": 1e-3}))


def test_final_condensation_lands_in_train_and_all_results(tmp_path):
    trainer = KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision="hard", coll_coef=0.9,
                                                        collision_targets=["head", "pooler"]),
                        train_dataset=tiny_dataset())
    output = trainer.train()
    trainer.save_metrics("train", output.metrics)
    out = tmp_path / "out"
    for file in ("train_results.json", "all_results.json"):
        saved = json.loads((out / file).read_text())
        for name in ("classifier.weight", "bert.pooler.dense.weight"):
            for metric in ("weight_correlation", "neuron_similarity"):
                assert isinstance(saved[f"ko/{name}/{metric}"], float), (file, name, metric)
        assert "ko/weight_correlation" in saved
    params = dict(trainer.model.named_parameters())
    from ko_hf.collision import weight_correlation

    assert output.metrics["ko/classifier.weight/weight_correlation"] == pytest.approx(
        weight_correlation(params["classifier.weight"].detach()))
    assert output.metrics["train_loss"] > 0 and trainer.state.global_step == COMMON["max_steps"]


def test_fsdp_and_deepspeed_refusals_say_what_works(tmp_path):
    from pathlib import Path

    trainer = KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision="hard"))
    trainer.is_fsdp_enabled = True  # what accelerate's FSDP plugin sets; Trainer+FSDP does not run on CPU
    with pytest.raises(ValueError, match=r"refuses FSDP.*FSDP2.*examples/fsdp2_train.py.*README's FSDP section"):
        trainer._check_supported_setup()
    assert (Path(__file__).resolve().parents[1] / "examples" / "fsdp2_train.py").is_file()
    trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled = False, True
    with pytest.raises(ValueError, match="DeepSpeed ZeRO shards"):
        trainer._check_supported_setup()
