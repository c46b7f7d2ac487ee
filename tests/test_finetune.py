"""ko_hf.finetune: the library entry point on a tiny BERT + tokenizer saved to tmp_path (offline, seconds).

The helpers here (``save_tiny_model``, ``write_fixture``, ``FIXTURE_FORMATS``) are shared with test_cli.py.
"""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, TrainerCallback

from ko_hf.data import DatasetError
from ko_hf.finetune import (
    FinetuneError,
    FinetuneOptions,
    StepTimerCallback,
    finetune,
    load_config_file,
    parse_config,
)
from ko_hf.trainer import DEFAULT_COLL_COEF, KOTrainingArguments

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# three "intents", each with its own words, plus shared filler: a tiny model can learn it in a few steps
CLASS_WORDS = {
    "GetWeather": ["rain", "sunny", "forecast", "cold"],
    "PlayMusic": ["song", "album", "jazz", "play"],
    "BookRestaurant": ["table", "dinner", "pizza", "reserve"],
}
FILLER = ["please", "the", "for", "me", "now", "today", "a", "some"]
WORDS = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(FILLER) | {"neg", "pos", "review", "ok"})
MAX_POSITIONS = 64


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT encoder (no head) and a word-level WordPiece tokenizer, as a model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=MAX_POSITIONS)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=MAX_POSITIONS)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def utterances(n_per_class: int, offset: int = 0) -> list[dict]:
    rows = []
    for label, words in CLASS_WORDS.items():
        for i in range(offset, offset + n_per_class):
            text = " ".join([FILLER[i % len(FILLER)], words[i % 4], FILLER[(i + 3) % len(FILLER)], words[(i + 1) % 4]])
            rows.append({"text": text, "label": label})
    return rows


def _write_table(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)


def write_fixture(root: Path, fmt: str) -> tuple[Path, list[str]]:
    """A tiny dataset in local format ``fmt`` under ``root``; returns (path to pass, label names)."""
    train, test = utterances(8), utterances(3, offset=8)
    intents = sorted(CLASS_WORDS)
    if fmt == "aclImdb":
        base = root / "aclImdb"
        for split, n in (("train", 10), ("test", 4)):
            for lab, word in (("neg", "cold rain"), ("pos", "sunny jazz")):
                (base / split / lab).mkdir(parents=True)
                for i in range(n):
                    (base / split / lab / f"{i}_{1 if lab == 'neg' else 9}.txt").write_text(
                        f"{FILLER[i % 8]} review {word} ok", encoding="utf-8")
        return base, ["neg", "pos"]
    if fmt == "snips-json":
        base = root / "2017-06-custom-intent-engines"
        for intent in intents:
            (base / intent).mkdir(parents=True)
            for kind, rows in (("train", train), ("validate", test)):
                examples = [{"data": [{"text": r["text"].split(" ", 1)[0] + " "}, {"text": r["text"].split(" ", 1)[1],
                                                                                 "entity": "x"}]}
                            for r in rows if r["label"] == intent]
                name = f"train_{intent}_full.json" if kind == "train" else f"validate_{intent}.json"
                (base / intent / name).write_text(json.dumps({intent: examples}), encoding="utf-8")
        return base, intents
    if fmt == "seq.in":
        base = root / "snips"
        for split, rows in (("train", train), ("valid", utterances(2, offset=11)), ("test", test)):
            (base / split).mkdir(parents=True)
            (base / split / "seq.in").write_text("\n".join(r["text"] for r in rows) + "\n", encoding="utf-8")
            (base / split / "label").write_text("\n".join(r["label"] for r in rows) + "\n", encoding="utf-8")
        return base, intents
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
    base = root / f"data-{fmt}"
    _write_table(base / f"train{suffix}", train)
    _write_table(base / f"test{suffix}", test)
    return base, intents


FIXTURE_FORMATS = ["aclImdb", "snips-json", "seq.in", "csv", "jsonl", "parquet"]

FAST = dict(max_length=32, plots=False, use_cpu=True, per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=5e-3,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=3)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture
def csv_data(tmp_path):
    return write_fixture(tmp_path, "csv")[0]


def make_config(model_dir, data, out, **extra):
    return {"model_name_or_path": str(model_dir), "dataset": str(data), "output_dir": str(out), **FAST, **extra}


def head_weight(output_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(output_dir) / "model.safetensors"))["classifier.weight"]


# --------------------------------------------------------------------------------------------------- finetune


def test_finetune_trains_evaluates_and_saves(tiny_model_dir, csv_data, tmp_path):
    options, args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / "out", num_train_epochs=3,
                                             collision="hard", plots=True))
    result = finetune(options, args)
    out = Path(result.output_dir)
    assert result.label_names == sorted(CLASS_WORDS)
    assert {"eval_accuracy", "eval_macro_f1"} <= set(result.eval_metrics)
    assert {"test_accuracy", "test_macro_f1"} <= set(result.test_metrics)
    assert 0 <= result.test_metrics["test_accuracy"] <= 1  # learning is checked in test_integration.py
    assert result.median_step_time is not None and result.median_step_time > 0
    assert 0 <= result.head_metrics["weight_correlation"] <= result.head_metrics["neuron_similarity"] <= 1
    assert result.head_layers == {"classifier.weight": result.head_metrics}  # one target: the same values
    assert any("loss" in entry for entry in result.log_history)
    assert any("ko/classifier.weight/accepted_pair_fraction" in entry for entry in result.log_history)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(sorted(CLASS_WORDS))}
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
    saved = json.loads(Path(result.metrics_path).read_text())
    assert {"test_accuracy", "eval_accuracy", "train_loss", "head_weight_correlation"} <= set(saved)
    assert result.card_path == str(out / "README.md") and Path(result.card_path).is_file()
    assert args.average_tokens_across_devices is False


def test_seeded_runs_are_reproducible(tiny_model_dir, csv_data, tmp_path):
    results = []
    for name in ("a", "b"):
        options, args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / name, max_steps=3,
                                                 collision="soft"))
        results.append(finetune(options, args))
    assert torch.equal(head_weight(results[0].output_dir), head_weight(results[1].output_dir))


class StopAt(TrainerCallback):
    """Interrupts training after ``step`` optimizer steps (after the checkpoint of that step is written)."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("collision", ["hard", "soft"])
def test_interrupted_run_resumes_to_the_same_result(tiny_model_dir, csv_data, tmp_path, collision):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3, collision=collision)
    full_options, full_args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / "full", **common))
    full = finetune(full_options, full_args)

    options, args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / "cut", **common))
    finetune(options, args, callbacks=[StopAt(3)])
    assert (tmp_path / "cut" / "checkpoint-3").is_dir()
    assert not (tmp_path / "cut" / "checkpoint-6").exists()

    options, args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / "cut", resume_from_checkpoint=True,
                                             **common))
    resumed = finetune(options, args)
    assert (tmp_path / "cut" / "checkpoint-6").is_dir()
    torch.testing.assert_close(head_weight(resumed.output_dir), head_weight(full.output_dir))
    assert resumed.test_metrics["test_accuracy"] == full.test_metrics["test_accuracy"]


def test_resume_without_checkpoint_is_an_error(tiny_model_dir, csv_data, tmp_path):
    options, args = parse_config(make_config(tiny_model_dir, csv_data, tmp_path / "none", resume_from_checkpoint=True))
    with pytest.raises(FinetuneError, match="no checkpoint"):
        finetune(options, args)


# --------------------------------------------------------------------------------------------------- config


def test_parse_config_splits_the_settings():
    options, args = parse_config({"model_name_or_path": "m", "dataset": "demo", "max_length": "64",
                                  "learning_rate": "2e-5", "collision": "hard", "collision_targets": ["head", "pooler"],
                                  "output_dir": "x", "use_cpu": True})
    assert isinstance(options, FinetuneOptions) and isinstance(args, KOTrainingArguments)
    assert options.max_length == 64 and args.learning_rate == 2e-5  # YAML reads 2e-5 as a string
    assert args.collision == "hard" and args.coll_coef == DEFAULT_COLL_COEF["hard"] and args.collision_targets == ["head", "pooler"]


def test_parse_config_typo_names_the_key_and_suggests():
    with pytest.raises(FinetuneError, match=r"'learnig_rate' \(did you mean 'learning_rate'\?\)"):
        parse_config({"model_name_or_path": "m", "dataset": "demo", "learnig_rate": 1e-3})
    with pytest.raises(ValueError, match="'colision'.*'collision'"):
        parse_config({"model_name_or_path": "m", "dataset": "demo", "colision": "hard"})
    with pytest.raises(FinetuneError, match="missing required.*dataset"):
        parse_config({"model_name_or_path": "m"})
    with pytest.raises(FinetuneError, match="max_length must be a int"):
        parse_config({"model_name_or_path": "m", "dataset": "demo", "max_length": "long"})
    with pytest.raises(ValueError, match="collision"):
        parse_config({"model_name_or_path": "m", "dataset": "demo", "collision": "elastic"})


def test_parse_config_reads_values_as_hf_argument_parser_types_them():
    base = {"model_name_or_path": "m", "dataset": "demo", "output_dir": "x", "use_cpu": True}
    _, args = parse_config({**base, "dataloader_pin_memory": "off", "save_strategy": False, "warmup_steps": "0.1",
                            "collision_targets": "head", "collision_include_self": "yes"})
    # a field with a --no_<field> complement (default True) is still read as a boolean, not as "no"
    assert args.dataloader_pin_memory is False and args.save_strategy == "no" and args.warmup_steps == 0.1
    assert args.collision_targets == ["head"] and args.collision_include_self is True
    assert parse_config(base)[1].dataloader_pin_memory is False  # no pinned memory on a machine without GPU
    with pytest.raises(FinetuneError, match=r"save_total_limit must be a int, got 2\.5"):
        parse_config({**base, "save_total_limit": 2.5})
    with pytest.raises(FinetuneError, match=r"lr_scheduler_type='sideways' is invalid; valid: linear, cosine"):
        parse_config({**base, "lr_scheduler_type": "sideways"})


def test_load_config_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: bert-base-cased\ndataset: imdb\nlearning_rate: 2e-5\ncollision: hard\n")
    config = load_config_file(path)
    assert config["dataset"] == "imdb"
    assert parse_config(config)[1].learning_rate == 2e-5
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(FinetuneError, match="mapping"):
        load_config_file(tmp_path / "list.yaml")
    with pytest.raises(FinetuneError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config_file(tmp_path / "empty.yaml") == {}


# --------------------------------------------------------------------------------------------------- errors


def _fails(tmp_path, model, data, error=FinetuneError, match=None, **extra):
    options, args = parse_config(make_config(model, data, tmp_path / "err", **extra))
    with pytest.raises(error, match=match):
        finetune(options, args)
    assert not (tmp_path / "err" / "model.safetensors").exists()


def test_bad_inputs_fail_before_training(tiny_model_dir, csv_data, tmp_path):
    _fails(tmp_path, tiny_model_dir, csv_data, match="max_length 100 exceeds.*max_position_embeddings=64.*"
                                                    "model_max_length=64", max_length=100)
    _fails(tmp_path, tmp_path / "nope", csv_data, match="model path does not exist")
    _fails(tmp_path, "some-org/some-model", csv_data, match="offline")
    _fails(tmp_path, tiny_model_dir, "nosuchdataset", error=DatasetError, match="unknown dataset")
    _fails(tmp_path, tiny_model_dir, csv_data, error=DatasetError, match="columns found", text_column="body")
    vit = tmp_path / "vit"
    from transformers import ViTConfig

    ViTConfig().save_pretrained(vit)
    _fails(tmp_path, vit, csv_data, match="no sequence-classification")
    (tmp_path / "empty-model").mkdir()
    _fails(tmp_path, tmp_path / "empty-model", csv_data, match="no config.json")


def test_step_timer():
    timer = StepTimerCallback()
    assert timer.median is None
    for _ in range(3):
        timer.on_step_begin(None, None, None)
        timer.on_step_end(None, None, None)
    assert len(timer.durations) == 3 and timer.median >= 0


def test_non_finite_weights_are_an_error_naming_the_tensor(csv_data, tmp_path):
    from safetensors.torch import load_file, save_file

    model = save_tiny_model(tmp_path / "corrupt")
    weights = load_file(str(model / "model.safetensors"))
    name = next(k for k in weights if k.endswith("attention.self.query.weight"))
    weights[name][0, 0] = float("nan")
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    _fails(tmp_path, model, csv_data, match=rf"non-finite weights \(NaN or inf\) in bert\.{re.escape(name)}:")


def test_an_encoder_weight_of_the_wrong_shape_is_an_error_naming_it(csv_data, tmp_path):
    model = save_tiny_model(tmp_path / "wrong-shape")
    config = json.loads((model / "config.json").read_text())
    config["intermediate_size"] = 40  # the weight files hold 37: re-initialising them would go unnoticed
    (model / "config.json").write_text(json.dumps(config))
    _fails(tmp_path, model, csv_data, match=r"weight bert\.encoder\.layer\.0\.intermediate\.dense\.bias has shape "
                                            r"\[37\] in the checkpoint but .* needs \[40\] \(and 5 more weights\)")


def test_a_classifier_with_another_number_of_labels_gets_a_new_head(csv_data, tmp_path):
    from transformers import BertForSequenceClassification

    base = save_tiny_model(tmp_path / "base")
    five = tmp_path / "five-labels"
    BertForSequenceClassification.from_pretrained(base, num_labels=5).save_pretrained(five)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).is_file():
            (five / name).write_bytes((base / name).read_bytes())
    result = finetune(*parse_config(make_config(five, csv_data, tmp_path / "out", max_steps=1)))
    assert head_weight(result.output_dir).shape[0] == len(CLASS_WORDS)


@pytest.mark.parametrize("change", [{"num_train_epochs": 0}, {"num_train_epochs": -3}, {"max_steps": 0}])
def test_no_training_steps_from_python_is_the_error_the_command_line_gives(tiny_model_dir, csv_data, tmp_path,
                                                                           change):
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
                               save_strategy="no", **change)
    options = FinetuneOptions(model_name_or_path=str(tiny_model_dir), dataset=str(csv_data), plots=False)
    key, value = next(iter(change.items()))
    with pytest.raises(FinetuneError, match=rf"{key}={value} is invalid"):
        finetune(options, args)
    assert not (tmp_path / "out").exists()  # the untrained model was saved with train_loss 0.0


def test_a_full_disk_while_saving_is_one_clear_error(tiny_model_dir, csv_data, tmp_path, monkeypatch):
    import errno

    real_dump, real_dumps = json.dump, json.dumps

    def full(obj):
        if isinstance(obj, dict) and "train_loss" in obj:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", lambda obj, *a, **k: full(obj) or real_dump(obj, *a, **k))
    monkeypatch.setattr(json, "dumps", lambda obj, *a, **k: full(obj) or real_dumps(obj, *a, **k))
    out = tmp_path / "out"
    with pytest.raises(FinetuneError, match=f"cannot write into output_dir {out}: No space left on device.*"
                                            "--resume-from-checkpoint last"):
        finetune(*parse_config(make_config(tiny_model_dir, csv_data, out, max_steps=2)))
    assert not (out / "train_results.json").exists()  # was left empty
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_config_file_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"dataset: imdb\nmodel_name_or_path: caf\xe9\n")
    with pytest.raises(FinetuneError, match=rf"config file {re.escape(str(path))} is not UTF-8 text: byte 0xe9 at "
                                            r"byte position 37 \(line 2: invalid continuation byte\); save it as "
                                            "UTF-8"):
        load_config_file(path)
