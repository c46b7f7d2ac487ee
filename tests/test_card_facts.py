"""What a run's model card states must be runnable and exact: snippets that run where the command ran, valid
model-index entries, one number format, the command that trains the run from scratch, every data fact."""

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.utils import validate_repo_id

from ko_hf import KOTrainer, KOTrainingArguments
from ko_hf.card.data import KOModelCardData
from ko_hf.card.render import fmt, render_model_card
from ko_hf.data import TextClassificationData
from ko_hf.finetune import finetune, parse_config
from ko_hf.card.callback import KOModelCardCallback

from test_finetune import StopAt, make_config, save_tiny_model, write_fixture
from test_modelcard import COMMON, compute_metrics, working_directory
from tiny import tiny_bert, tiny_dataset

DEMO_OUT = "ko-demo-output/minilm-demo-hard"


def section(card: ModelCard, title: str) -> str:
    return card.text.split(f"## {title}")[1].split("\n## ")[0]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", text, flags=re.S)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``ko-finetune`` run from a project folder into ``ko-demo-output/minilm-demo-hard``, as ``ko-finetune demo``
    does, on a CSV folder whose validation split is carved from train."""
    project = tmp_path_factory.mktemp("project")
    save_tiny_model(project / "tiny-bert")
    write_fixture(project, "csv")
    command = shlex.join(["ko-finetune", "tiny-bert", "--dataset", "data-csv", "-o", DEMO_OUT, "--collision", "hard",
                          "--max-train-samples", "12"])
    with working_directory(project):
        options, args = parse_config(make_config("tiny-bert", "data-csv", DEMO_OUT, num_train_epochs=1,
                                                 max_train_samples=12, collision="hard"))
        result = finetune(options, args, reproduce_command=command)
    return {"project": project, "card": ModelCard.load(project / result.card_path), "args": args}


# ------------------------------------------------------------------ snippets that run where the command ran


def test_usage_snippet_runs_in_the_directory_the_command_ran_in(demo_run):
    """The snippet said pipeline(model="minilm-demo-hard"): no such folder where the command ran."""
    usage = python_blocks(section(demo_run["card"], "How to use"))
    assert len(usage) == 1 and f'model="{DEMO_OUT}"' in usage[0]
    script = usage[0].replace('print(classifier("Your text here"))',
                              'print("PREDICTED", classifier("rain sunny jazz table")[0]["label"])')
    result = subprocess.run([sys.executable, "-c", script], cwd=demo_run["project"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"PREDICTED (BookRestaurant|GetWeather|PlayMusic)", result.stdout), result.stdout


def test_reproduce_snippet_names_the_output_dir_the_run_used(demo_run):
    """The Python snippet said output_dir='minilm-demo-hard' for a run that wrote ko-demo-output/minilm-demo-hard."""
    reproduce = python_blocks(section(demo_run["card"], "How to reproduce"))[0]
    call = next(node for node in ast.walk(ast.parse(reproduce))
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "KOTrainingArguments")
    given = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert given["output_dir"] == DEMO_OUT == demo_run["args"].output_dir
    command = section(demo_run["card"], "How to reproduce").split("```bash\n")[1].split("\n```")[0]
    assert f"-o {DEMO_OUT}" in command


@pytest.fixture(scope="module")
def small_trainer(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "ko-run"
    args = KOTrainingArguments(output_dir=str(out), **{**COMMON, "max_steps": 2, "eval_strategy": "no"},
                               collision="hard")
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(), eval_dataset=tiny_dataset(24, seed=1),
                        compute_metrics=compute_metrics, callbacks=[KOModelCardCallback(plots=False)])
    trainer.train()
    trainer.evaluate()
    return trainer


def test_usage_snippet_names_the_hub_repository_when_pushed(small_trainer, monkeypatch):
    """push_to_hub: the repository the card goes to (owner/name, what Trainer.init_hf_repo records)."""
    monkeypatch.setattr(small_trainer, "hub_model_id", "acme/ko-run", raising=False)
    small_trainer.create_model_card(dataset_tags="acme/tiny")
    card = ModelCard.load(Path(small_trainer.args.output_dir) / "README.md")
    usage = python_blocks(section(card, "How to use"))
    assert len(usage) == 2 and 'model="acme/ko-run"' in usage[0]
    assert Path(ast.literal_eval(re.search(r"model=(\".*?\")", usage[1]).group(1))).name == "ko-run"


# ------------------------------------------------------------------ metadata


def test_model_index_names_data_sets_by_their_hub_id(small_trainer, tmp_path):
    """`type: demo` (the packaged set) and `type: local` are no Hub dataset ids; a recipe's local copy is its Hub
    data set; Hub data keeps its id."""
    def model_index(**card_kwargs):
        small_trainer.create_model_card(**card_kwargs)
        return ModelCard.load(Path(small_trainer.args.output_dir) / "README.md").data.eval_results

    demo = {"name": "demo", "source": "package:ko_hf/resources/demo_intents.jsonl", "splits": {"train": 48}}
    assert model_index(dataset="demo", dataset_info=demo) is None
    for not_an_id in ("not an id!", "acme/data\u200b"):
        assert model_index(dataset="x", dataset_tags=not_an_id) is None
    imdb_copy = {"name": "imdb", "source": str(tmp_path / "aclImdb"), "splits": {"train": 48}}
    hub = {"name": "acme/tiny", "source": "hub:acme/tiny", "splits": {"train": 48}}
    for info, expected in ((imdb_copy, "stanfordnlp/imdb"), (hub, "acme/tiny")):
        results = model_index(dataset=info["name"], dataset_info=info)
        assert results and {r.dataset_type for r in results} == {expected}
        for result in results:
            validate_repo_id(result.dataset_type)  # a Hub id, as huggingface_hub's EvalResult documents it


def test_carved_validation_is_no_split_of_the_hub_data_set():
    """A validation split carved from train is not the data set's `validation` split."""
    data = KOModelCardData(model_name="m", datasets=["stanfordnlp/imdb"], dataset_name="imdb",
                           validation_carved=True, validation_fraction=0.1, data_seed=42,
                           eval_metrics={"accuracy": 0.9}, test_metrics={"accuracy": 0.8})
    results = {r.dataset_split: r for r in ModelCard(render_model_card(data)).data.eval_results}
    assert set(results) == {None, "test"}
    assert results[None].metric_name == "Accuracy (validation, carved from train)"


# ------------------------------------------------------------------ numbers


FOUR_DECIMALS = re.compile(r"^[-+]?\d[\d,]*\.\d{4}$|^[-+]?\d\.\d{3}e[-+]\d+$|^\d[\d,]*$|^(nan|inf|-inf|–)$")


def measured_cells(card: ModelCard) -> list[str]:
    """The cells of the results, collision-statistics and condensation tables that hold measured numbers."""
    cells = []
    for table in re.findall(r"(?:^\|.*\|$\n?)+", card.text, flags=re.M):
        header, _, *rows = table.strip().splitlines()
        if "value" in header or "first logged" in header or "change" in header:
            for row in rows:
                for cell in row.strip("|").split("|")[2:]:
                    cells.append(re.sub(r" \(step \d+\)$", "", cell.strip()))
    return cells


def test_one_number_format_in_the_body(demo_run):
    """The results mixed 1.108 and 0.3333 (4 significant digits with trailing zeros dropped)."""
    cells = measured_cells(demo_run["card"])
    assert len(cells) > 10
    assert all(FOUR_DECIMALS.match(cell) for cell in cells), cells
    assert "Loss | 0." in demo_run["card"].text or "Loss | 1." in demo_run["card"].text


@pytest.mark.parametrize("value,shown", [(0.5, "0.5000"), (1.108, "1.1080"), (1 / 3, "0.3333"), (0.0, "0.0000"),
                                         (3.2154e-5, "3.215e-05"), (2_500_000.0, "2.500e+06"), (12, "12"),
                                         (1234, "1,234"), (float("nan"), "nan")])
def test_number_format(value, shown):
    assert fmt(value) == shown


# ------------------------------------------------------------------ resume: the command that trains from scratch


def _interrupted_and_resumed(tmp_path, first_command=None, drop=()):
    out = tmp_path / "cut"
    common = dict(COMMON, max_steps=6, eval_strategy="no", save_strategy="steps", save_steps=3, logging_steps=1)
    first = KOTrainer(model=tiny_bert(), args=KOTrainingArguments(output_dir=str(out), **common, collision="hard"),
                      train_dataset=tiny_dataset(),
                      callbacks=[StopAt(3), KOModelCardCallback(plots=False, command=first_command)])
    first.train()
    for name in drop:
        (out / "checkpoint-3" / name).unlink()
    args = KOTrainingArguments(output_dir=str(out), **common, collision="hard",
                               resume_incomplete_checkpoint=bool(drop))
    resumed = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(),
                        callbacks=[KOModelCardCallback(plots=False)])
    resumed.train(resume_from_checkpoint=True)
    return resumed


def test_resumed_run_gives_the_command_that_trains_it_from_scratch(tmp_path):
    """`--resume-from-checkpoint last` was in the card's command: it fails in a fresh folder."""
    resumed = _interrupted_and_resumed(tmp_path)
    resumed.create_model_card(reproduce_command="ko-finetune m --dataset demo -o cut --resume-from-checkpoint last "
                                                "--max-steps 6 --set resume_from_checkpoint=true --collision hard")
    card = ModelCard.load(tmp_path / "cut" / "README.md")
    reproduce = section(card, "How to reproduce")
    command = reproduce.split("```bash\n")[1].split("\n```")[0]
    assert shlex.split(command) == ["ko-finetune", "m", "--dataset", "demo", "-o", "cut", "--max-steps", "6",
                                    "--collision", "hard"]
    assert "from scratch" in reproduce
    assert "**Resumed:** the run was interrupted and resumed from its checkpoint `checkpoint-3` at step 3; the " \
           "weights, optimizer, schedule and step count continued from the checkpoint." in card.text
    assert "## Warnings" not in card.text


def test_resumed_run_keeps_the_command_that_started_it(tmp_path):
    """A resumed run takes the settings its command leaves out from the checkpoint: the command that started the
    run (kept in the checkpoint by the card's callback) is the one that trains it from scratch."""
    resumed = _interrupted_and_resumed(tmp_path, first_command="ko-finetune m --dataset demo -o cut --max-steps 6")
    resumed.create_model_card(reproduce_command="ko-finetune m -o cut --resume-from-checkpoint last")
    command = section(ModelCard.load(tmp_path / "cut" / "README.md"), "How to reproduce")
    assert "ko-finetune m --dataset demo -o cut --max-steps 6\n" in command


def test_resume_that_restarted_state_says_what_restarted(tmp_path):
    """resume_incomplete_checkpoint: the card claimed one continuous run and never mentioned the restart."""
    resumed = _interrupted_and_resumed(tmp_path, drop=("optimizer.pt",))
    assert resumed.resume_report.restarted
    resumed.create_model_card()
    card = ModelCard.load(tmp_path / "cut" / "README.md")
    warnings = section(card, "Warnings")
    assert "lacked optimizer.pt" in warnings and "the optimizer moments" in warnings
    assert "restarted at the resume point" in warnings
    assert "the checkpoint lacked `optimizer.pt`, so the optimizer moments" in card.text


# ------------------------------------------------------------------ data facts


def test_csv_run_says_how_its_validation_split_is_made(demo_run):
    """A CSV run's card did not say that validation may be carved from train (nor the share and seed)."""
    dataset = section(demo_run["card"], "Dataset")
    # the data layer records that it carved the split (TextClassificationData.validation_carved): the card says so
    assert "| validation | 2 | carved from train: 10% of train, label-stratified (`validation_fraction`, seed 3) |" \
        in dataset


def pair_data(source, **facts):
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a"] * 40, "label": [0, 1] * 20}),
        "validation": datasets.Dataset.from_dict({"text": ["b"] * 4, "label": [0, 1] * 2}),
        "test": datasets.Dataset.from_dict({"text": ["c"] * 6, "label": [0, 1] * 3}),
    })
    source.write_text("premise,hypothesis,gold\n")
    data = TextClassificationData(dd, ["entailment", "contradiction"], "nli-pairs", str(source))
    for key, value in facts.items():  # what the data layer records when it knows it
        setattr(data, key, value)
    return data


def test_card_states_every_data_fact_the_data_records(small_trainer, tmp_path):
    data = pair_data(tmp_path / "nli.csv", text_columns=("premise", "hypothesis"), label_column="gold",
                     validation_carved=True, validation_fraction=0.1, seed=11, dropped_unseen={"test": 2})
    small_trainer.create_model_card(dataset=data.name, dataset_info=data)
    card = ModelCard.load(Path(small_trainer.args.output_dir) / "README.md")
    dataset = section(card, "Dataset")
    assert "- **Text columns:** `premise`, `hypothesis` (each example's texts tokenized together as a pair)" in dataset
    assert "- **Label column:** `gold`" in dataset
    assert "- **Validation split:** carved from train: 10% of train, label-stratified (`validation_fraction`, " \
           "seed 11); the source has none" in dataset
    assert "| validation | 4 | carved from train: 10% of train" in dataset
    assert "| test | 6 | 2 rows dropped: their label is not in train |" in dataset
    assert "- **Dropped rows:** validation and test rows whose label never occurs in train were dropped " \
           "(`drop_unseen_eval_labels`): test 2" in dataset
    assert re.search(r"- \*\*Source:\*\* local data, not on the Hub: `[^`/]*(/[^`/]+)*/nli.csv`", dataset), dataset
    assert str(tmp_path) not in card.content


def test_one_text_column_is_named_without_a_pair(small_trainer, tmp_path):
    small_trainer.create_model_card(dataset_info=pair_data(tmp_path / "sst.csv", text_columns=("sentence",),
                                                           validation_carved=False))
    dataset = section(ModelCard.load(Path(small_trainer.args.output_dir) / "README.md"), "Dataset")
    assert "- **Text column:** `sentence`\n" in dataset and "as a pair" not in dataset
    assert "- **Validation split:** the source's own" in dataset
