"""transformers' own run_classification.py with only its imports swapped for KOTrainer / KOTrainingArguments.

The script is transformers' code and is not part of this repository: set RUN_CLASSIFICATION to your copy (the one
of your installed transformers version) to run the end-to-end tests; they are skipped otherwise. The runner's own
helpers are tested without it. See examples/run_classification_ko.py.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from test_finetune import save_tiny_model, utterances

SCRIPT = os.environ.get("RUN_CLASSIFICATION")
RUNNER = Path(__file__).resolve().parents[1] / "examples" / "run_classification_ko.py"

needs_script = pytest.mark.skipif(not SCRIPT or not Path(SCRIPT).is_file(),
                                  reason="set RUN_CLASSIFICATION to a copy of transformers' run_classification.py")


def runner_module():
    spec = importlib.util.spec_from_file_location("run_classification_ko", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_splits(tmp_path, as_ids):
    """train / validation / test CSV files of the tiny intents, labels as names or as integer ids."""
    files = {}
    names = sorted({row["label"] for row in utterances(1)})
    for split, rows in (("train", utterances(8)), ("validation", utterances(2, offset=8)),
                        ("test", utterances(3, offset=10))):
        files[split] = tmp_path / f"{split}.csv"
        frame = pd.DataFrame(rows)
        if as_ids:
            frame = frame.assign(label=lambda f: f["label"].map(names.index))
        frame.to_csv(files[split], index=False)
    return files, names


def test_string_labels_become_class_ids_shared_by_every_split():
    runner = runner_module()
    data = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "intent": ["play", "book", "play"]}),
        "validation": datasets.Dataset.from_dict({"text": ["d"], "intent": ["weather"]}),
    })
    cast, names = runner.cast_string_labels(data, "intent")
    assert names == ["book", "play", "weather"]
    assert list(cast["train"]["intent"]) == [1, 0, 1] and list(cast["validation"]["intent"]) == [2]
    assert runner.cast_string_labels(cast, "intent") == (cast, None)  # ids already
    assert runner.cast_string_labels(data, "label")[1] is None  # no such column
    large = data.cast_column("intent", datasets.Value("large_string"))  # what the csv builder reads text as
    assert runner.cast_string_labels(large, "intent")[1] == names
    assert runner.option_value(["--label_column_name", "intent", "--x"], "--label_column_name", "label") == "intent"
    assert runner.option_value(["--label_column_name=y"], "--label_column_name", "label") == "y"
    assert runner.option_value(["--x", "1"], "--label_column_name", "label") == "label"


def test_saved_classes_get_their_label_names_back(tmp_path):
    runner = runner_module()
    names = [f"intent{i:02d}" for i in range(12)]
    trained_on = sorted(str(i) for i in range(12))  # the script sorts the ids' text: "0", "1", "10", "11", "2", ...
    (tmp_path / "config.json").write_text(json.dumps({"id2label": dict(enumerate(trained_on)),
                                                      "label2id": {t: i for i, t in enumerate(trained_on)}}))
    assert runner.name_saved_classes(tmp_path, names)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["id2label"]["2"] == "intent10" and config["label2id"]["intent02"] == 4
    assert not runner.name_saved_classes(tmp_path / "missing", names)


def run_script(tmp_path, files, *extra):
    model = save_tiny_model(tmp_path / "tiny-bert")
    out = tmp_path / "out"
    command = [sys.executable, str(RUNNER), "--script", SCRIPT, "--model_name_or_path", str(model),
               "--train_file", str(files["train"]), "--validation_file", str(files["validation"]),
               "--test_file", str(files["test"]), "--text_column_names", "text", "--label_column_name", "label",
               "--do_train", "--do_eval", "--do_predict", "--max_seq_length", "32", "--num_train_epochs", "3",
               "--per_device_train_batch_size", "8", "--learning_rate", "5e-3", "--logging_steps", "1",
               "--output_dir", str(out), "--collision", "hard", "--coll_coef", "0.9", "--use_cpu", "true",
               "--report_to", "none", "--seed", "3", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@needs_script
def test_run_classification_trains_evaluates_predicts_with_ko(tmp_path):
    files, _ = write_splits(tmp_path, as_ids=True)
    out = run_script(tmp_path, files)
    metrics = json.loads((out / "all_results.json").read_text())
    assert 0 <= metrics["eval_accuracy"] <= 1
    assert "ko/classifier.weight/weight_correlation" in metrics and metrics["train_samples"] == 24
    state = json.loads((out / "trainer_state.json").read_text())
    assert any("ko/classifier.weight/accepted_pair_fraction" in entry  # hard collision ran
               for entry in state["log_history"])
    predictions = (out / "predict_results.txt").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 1 + 9
    assert "KO" in (out / "README.md").read_text()
    saved = __import__("torch").load(out / "training_args.bin", weights_only=False)
    assert type(saved).__name__ == "KOTrainingArguments" and saved.collision == "hard"


@needs_script
def test_run_classification_takes_string_labels(tmp_path):
    """The script alone fails on string labels under datasets 5 (ValueError: too many dimensions 'str'); through
    the runner it trains on class ids and the saved model names its classes."""
    files, names = write_splits(tmp_path, as_ids=False)
    out = run_script(tmp_path, files)
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["id2label"].values()) == names
    assert {config["id2label"][str(i)] for i in config["label2id"].values()} == set(names)
    assert json.loads((out / "all_results.json").read_text())["train_samples"] == 24
