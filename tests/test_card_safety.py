"""What a model card (README.md, which push_to_hub uploads) must never hold: secrets, absolute paths, home folders,
user names, invisible or reordering characters; and what it must say: that a run diverged, and the run's warnings."""

import math
import shlex
import unicodedata
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from ko_hf import KOTrainer, KOTrainingArguments
from ko_hf.card.base_model import BaseModelOrigin
from ko_hf.card.escape import visible
from ko_hf.finetune import finetune, parse_config
from ko_hf.card.callback import KOModelCardCallback
from ko_hf.card import portable

from test_finetune import make_config, save_tiny_model, write_fixture
from test_modelcard import COMMON, compute_metrics
from tiny import tiny_bert, tiny_dataset

TOKEN = "hf_SECRETtoken0123456789abcdef"


def section(card: ModelCard, title: str) -> str:
    return card.text.split(f"## {title}")[1].split("\n## ")[0]


# ------------------------------------------------------------------ S1: secrets


def test_no_secret_reaches_the_card(tmp_path):
    """`--set hub_token=hf_...` was written verbatim into the card's "How to reproduce"."""
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, "max_steps": 2, "eval_strategy": "no"},
                               collision="hard", hub_token=TOKEN)
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(),
                        callbacks=[KOModelCardCallback(plots=False)])
    trainer.train()
    command = shlex.join(["ko-finetune", "m", "--set", f"hub_token={TOKEN}", "--hub-token", TOKEN,
                          f"--set=wandb_api_key={TOKEN[3:]}", "--run-note", f"uses {TOKEN}"])
    trainer.create_model_card(reproduce_command=command, model_name=f"run-{TOKEN}", tags=[TOKEN],
                              dataset_info={"name": f"data {TOKEN}", "source": "hub:acme/data",
                                            "label_names": [TOKEN, "b", "c"]})
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert TOKEN not in text and TOKEN[3:] not in text
    command = section(ModelCard(text), "How to reproduce").split("```bash\n")[1].split("\n```")[0]
    assert shlex.split(command) == ["ko-finetune", "m", "--set", "hub_token=<redacted>", "--hub-token", "<redacted>",
                                    "--set", "wandb_api_key=<redacted>", "--run-note", "uses <redacted>"]
    assert trainer.args.hub_token == TOKEN  # the card only reads


# ------------------------------------------------------------------ S2: absolute paths, home folders, user names


@pytest.fixture
def alice(tmp_path, monkeypatch):
    """A user ``alice`` whose home is ``<tmp>/home/alice``, working in ``~/project``; ``<tmp>/home/bob`` is another
    user's home."""
    home = tmp_path / "home" / "alice"
    (home / "project").mkdir(parents=True)
    (tmp_path / "home" / "bob").mkdir(parents=True)
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "alice")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "project")
    return home


def test_card_shows_no_absolute_path_home_folder_or_user_name(alice, tmp_path):
    """The base-model line, the data "Source" line and `-o/abs/path` showed absolute paths; a path outside the home
    folder showed as `../../home/<user>/...`."""
    model_dir = save_tiny_model(alice / "models" / "tiny-bert")
    data = write_fixture(tmp_path / "home" / "bob", "csv")[0]  # another user's folder
    out = alice / "project" / "runs" / "run-1"
    command = shlex.join(["ko-finetune", str(model_dir), "--dataset", str(data), f"-o{out.parent}/x",
                          "--config", str(alice / "recipes" / "a.yaml"), "--collision", "hard"])
    options, args = parse_config(make_config(model_dir, data, out, num_train_epochs=1, collision="hard"))
    result = finetune(options, args, reproduce_command=command)
    text = Path(result.card_path).read_text(encoding="utf-8")
    assert str(tmp_path) not in text and "/home/" not in text
    assert "alice" not in text.lower() and "bob" not in text.lower()
    card = ModelCard(text)
    assert "fine-tuned from a local checkpoint (`~/models/tiny-bert`" in card.text
    assert "- **Source:** local data, not on the Hub: `path/to/data-csv`" in card.text
    command = section(card, "How to reproduce").split("```bash\n")[1].split("\n```")[0]
    assert shlex.split(command) == ["ko-finetune", "~/models/tiny-bert", "--dataset", "path/to/data-csv", "-o",
                                    "runs/x", "--config", "~/recipes/a.yaml", "--collision", "hard"]
    assert "Run it from the directory it ran in (`~/project`)" in card.text
    assert "`path/to/<its name>`: replace it" in card.text
    assert 'model="runs/run-1"' in section(card, "How to use")


@pytest.mark.parametrize("value,shown", [
    ("/home/bob/data/x.csv", "path/to/x.csv"),  # another user's home: not ../../home/bob/...
    ("/home/alice/data/x.csv", "~/data/x.csv"),
    ("/home/alice/alice-data/x.csv", "~/alice-data/x.csv"),
    ("/srv/work/data/x.csv", "data/x.csv"),
    ("/srv/data/x.csv", "../data/x.csv"),
    ("/scratch/alice/data", "path/to/data"),  # a part of the path is the user's name
    ("/tmp/pytest-of-alice/run", "path/to/run"),  # a word of a part is
    ("/scratch/alice", "path/to/local-path"),
    ("/srv/work/alice-notes/x", "alice-notes/x"),  # named by the user inside the run's directory
    ("/home/alice", "~"),
    ("~/x", "~/x"),
    ("../../home/bob/x", "path/to/x"),
    ("imdb", "imdb"),
    ("bert-base-cased", "bert-base-cased"),
])
def test_portable_path_rule(value, shown):
    machine = portable.Machine.here(cwd="/srv/work", home="/home/alice", user="alice")
    assert portable.portable_path(value, machine=machine) == shown


def test_portable_command_splits_a_short_option_and_its_attached_path():
    machine = portable.Machine.here(cwd="/srv/work", home="/home/alice", user="alice")
    base = BaseModelOrigin(hub_id="acme/enc", path="/opt/models/enc")
    command = "ko-finetune /opt/models/enc -o/srv/work/runs/x -d imdb=/home/alice/imdb --output-dir=/home/alice/o"
    assert portable.portable_command(command, base=base, machine=machine) == (
        "ko-finetune acme/enc -o runs/x -d 'imdb=~/imdb' --output-dir ~/o")


@pytest.mark.parametrize("cwd,shown", [("/home/alice", "~"), ("/home/alice/p", "~/p"), ("/srv/work", "work"),
                                       ("/home/bob/p", None), ("/srv/alice", None), ("/home", "home")])
def test_the_run_directory_is_named_without_a_user_name(cwd, shown):
    assert portable.portable_directory(portable.Machine.here(cwd=cwd, home="/home/alice", user="alice")) == shown


def test_a_run_started_above_the_home_folder_shows_home_paths_as_home_paths():
    machine = portable.Machine.here(cwd="/home", home="/home/alice", user="alice")
    assert portable.portable_path("/home/alice/data", machine=machine) == "~/data"
    assert portable.portable_path("/home/bob/data", machine=machine) == "path/to/data"


# ------------------------------------------------------------------ S3: bidi and zero-width characters

HIDDEN = "\u202e\u200b\u2066\u200f\ufeff\u061c"


def test_bidi_and_zero_width_characters_are_visible_everywhere(tmp_path):
    """U+202E / U+200B in labels and names reached the card as they are: invisible, or reversing what follows."""
    labels = ["pos\u202etxt.exe", "neg\u200b", "neu\u2066tral"]
    model = tiny_bert()
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, "max_steps": 2}, collision="hard")
    trainer = KOTrainer(model=model, args=args, train_dataset=tiny_dataset(), eval_dataset=tiny_dataset(24, seed=1),
                        compute_metrics=compute_metrics, callbacks=[KOModelCardCallback(plots=True)])
    trainer.train()
    trainer.create_model_card(model_name="ko\u202erun", dataset="data\u200fset", dataset_tags="acme/data",
                              tags=["tag\ufeff"], language="en\u061c",
                              dataset_info={"name": "data\u200fset", "source": "hub:acme/data",
                                            "text_columns": ["pre\u200bmise", "hypo\u202ethesis"]},
                              reproduce_command="ko-finetune m --set 'note=a\u202eb'")
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    hidden = sorted({f"U+{ord(c):04X}" for c in text if c not in "\n" and unicodedata.category(c) in
                     ("Cc", "Cf", "Zl", "Zp", "Cs")})
    assert hidden == []
    card = ModelCard(text)
    assert "`pos\\u202etxt.exe`, `neg\\u200b`, `neu\\u2066tral`" in card.text
    assert card.data.model_name == "ko\\u202erun" and card.data.eval_results[0].dataset_name == "data\\u200fset"
    assert "`pre\\u200bmise`, `hypo\\u202ethesis`" in card.text
    assert "note=a\\u202eb" in card.text and card.data.tags[-1] == "tag\\ufeff"


@pytest.mark.parametrize("char", list(HIDDEN) + ["\u2028", "\x85", "\ud800"])
def test_visible_escapes_every_hidden_character(char):
    assert visible(f"a{char}b") == "a" + char.encode("unicode_escape").decode("ascii") + "b"


# ------------------------------------------------------------------ diverged runs, warnings


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("diverged") / "out"
    args = KOTrainingArguments(output_dir=str(out), **{**COMMON, "max_steps": 2, "eval_strategy": "no"},
                               collision="soft")
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(), eval_dataset=tiny_dataset(24),
                        compute_metrics=compute_metrics, callbacks=[KOModelCardCallback(plots=False)])
    trainer.train()
    return trainer


def test_a_diverged_run_reports_no_accuracy_in_its_metadata(finished):
    """All-NaN weights: the run exited 0 and its card's metadata still reported an accuracy."""
    with torch.no_grad():
        finished.model.classifier.weight.fill_(float("nan"))
    try:
        finished.evaluate()
        finished.create_model_card(dataset_tags="acme/tiny")
    finally:
        with torch.no_grad():
            finished.model.classifier.weight.copy_(tiny_bert().classifier.weight)
    card = ModelCard.load(Path(finished.args.output_dir) / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.content.split("\n---\n")[0]
    assert card.data.to_dict().get("metrics") is None
    assert "Training diverged (non-finite values in classifier.weight)" in section(card, "Warnings")
    assert "**Training diverged** (non-finite values in classifier.weight): these numbers describe a broken model" \
        in section(card, "Evaluation results")


def test_divergence_is_read_from_the_final_loss():
    from ko_hf.card.write import divergence

    nan, weights = float("nan"), {"classifier.weight": torch.ones(3, 4)}
    assert divergence([{"loss": 1.2, "step": 1}, {"loss": nan, "step": 2}], weights) == [
        "the last logged training loss is nan"]
    assert divergence([{"loss": 1.2, "step": 1}, {"train_loss": math.inf}], weights) == [
        "the final training loss is inf"]
    assert divergence([{"loss": 1.2, "step": 1}, {"train_loss": 1.1}], weights) == []


def test_warnings_part_lists_the_trainers_collision_warnings(finished, monkeypatch):
    finished.create_model_card(dataset_tags="acme/tiny")
    card = ModelCard.load(Path(finished.args.output_dir) / "README.md")
    assert "## Warnings" not in card.text and card.data.eval_results

    found = ["soft collision reverses the gradient of 'classifier.weight' on average (cos(g*, g) = -0.4 < 0)",
             "collision cannot act on a 1-row head: 'pooler.dense.weight' has 1 row"]
    monkeypatch.setattr(type(finished), "collision_warnings", property(lambda self: found + found[:1]))
    finished.create_model_card(dataset_tags="acme/tiny")
    warnings = section(ModelCard.load(Path(finished.args.output_dir) / "README.md"), "Warnings")
    assert warnings.strip().splitlines() == [
        "- soft collision reverses the gradient of 'classifier.weight' on average (cos(g\\*, g) = -0.4 \\< 0)",
        "- collision cannot act on a 1-row head: 'pooler.dense.weight' has 1 row"]
