"""Hyperparameter search over the KO settings: every trial gets its own collision's coef, invalid trials are
rejected before they train, and the ko_hf search space drives optuna."""

import pytest
from transformers import TrainerCallback

from ko_hf import KOTrainer

from test_trainer import ko_args
from tiny import tiny_bert, tiny_dataset

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)


class GroupsAtTrainBegin(TrainerCallback):
    """What each trial trained with: its collision settings and the optimizer's flagged groups."""

    def __init__(self):
        self.trials = []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        flagged = [(g["collision"], g["coll_coef"], tuple(g["collision_names"]))
                   for g in optimizer.param_groups if g.get("collision", "none") != "none"]
        self.trials.append({"collision": args.collision, "coll_coef": args.coll_coef, "flagged": flagged})


def search(tmp_path, hp_space, n_trials, sampler=None, **arg_overrides):
    record = GroupsAtTrainBegin()
    trainer = KOTrainer(args=ko_args(tmp_path, eval_strategy="no", max_steps=3, **arg_overrides),
                        model_init=lambda: tiny_bert(),
                        train_dataset=tiny_dataset(), eval_dataset=tiny_dataset(n=16, seed=1), callbacks=[record])
    values = []

    def objective(metrics):
        values.append(metrics["eval_loss"])
        return metrics["eval_loss"]

    best = trainer.hyperparameter_search(hp_space=hp_space, compute_objective=objective, n_trials=n_trials,
                                         backend="optuna", direction="minimize", sampler=sampler)
    return trainer, record.trials, values, best


def collision_space(trial):  # what a user writes first
    return {"collision": trial.suggest_categorical("collision", ["none", "soft", "hard"])}


def test_trials_over_collision_really_differ(tmp_path):
    """Base arguments collision='none' (coef 0.0): the trials still get 0.1 for soft and 0.2 for hard."""
    grid = optuna.samplers.GridSampler({"collision": ["none", "soft", "hard"]}, seed=0)
    trainer, trials, values, best = search(tmp_path, collision_space, 3, sampler=grid, collision="none")
    by_type = {t["collision"]: t for t in trials}
    assert set(by_type) == {"none", "soft", "hard"}
    assert by_type["none"]["flagged"] == []
    assert by_type["soft"]["flagged"] == [("soft", 0.1, ("classifier.weight",))]
    assert by_type["hard"]["flagged"] == [("hard", 0.2, ("classifier.weight",))]
    order = [t["collision"] for t in trials]
    assert values[order.index("none")] != values[order.index("soft")]  # the soft trial trained differently
    # the search leaves the arguments as they were
    assert (trainer.args.collision, trainer.args.coll_coef) == ("none", 0.0)


def test_ko_search_space_drives_optuna(tmp_path):
    from ko_hf.search import ko_hp_space, settings_from_trial

    grid = optuna.samplers.GridSampler({"collision": ["none", "hard"]}, seed=0)
    _, trials, values, best = search(tmp_path, ko_hp_space(["none", "hard"]), 2, sampler=grid, collision="soft")
    assert sorted((t["collision"], t["coll_coef"]) for t in trials) == [("hard", 0.2), ("none", 0.0)]
    assert settings_from_trial(best.hyperparameters)["collision"] in ("none", "hard")


def test_soft_hard_switch_does_not_keep_the_old_coef(tmp_path):
    """Base arguments collision='hard' (coef 0.2): a soft trial gets soft's 0.1, not hard's 0.2."""
    grid = optuna.samplers.GridSampler({"collision": ["soft", "hard"]}, seed=0)
    _, trials, _, _ = search(tmp_path, collision_space, 2, sampler=grid, collision="hard")
    assert sorted((t["collision"], t["coll_coef"]) for t in trials) == [("hard", 0.2), ("soft", 0.1)]


def test_coef_searched_per_type(tmp_path):
    from ko_hf.search import ko_hp_space, settings_from_trial

    grid = optuna.samplers.GridSampler({"collision": ["hard", "soft"], "hard_coll_coef": [0.9]}, seed=0)
    _, trials, _, _ = search(tmp_path, ko_hp_space(["hard", "soft"], coll_coef={"hard": [0.9]}), 2, sampler=grid)
    assert sorted((t["collision"], t["coll_coef"]) for t in trials) == [("hard", 0.9), ("soft", 0.1)]
    assert settings_from_trial({"collision": "hard", "hard_coll_coef": 0.9}) == {"collision": "hard",
                                                                                 "coll_coef": 0.9}


def test_an_explicit_coef_of_the_arguments_is_kept(tmp_path):
    grid = optuna.samplers.GridSampler({"collision": ["hard"]}, seed=0)
    _, trials, _, _ = search(tmp_path, collision_space, 1, sampler=grid, collision="soft", coll_coef=0.3)
    assert trials[0]["flagged"] == [("hard", 0.3, ("classifier.weight",))]


def test_invalid_trial_is_rejected_before_training_and_the_study_goes_on(tmp_path, caplog):
    def space(trial):  # an out-of-range coef in the first trial, a valid one in the second
        return {"collision": "hard", "coll_coef": 1.5 if trial.number == 0 else 0.5}

    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        _, trials, values, best = search(tmp_path, space, 2)
    assert [t["coll_coef"] for t in trials] == [0.5]  # the invalid trial never reached on_train_begin
    assert len(values) == 1
    assert "rejected before training: coll_coef=1.5 is invalid" in caplog.text


def test_search_space_rejects_bad_choices():
    from ko_hf.search import ko_hp_space

    with pytest.raises(ValueError, match="collisions=.*elastic.*none, soft, hard"):
        ko_hp_space(["hard", "elastic"])
    with pytest.raises(ValueError, match=r"coll_coef\['hard'\]=\(0.2, 1.5\) is invalid"):
        ko_hp_space(coll_coef={"hard": (0.2, 1.5)})
    with pytest.raises(ValueError, match="per-type entries are 'soft' and 'hard'"):
        ko_hp_space(coll_coef={"none": 0.1})
