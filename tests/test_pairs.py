"""Sentence pairs (NLI, paraphrase): two text columns are tokenized as a pair, from Python, a YAML config and the
command line; a pair recipe reads a local copy. A tiny BERT trains on a pair data set written in the test."""

import json

import pandas as pd
import pytest
import torch

from ko_hf.finetune import FinetuneOptions, finetune, parse_config, prepare_finetune, run_prepared
from ko_hf.trainer import KOTrainingArguments

from test_cli import FAST_FLAGS, assert_user_error, run
from test_finetune import CLASS_WORDS, FAST, FILLER


def nli_rows(n_per_label: int, offset: int = 0) -> list[dict]:
    """premise / hypothesis / label: "same" when both sentences are about one intent, else "different"."""
    intents = sorted(CLASS_WORDS)
    rows = []
    for i in range(offset, offset + n_per_label):
        words = CLASS_WORDS[intents[i % 3]]
        other = CLASS_WORDS[intents[(i + 1) % 3]]
        premise = f"{FILLER[i % 8]} {words[i % 4]} {words[(i + 1) % 4]}"
        rows.append({"premise": premise, "hypothesis": f"{words[(i + 2) % 4]} {FILLER[(i + 3) % 8]}", "label": "same"})
        rows.append({"premise": premise, "hypothesis": f"{other[i % 4]} {FILLER[(i + 5) % 8]}", "label": "different"})
    return rows


@pytest.fixture(scope="module")
def nli_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nli")
    pd.DataFrame(nli_rows(12)).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(nli_rows(4, offset=12)).to_csv(folder / "test.csv", index=False)
    return folder


def test_a_pair_is_tokenized_as_a_pair_and_trains(tiny_model_dir, nli_csv, tmp_path):
    options = FinetuneOptions(model_name_or_path=str(tiny_model_dir), dataset=str(nli_csv),
                              text_column=["premise", "hypothesis"], max_length=32, plots=False)
    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, collision="hard",
                               **{k: v for k, v in FAST.items() if k not in ("max_length", "plots")})
    prepared = prepare_finetune(options, args)
    assert prepared.data.text_columns == ("premise", "hypothesis")
    tokenizer = prepared.trainer.processing_class
    row = prepared.trainer.train_dataset[0]
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2 and 1 in row["token_type_ids"]  # [CLS] a [SEP] b [SEP]
    assert set(prepared.trainer.train_dataset.column_names) == {"input_ids", "token_type_ids", "attention_mask",
                                                                "label"}
    result = run_prepared(prepared)
    assert result.label_names == ["different", "same"] and result.test_metrics["test_accuracy"] >= 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {"0": "different", "1": "same"}


def test_yaml_and_cli_take_two_text_columns(tiny_model_dir, nli_csv, tmp_path):
    options, _ = parse_config({"model_name_or_path": str(tiny_model_dir), "dataset": str(nli_csv),
                               "output_dir": str(tmp_path / "yaml"), "text_column": ["premise", "hypothesis"]})
    assert options.text_column == ["premise", "hypothesis"]
    assert parse_config({"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path / "one"),
                         "text_column": "premise"})[0].text_column == "premise"
    out = tmp_path / "cli"
    result = run(tiny_model_dir, "--dataset", nli_csv, "--text-column", "premise", "--text-column", "hypothesis",
                 "--output-dir", out, *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and (out / "model.safetensors").is_file()
    three = run(tiny_model_dir, "--dataset", nli_csv, "--text-column", "premise", "--text-column", "hypothesis",
                "--text-column", "label", "--output-dir", tmp_path / "three", *FAST_FLAGS)
    assert_user_error(three, "text_column takes one column, or two for a sentence pair", "got 3")


def test_one_column_still_guessed_for_single_sentences(tiny_model_dir, csv_data, tmp_path):
    result = finetune(*parse_config({"model_name_or_path": str(tiny_model_dir), "dataset": str(csv_data),
                                     "output_dir": str(tmp_path / "single"), "num_train_epochs": 1, **FAST}))
    assert result.test_metrics is not None


def test_the_pair_recipe_trains_on_its_local_copy(tiny_model_dir, tmp_path):
    folder = tmp_path / "glue-mrpc"
    folder.mkdir()
    to_glue = lambda rows: pd.DataFrame([{"sentence1": r["premise"], "sentence2": r["hypothesis"],  # noqa: E731
                                          "label": int(r["label"] == "same"), "idx": i} for i, r in enumerate(rows)])
    to_glue(nli_rows(10)).to_parquet(folder / "train.parquet")
    to_glue(nli_rows(3, offset=10)).to_parquet(folder / "validation.parquet")
    to_glue(nli_rows(3, offset=13)).assign(label=-1).to_parquet(folder / "test.parquet")  # GLUE hides test labels
    out = tmp_path / "mrpc"
    result = run(tiny_model_dir, "--dataset", f"mrpc={folder}", "--output-dir", out, *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    metrics = json.loads((out / "all_results.json").read_text())
    assert "test_accuracy" in metrics and torch.load(out / "training_args.bin", weights_only=False).collision
