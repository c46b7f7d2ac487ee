import pytest
import torch
from transformers import BertConfig, BertModel, HfArgumentParser, Trainer, TrainingArguments

from ko_hf import (
    KOAdamW,
    KOTrainer,
    KOTrainingArguments,
    collision_generator_seed,
    hard_collision,
    soft_collision,
)

from tiny import tiny_bert, tiny_dataset

COMMON = dict(
    use_cpu=True,
    per_device_train_batch_size=8,
    learning_rate=2e-3,
    max_steps=6,
    logging_steps=2,
    save_strategy="no",
    report_to="none",
    disable_tqdm=True,
    seed=7,
)


def ko_args(tmp_path, **overrides):
    return KOTrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, **overrides})


def train(trainer_cls, args, model=None, data=None, **kwargs):
    model = model if model is not None else tiny_bert()
    trainer = trainer_cls(model=model, args=args, train_dataset=data or tiny_dataset(), **kwargs)
    trainer.train()
    return trainer


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


# ------------------------------------------------------------------ no collision is plain Trainer


@pytest.mark.parametrize("setting", [dict(collision="none"), dict(collision="soft", coll_coef=0.0),
                                     dict(collision="hard", coll_coef=0.0)])
def test_no_collision_is_bitwise_plain_trainer(tmp_path, setting):
    plain = train(Trainer, TrainingArguments(output_dir=str(tmp_path / "plain"), **COMMON))
    ko = train(KOTrainer, ko_args(tmp_path, **setting))
    assert_same_weights(weights(plain.model), weights(ko.model))


# ------------------------------------------------------------------ what reaches AdamW


class GradientRecorder:
    """Test-only hook: the gradients when KO's step starts (after clipping and unscaling) and when AdamW's
    own step starts (after the collision)."""

    def __init__(self, monkeypatch):
        self.before, self.at_base = [], []
        real_apply = KOAdamW.apply_collisions
        real_step = torch.optim.AdamW.step
        recorder = self

        def apply_collisions(opt):
            recorder.before.append(recorder.snapshot(opt))
            return real_apply(opt)

        def base_step(opt, *args, **kwargs):
            recorder.at_base.append(recorder.snapshot(opt))
            return real_step(opt, *args, **kwargs)

        monkeypatch.setattr(KOAdamW, "apply_collisions", apply_collisions)
        monkeypatch.setattr(torch.optim.AdamW, "step", base_step)

    @staticmethod
    def snapshot(opt):
        out = []
        for index, group in enumerate(opt.param_groups):
            for p in group["params"]:
                if p.grad is not None:
                    out.append((index, dict(group), p.detach().clone(), p.grad.detach().clone()))
        return out


def expected_gradient(group, index, weight, grad):
    bounded = group["collision_form"] == "bounded"
    if group["collision"] == "soft":
        return soft_collision(weight, grad, group["coll_coef"], include_self=group["collision_include_self"],
                              bounded=bounded)
    seed = collision_generator_seed(group["collision_seed"], group["collision_step"], index)
    return hard_collision(weight, grad, group["coll_coef"], generator=torch.Generator().manual_seed(seed),
                          distance_scale=group["collision_distance_scale"], pairing=group["collision_pairing"],
                          bounded=bounded)


def check_recorded(recorder, steps):
    assert len(recorder.before) == len(recorder.at_base) == steps
    collided = 0
    for before, after in zip(recorder.before, recorder.at_base):
        assert len(before) == len(after)
        for (index, group, weight, grad), (_, _, _, handed) in zip(before, after):
            if group.get("collision", "none") == "none":
                assert torch.equal(grad, handed), "a parameter outside the targets had its gradient changed"
            else:
                expected = expected_gradient(group, index, weight, grad)
                torch.testing.assert_close(handed, expected, rtol=1e-6, atol=1e-7)
                collided += not torch.equal(handed, grad)
    assert collided >= steps // 2, "the collision never changed the head's gradient"


@pytest.mark.parametrize(
    "setting",
    [
        dict(collision="soft", coll_coef=0.5),
        dict(collision="hard", coll_coef=1.0),
        dict(collision="soft", coll_coef=0.5, max_grad_norm=1e-3),  # clipping active on every step
        dict(collision="hard", coll_coef=0.9, collision_distance_scale=1.0, max_grad_norm=1e-3),
        dict(collision="soft", coll_coef=0.5, gradient_accumulation_steps=3),
        dict(collision="hard", coll_coef=1.0, gradient_accumulation_steps=3),
        dict(collision="soft", coll_coef=0.5, bf16=True),
        dict(collision="hard", coll_coef=1.0, bf16=True, max_grad_norm=0.01),
    ],
    ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()),
)
def test_head_gradient_is_collision_of_clipped_unscaled_gradient(tmp_path, monkeypatch, setting):
    recorder = GradientRecorder(monkeypatch)
    trainer = train(KOTrainer, ko_args(tmp_path, **setting))
    check_recorded(recorder, trainer.state.global_step)
    assert trainer.state.global_step == COMMON["max_steps"]
    if setting.get("max_grad_norm", 1.0) < 0.1:
        for snapshot in recorder.before:
            total = torch.sqrt(sum((grad.double() ** 2).sum() for *_, grad in snapshot))
            assert total <= setting["max_grad_norm"] * (1 + 1e-4), "KO saw an unclipped gradient"


def test_fp16_where_supported(tmp_path, monkeypatch):
    try:
        args = ko_args(tmp_path, collision="hard", coll_coef=1.0, fp16=True)
    except ValueError as error:  # pragma: no cover - depends on the transformers build
        pytest.skip(f"fp16 not available on CPU here: {error}")
    recorder = GradientRecorder(monkeypatch)
    try:
        trainer = train(KOTrainer, args)
    except (RuntimeError, ValueError) as error:  # pragma: no cover
        pytest.skip(f"fp16 not available on CPU here: {error}")
    # Steps the scaler skips (inf/NaN) never reach the optimizer; every step that did is checked.
    check_recorded(recorder, len(recorder.before))
    assert len(recorder.before) >= 1


# ------------------------------------------------------------------ metrics


PER_TARGET = ("weight_correlation", "neuron_similarity", "grad_change_ratio", "grad_cosine", "grad_cosine_min",
              "accepted_pair_fraction")


def test_ko_metrics_are_logged_per_target_without_repeating_them(tmp_path):
    trainer = train(KOTrainer, ko_args(tmp_path, collision="hard", coll_coef=0.9))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == COMMON["max_steps"] // COMMON["logging_steps"]
    for entry in logs:
        # One target: its own keys only; an aggregate would repeat them.
        assert {k for k in entry if k.startswith("ko/")} == {f"ko/classifier.weight/{k}" for k in PER_TARGET}
        values = {k: entry[f"ko/classifier.weight/{k}"] for k in PER_TARGET}
        assert 0 <= values["accepted_pair_fraction"] <= 1
        assert 0 < values["weight_correlation"] <= values["neuron_similarity"] <= 1
        assert -1 <= values["grad_cosine_min"] <= values["grad_cosine"] <= 1
    assert any(entry["ko/classifier.weight/grad_change_ratio"] > 0 for entry in logs)


def test_aggregates_are_logged_with_two_targets(tmp_path):
    trainer = train(KOTrainer, ko_args(tmp_path, collision="hard", coll_coef=0.9, collision_targets=["head", "pooler"]))
    names = ["bert.pooler.dense.weight", "classifier.weight"]
    for entry in (e for e in trainer.state.log_history if "loss" in e):
        per = {k: [entry[f"ko/{n}/{k}"] for n in names] for k in PER_TARGET}
        assert entry["ko/weight_correlation"] == pytest.approx(sum(per["weight_correlation"]) / 2)
        assert entry["ko/neuron_similarity"] == max(per["neuron_similarity"])
        assert entry["ko/grad_change_ratio"] == pytest.approx(sum(per["grad_change_ratio"]) / 2)
        assert entry["ko/grad_cosine"] == pytest.approx(sum(per["grad_cosine"]) / 2)
        assert entry["ko/grad_cosine_min"] == min(per["grad_cosine_min"])
        # pooled over candidate pairs: 32 // 2 of the pooler and 3 // 2 of the classifier per step
        pooled = (16 * per["accepted_pair_fraction"][0] + 1 * per["accepted_pair_fraction"][1]) / 17
        assert entry["ko/accepted_pair_fraction"] == pytest.approx(pooled)


def test_logged_metrics_are_read_without_torch_or_the_trainer():
    import subprocess
    import sys

    code = ("import sys, ko_hf.logged_metrics; "
            "print(sorted(m for m in ('torch', 'transformers', 'ko_hf.trainer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the model card, the plots and compare read them without importing the trainer


def test_logged_metric_reads_aggregates_and_single_targets():
    from ko_hf.trainer import logged_metric

    assert logged_metric({"ko/head/weight_correlation": 0.3}, "weight_correlation") == 0.3
    assert logged_metric({"ko/a/weight_correlation": 0.3, "ko/b/weight_correlation": 0.5,
                          "ko/weight_correlation": 0.4}, "weight_correlation") == 0.4
    assert logged_metric({"ko/a/weight_correlation": 0.3, "ko/b/weight_correlation": 0.5}, "weight_correlation") is None
    assert logged_metric({"loss": 1.0}, "grad_cosine") is None


def test_baseline_logs_condensation_but_no_collision_stats(tmp_path):
    trainer = train(KOTrainer, ko_args(tmp_path, collision="none"))
    entry = next(e for e in trainer.state.log_history if "loss" in e)
    assert {k for k in entry if k.startswith("ko/")} == {"ko/classifier.weight/weight_correlation",
                                                         "ko/classifier.weight/neuron_similarity"}


def test_a_collision_that_reverses_the_gradient_is_warned_about_once(tmp_path, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        train(KOTrainer, ko_args(tmp_path, collision="hard", coll_coef=1.0, collision_pairing="all",
                                 collision_form="paper"))
    warnings = [r.getMessage() for r in caplog.records if "reverses the gradient" in r.getMessage()]
    assert len(warnings) == 1 and "'classifier.weight'" in warnings[0] and "collision_pairing='dsmc'" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        train(KOTrainer, ko_args(tmp_path / "dsmc", collision="hard", coll_coef=1.0, collision_pairing="dsmc"))
    assert "reverses the gradient" not in caplog.text


def test_reversed_gradient_on_a_two_row_head_does_not_advise_a_lower_coef():
    """On a two-class head the only pair is accepted at almost any coef, so "lower coll_coef" would not help."""
    from ko_hf.guards import reversed_gradient_warning
    from ko_hf.settings import group_settings

    for rows, pairing, expected, not_expected in [
        (2, "dsmc", "collision_targets=['head', 'pooler']", "Lower coll_coef"),
        (2, "all", "collision_targets=['head', 'pooler']", "Lower coll_coef"),
        (3, "dsmc", "Lower coll_coef.", "pooler"),
        (3, "all", "Use collision_pairing='dsmc' (the defaults", "pooler"),
    ]:
        settings = group_settings({"collision": "hard", "collision_pairing": pairing})
        message = reversed_gradient_warning("classifier.weight", (rows, 32), settings, -0.07, 1, 1)
        assert "reverses the gradient" in message and expected in message and not_expected not in message, message


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_resume_gives_the_same_weights(tmp_path, collision):
    setting = dict(collision=collision, coll_coef=0.9, max_steps=8, save_strategy="steps", save_steps=4,
                   per_device_train_batch_size=4)
    straight = train(KOTrainer, ko_args(tmp_path / "straight", **setting))

    class StopAt(TrainerCallbackStop):
        step = 4

    first = KOTrainer(model=tiny_bert(), args=ko_args(tmp_path / "resumed", **setting),
                      train_dataset=tiny_dataset(), callbacks=[StopAt()])
    first.train()
    assert first.state.global_step == 4
    checkpoint = tmp_path / "resumed" / "out" / "checkpoint-4"
    assert checkpoint.is_dir()
    resumed = KOTrainer(model=tiny_bert(seed=123), args=ko_args(tmp_path / "resumed", **setting),
                        train_dataset=tiny_dataset())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 8
    assert_same_weights(weights(straight.model), weights(resumed.model))


from transformers import TrainerCallback  # noqa: E402


class TrainerCallbackStop(TrainerCallback):
    step = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
            control.should_save = True
        return control


# ------------------------------------------------------------------ arguments and bad input


def test_defaults_and_validation(tmp_path):
    from ko_hf.trainer import DEFAULT_COLL_COEF, DEFAULT_PAIRING

    args = ko_args(tmp_path)
    assert args.collision == "soft" and args.coll_coef == DEFAULT_COLL_COEF["soft"]
    assert args.collision_seed == COMMON["seed"]
    hard = ko_args(tmp_path, collision="hard")
    assert hard.coll_coef == DEFAULT_COLL_COEF["hard"] and hard.collision_pairing == DEFAULT_PAIRING == "dsmc"
    with pytest.raises(ValueError, match=r"collision_pairing='pairs' is not a pairing; valid: dsmc, all"):
        ko_args(tmp_path, collision="hard", collision_pairing="pairs")
    with pytest.raises(ValueError, match=r"coll_coef=True"):
        ko_args(tmp_path, collision="hard", coll_coef=True)
    with pytest.raises(ValueError, match=r"collision='elastic'.*none, soft, hard"):
        ko_args(tmp_path, collision="elastic")
    with pytest.raises(ValueError, match=r"coll_coef=1.5.*\[0, 1\]"):
        ko_args(tmp_path, coll_coef=1.5)
    with pytest.raises(ValueError, match=r"collision_distance_scale=-2"):
        ko_args(tmp_path, collision="hard", collision_distance_scale=-2)


def test_bad_targets_and_models_fail_at_construction(tmp_path):
    with pytest.raises(ValueError, match=r"'decoder' matches no parameter.*classifier.weight"):
        KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision_targets=["decoder"]))
    with pytest.raises(ValueError, match=r"classifier.bias.*\(3,\).*2-D"):
        KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision_targets=["classifier.bias"]))
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16))
    with pytest.raises(ValueError, match="no head outside its base model"):
        KOTrainer(model=encoder, args=ko_args(tmp_path))
    with pytest.raises(ValueError, match="needs KOTrainingArguments"):
        KOTrainer(model=tiny_bert(), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True))


def test_user_optimizer_without_collisions_is_refused(tmp_path):
    model = tiny_bert()
    with pytest.raises(ValueError, match="silently skip collisions"):
        KOTrainer(model=model, args=ko_args(tmp_path), optimizers=(torch.optim.AdamW(model.parameters()), None))


def test_two_class_head_warns(tmp_path, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        trainer = KOTrainer(model=tiny_bert(num_labels=2), args=ko_args(tmp_path))
        trainer.create_optimizer()  # the optimizer says it once, when it is built
    assert caplog.text.count("two-class head") == 1
    assert trainer.collision_warnings and "two-class head" in trainer.collision_warnings[0]


def test_targets_with_pooler(tmp_path):
    trainer = KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision_targets=["head", "pooler"]))
    assert trainer.collision_targets == ["bert.pooler.dense.weight", "classifier.weight"]
    trainer.create_optimizer()
    flagged = [g["collision_names"] for g in trainer.optimizer.param_groups if g.get("collision", "none") != "none"]
    assert flagged == [["bert.pooler.dense.weight"], ["classifier.weight"]]
    assert isinstance(trainer.optimizer, torch.optim.AdamW)


def test_optimizer_cls_and_kwargs_is_honoured(tmp_path):
    trainer = KOTrainer(model=tiny_bert(), args=ko_args(tmp_path, collision="hard"),
                        optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}))
    trainer.create_optimizer()
    assert isinstance(trainer.optimizer, torch.optim.SGD) and type(trainer.optimizer).__name__ == "KOSGD"
    assert trainer.optimizer.param_groups[-1]["collision"] == "hard"
    assert trainer.optimizer.param_groups[-1]["collision_pairing"] == "dsmc"


def test_arguments_parse_from_flags_and_yaml(tmp_path):
    parser = HfArgumentParser(KOTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--collision", "hard", "--coll_coef", "0.7",
         "--collision_targets", "head", "pooler", "--collision_distance_scale", "0.5", "--use_cpu", "true",
         "--collision_pairing", "all"]
    )
    assert (args.collision, args.coll_coef, args.collision_targets, args.collision_distance_scale,
            args.collision_pairing) == ("hard", 0.7, ["head", "pooler"], 0.5, "all")
    config = tmp_path / "args.yaml"
    config.write_text(f"output_dir: {tmp_path}\ncollision: soft\ncoll_coef: 0.2\ncollision_include_self: true\n"
                      "collision_pairing: all\n")
    (from_yaml,) = parser.parse_yaml_file(str(config))
    assert (from_yaml.collision, from_yaml.coll_coef, from_yaml.collision_include_self,
            from_yaml.collision_pairing) == ("soft", 0.2, True, "all")
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--collision", "elastic"])
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--collision_pairing", "pairs"])


def test_arguments_are_saved_with_the_run(tmp_path):
    trainer = train(KOTrainer, ko_args(tmp_path, collision="hard", coll_coef=0.8, max_steps=2))
    trainer.save_model()
    saved = torch.load(tmp_path / "out" / "training_args.bin", weights_only=False)
    assert (saved.collision, saved.coll_coef) == ("hard", 0.8)
    assert trainer.args.to_dict()["collision_distance_scale"] == trainer.args.collision_distance_scale
