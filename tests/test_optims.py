"""Every ``optim`` that KOTrainingArguments names as supported trains with collisions; the list covers transformers'
OptimizerNames except the optimizers that build their own parameter groups (refused) and three we cannot run."""

import pytest
import torch
from transformers.training_args import OptimizerNames

from ko_hf import KOTrainer, KOTrainingArguments
from ko_hf.arguments import FACTORY_OPTIM_PREFIXES, SUPPORTED_OPTIMS
from ko_hf.optim import CollisionMixin

from tiny import tiny_bert, tiny_dataset

#: Standard optimizer classes too, but they need an XLA device, an Ascend NPU or torchdistx.
UNTESTED = {"adamw_torch_xla", "adamw_torch_npu_fused", "adamw_anyprecision"}


def test_supported_optims_are_every_optimizer_name_that_is_not_a_factory():
    names = {name.value for name in OptimizerNames}
    factories = {name for name in names if name.startswith(FACTORY_OPTIM_PREFIXES)}
    assert set(SUPPORTED_OPTIMS) <= names and len(set(SUPPORTED_OPTIMS)) == len(SUPPORTED_OPTIMS)
    assert set(SUPPORTED_OPTIMS) == names - factories - UNTESTED


def test_the_refusal_lists_the_supported_optims(tmp_path):
    with pytest.raises(ValueError, match="galore_adamw") as err:
        KOTrainingArguments(output_dir=str(tmp_path), optim="galore_adamw", collision="hard")
    assert all(name in str(err.value) for name in ("ademamix", "schedule_free_radam", "adamw_torch_4bit", "lion_32bit"))


#: The supported optims by the package they need (the import name): run where it is installed.
BY_PACKAGE = {
    "torch": ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop"),
    "torchao": ("adamw_torch_4bit", "adamw_torch_8bit"),
    "bitsandbytes": ("adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit",
                     "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
                     "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit"),
    "schedulefree": ("schedule_free_adamw", "schedule_free_radam", "schedule_free_sgd"),
    "grokadamw": ("grokadamw",),
    "optimi": ("stable_adamw",),
}


def test_every_supported_optim_has_its_package_named():
    assert sorted(name for names in BY_PACKAGE.values() for name in names) == sorted(SUPPORTED_OPTIMS)


@pytest.mark.parametrize("package", BY_PACKAGE)
def test_supported_optims_train_with_collisions(tmp_path, package):
    pytest.importorskip(package)
    for optim in BY_PACKAGE[package]:
        args = KOTrainingArguments(output_dir=str(tmp_path / optim), optim=optim, use_cpu=True, report_to="none",
                                   max_steps=1, per_device_train_batch_size=8, logging_steps=1, save_strategy="no",
                                   disable_tqdm=True, collision="hard", coll_coef=1.0, learning_rate=1e-3)
        trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(n=8))
        trainer.train()
        assert isinstance(getattr(trainer.optimizer, "optimizer", trainer.optimizer), CollisionMixin), optim
        assert [e for e in trainer.state.log_history if "ko/classifier.weight/accepted_pair_fraction" in e], optim
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters()), optim
