"""transformers' own run_classification.py with only its imports swapped for KOTrainer / KOTrainingArguments.

The script is transformers' code and is not part of this repository: set RUN_CLASSIFICATION to your copy (the one
of your installed transformers version) to run this test; it is skipped otherwise. See
examples/run_classification_ko.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_finetune import save_tiny_model, utterances

SCRIPT = os.environ.get("RUN_CLASSIFICATION")
RUNNER = Path(__file__).resolve().parents[1] / "examples" / "run_classification_ko.py"

pytestmark = pytest.mark.skipif(not SCRIPT or not Path(SCRIPT).is_file(),
                                reason="set RUN_CLASSIFICATION to a copy of transformers' run_classification.py")


def test_run_classification_trains_evaluates_predicts_with_ko(tmp_path):
    model = save_tiny_model(tmp_path / "tiny-bert")
    files = {}
    names = sorted({row["label"] for row in utterances(1)})
    for split, rows in (("train", utterances(8)), ("validation", utterances(2, offset=8)),
                        ("test", utterances(3, offset=10))):
        files[split] = tmp_path / f"{split}.csv"
        # integer label ids: with datasets 5 the script leaves string labels as strings (map() keeps the column's
        # type), and its unmodified version with plain Trainer fails on them the same way
        frame = pd.DataFrame(rows).assign(label=lambda f: f["label"].map(names.index))
        frame.to_csv(files[split], index=False)
    out = tmp_path / "out"
    command = [sys.executable, str(RUNNER), "--script", SCRIPT, "--model_name_or_path", str(model),
               "--train_file", str(files["train"]), "--validation_file", str(files["validation"]),
               "--test_file", str(files["test"]), "--text_column_names", "text", "--label_column_name", "label",
               "--do_train", "--do_eval", "--do_predict", "--max_seq_length", "32", "--num_train_epochs", "3",
               "--per_device_train_batch_size", "8", "--learning_rate", "5e-3", "--logging_steps", "1",
               "--output_dir", str(out), "--collision", "hard", "--coll_coef", "0.9", "--use_cpu", "true",
               "--report_to", "none", "--seed", "3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
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
