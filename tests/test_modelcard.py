"""The model card of a tiny run: metadata that the Hub parses, and a body that tells the truth about the run."""

import datasets
import numpy as np
import pytest
from huggingface_hub import ModelCard
from transformers import BertForSequenceClassification

from ko_hf import KOTrainer, KOTrainingArguments
from ko_hf.data import TextClassificationData
from ko_hf.modelcard import KOModelCardCallback, KOModelCardData, is_hub_id, render_model_card

from tiny import tiny_bert, tiny_dataset

HUB_BASE = "google-bert/bert-base-uncased"
LR = 3e-3  # not TrainingArguments' default (5e-5): the card must show the one actually used

COMMON = dict(
    use_cpu=True,
    per_device_train_batch_size=8,  # the default: must NOT show among the non-default hyperparameters
    learning_rate=LR,
    warmup_steps=2,  # the optimizer's lr is 0 at the first step: the card must still show the peak
    max_steps=8,
    logging_steps=2,
    eval_strategy="steps",
    eval_steps=4,
    save_strategy="no",
    report_to="none",
    disable_tqdm=True,
    seed=7,
)


def compute_metrics(prediction):
    predicted = prediction.predictions.argmax(-1)
    labels = prediction.label_ids
    f1s = []
    for label in np.unique(labels):
        tp = np.sum((predicted == label) & (labels == label))
        precision = tp / max(np.sum(predicted == label), 1)
        recall = tp / max(np.sum(labels == label), 1)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return {"accuracy": float(np.mean(predicted == labels)), "macro_f1": float(np.mean(f1s))}


def run(out_dir, model=None, callbacks=None, **overrides):
    args = KOTrainingArguments(output_dir=str(out_dir), **{**COMMON, **overrides})
    trainer = KOTrainer(
        model=model if model is not None else tiny_bert(),
        args=args,
        train_dataset=tiny_dataset(),
        eval_dataset=tiny_dataset(n=24, seed=1),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


def dataset_info():
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["x"] * 48, "label": [0, 1, 2] * 16}),
        "validation": datasets.Dataset.from_dict({"text": ["y"] * 24, "label": [0, 1, 2] * 8}),
    })
    return TextClassificationData(dd, ["neg", "neutral", "pos"], "tiny-sentiment", "acme/tiny-sentiment",
                                  citation="@misc{tiny2025, title={Tiny}}")


@pytest.fixture(scope="module")
def hard_trainer(tmp_path_factory):
    trainer = run(tmp_path_factory.mktemp("hard") / "ko-hard-run", collision="hard",
                  callbacks=[KOModelCardCallback(plots=False)])
    trainer.create_model_card(finetuned_from=HUB_BASE, dataset_info=dataset_info(), language="en",
                              license="apache-2.0",
                              reproduce_command="ko-finetune --model google-bert/bert-base-uncased --collision hard")
    return trainer


@pytest.fixture(scope="module")
def hard_card(hard_trainer):
    return ModelCard.load(f"{hard_trainer.args.output_dir}/README.md")


# ------------------------------------------------------------------ metadata


def test_card_metadata_parses_with_base_model_dataset_and_tags(hard_card):
    data = hard_card.data
    assert data.base_model == HUB_BASE
    assert data.datasets == ["acme/tiny-sentiment"]
    assert {"ko-optimizer", "collision-hard", "text-classification"} <= set(data.tags)
    assert "ko-baseline" not in data.tags
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert data.language == "en" and data.license == "apache-2.0"


def test_model_index_carries_the_eval_metrics(hard_trainer, hard_card):
    final_eval = [e for e in hard_trainer.state.log_history if "eval_accuracy" in e][-1]
    results = {(r.dataset_split, r.metric_type): r for r in hard_card.data.eval_results}
    assert results[("validation", "accuracy")].metric_value == pytest.approx(final_eval["eval_accuracy"], abs=1e-6)
    assert results[("validation", "f1")].metric_value == pytest.approx(final_eval["eval_macro_f1"], abs=1e-6)
    assert results[("validation", "f1")].metric_args == {"average": "macro"}
    assert results[("validation", "accuracy")].dataset_type == "acme/tiny-sentiment"
    assert hard_card.data.model_name == "ko-hard-run"


# ------------------------------------------------------------------ body


def test_ko_section_names_the_real_optimizer_settings(hard_trainer, hard_card):
    text = hard_card.text
    args = hard_trainer.args
    assert "## How KO shaped this model" in text
    assert "`KOAdamW` = `torch.optim.AdamW`" in text
    assert "lr = `0.003`" in text  # the peak learning rate, although warm-up started the optimizer at 0
    assert "5e-05" not in text  # Trainer's default learning rate appears nowhere
    assert "adamw_torch_fused" not in text
    assert "betas = `[0.9, 0.999]`" in text and "eps = `1e-08`" in text
    assert f"`coll_coef`):** `{args.coll_coef:g}`" in text
    assert f"`collision_distance_scale`):** `{args.collision_distance_scale:g}`" in text
    assert "| `classifier.weight` | 3×32 | 3 × 32 |" in text
    assert "accepted-pair fraction" in text
    assert "weight correlation" in text and "neuron similarity" in text
    assert "start of training" in text and "end (step 8)" in text


def test_condensation_at_start_and_end_come_from_the_weights(hard_trainer):
    from ko_hf.collision import neuron_similarity, weight_correlation

    data = hard_trainer.model_card_callback.card_data
    weight = dict(hard_trainer.model.named_parameters())["classifier.weight"].detach()
    end = data.condensation_end["classifier.weight"]
    assert end["weight_correlation"] == pytest.approx(weight_correlation(weight))
    assert end["neuron_similarity"] == pytest.approx(neuron_similarity(weight))
    initial = dict(tiny_bert().named_parameters())["classifier.weight"].detach()  # same seed: same init
    start = data.condensation_start["classifier.weight"]
    assert start["weight_correlation"] == pytest.approx(weight_correlation(initial))
    assert start != end


def test_only_non_default_hyperparameters_are_listed(hard_card):
    section = hard_card.text.split("## Training hyperparameters")[1].split("## ")[0]
    for shown in ("`learning_rate`: `0.003`", "`max_steps`: `8`", "`warmup_steps`: `2`", "`seed`: `7`"):
        assert shown in section
    for hidden in ("per_device_train_batch_size", "output_dir", "logging_dir", "logging_steps", "report_to",
                   "eval_steps", "disable_tqdm", "coll_coef", "weight_decay"):
        assert hidden not in section


def test_device_dataset_versions_reproduce_and_citations(hard_card):
    text = hard_card.text
    assert "- **Device:** CPU" in text
    assert "GPU" not in text.split("## Training environment")[1].split("## ")[0]
    for name in ("Transformers", "PyTorch", "Datasets", "ko-hf", "Tokenizers"):
        assert name in text
    assert "| train | 48 |" in text and "| validation | 24 |" in text
    assert "`neg`, `neutral`, `pos`" in text
    assert "ko-finetune --model google-bert/bert-base-uncased --collision hard" in text
    assert "arXiv:2505.14777" in text and "@misc{tiny2025" in text


def test_card_is_written_only_on_the_main_process(hard_trainer, tmp_path, monkeypatch):
    monkeypatch.setattr(hard_trainer, "is_world_process_zero", lambda: False)
    from ko_hf.modelcard import write_model_card

    assert write_model_card(hard_trainer, output_dir=tmp_path / "elsewhere") is None
    assert not (tmp_path / "elsewhere").exists()


def test_python_snippet_when_no_command_is_given(hard_trainer, tmp_path):
    from ko_hf.modelcard import write_model_card

    path = write_model_card(hard_trainer, output_dir=tmp_path, finetuned_from=HUB_BASE, plots=False)
    text = path.read_text()
    assert "KOTrainingArguments(" in text and "collision='hard'" in text and "learning_rate=0.003" in text
    assert f"from_pretrained('{HUB_BASE}', num_labels=3)" in text


def test_push_without_the_hub_says_it_needs_the_hub(hard_trainer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="needs the Hugging Face Hub"):
        hard_trainer.push_to_hub()


# ------------------------------------------------------------------ local base model, baseline


def test_local_base_model_is_not_put_in_base_model(tmp_path):
    local = tmp_path / "my-local-bert"
    tiny_bert().save_pretrained(local)
    model = BertForSequenceClassification.from_pretrained(local)
    trainer = run(tmp_path / "out", model=model, collision="soft", max_steps=2, eval_strategy="no")
    trainer.create_model_card()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model is None
    assert str(local) in card.text and "local checkpoint" in card.text
    assert "collision-soft" in card.data.tags
    assert "No evaluation was run" in card.text
    assert "## How KO shaped this model" in card.text and "Include self" in card.text

    trainer.create_model_card(finetuned_from=str(local))  # an explicit local path: still not a Hub id
    assert ModelCard.load(tmp_path / "out" / "README.md").data.base_model is None


def test_baseline_says_ko_was_not_applied(tmp_path):
    trainer = run(tmp_path / "baseline", collision="none", max_steps=4, eval_steps=2)
    trainer.create_model_card(finetuned_from=HUB_BASE, tags=["collision-hard", "mine"])
    card = ModelCard.load(tmp_path / "baseline" / "README.md")
    assert "KO collisions were NOT applied" in card.text
    assert "## How KO shaped this model" not in card.text
    assert "KOAdamW" not in card.text
    assert "`torch.optim.AdamW`" in card.text and "lr = `0.003`" in card.text
    tags = set(card.data.tags)
    assert "ko-baseline" in tags and "mine" in tags
    assert "ko-optimizer" not in tags and not any(t.startswith("collision-") for t in tags)
    assert card.data.eval_results  # results are still reported


def test_render_without_a_trainer():
    data = KOModelCardData(model_name="m", base_model="org/base", collision="soft", coll_coef=0.1,
                           targets=[{"name": "classifier.weight", "shape": [7, 384]}],
                           eval_metrics={"accuracy": 0.9}, dataset_name="snips", datasets=["benayas/snips"])
    card = ModelCard(render_model_card(data))
    assert card.data.base_model == "org/base"
    assert card.data.eval_results[0].metric_value == 0.9
    assert "collision-soft" in card.data.tags


@pytest.mark.parametrize("name,expected", [
    ("google-bert/bert-base-uncased", True), ("distilbert-base-uncased", True), ("/abs/path/model", False),
    ("./model", False), ("~/model", False), ("a/b/c", False), ("", False), (None, False),
])
def test_is_hub_id(name, expected):
    assert is_hub_id(name) is expected
