"""Hub ids when the Hub is not there: an offline flag (named), or no network (said at once, without retries).

"No network" is made certain by pointing HF_ENDPOINT at a closed local port: the answer is the same on a machine
with internet access."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from ko_hf.finetune import FinetuneError, finetune, parse_config

from test_finetune import make_config

FAST_FLAGS_CLI = ["--epochs", "1", "--batch-size", "8", "--max-length", "32", "--no-plots"]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connecting is refused


def ko_finetune_without_network(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ko_hf_cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_offline_error_names_the_variable_that_is_set(tiny_model_dir, csv_data, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # huggingface_hub reads it as HF_HUB_OFFLINE
    options, args = parse_config(make_config("some-org/some-model", csv_data, tmp_path / "o"))
    with pytest.raises(FinetuneError, match=r"TRANSFORMERS_OFFLINE=1 is set \(offline mode\)") as err:
        finetune(options, args)
    assert "HF_HUB_OFFLINE" not in str(err.value)


def test_unreachable_hub_is_reported_at_once(tiny_model_dir, csv_data, tmp_path):
    out = ko_finetune_without_network(["some-org/some-model", "--dataset", csv_data, "-o", tmp_path / "o",
                                       *FAST_FLAGS_CLI], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    error = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "cannot reach the Hugging Face Hub to download model 'some-org/some-model'" in error[0]
    assert "no offline flag (HF_HUB_OFFLINE) is set" in error[0]
    assert "Retrying" not in out.stderr  # no backoff: one question to the Hub



def test_unreachable_hub_for_a_dataset_is_reported_at_once(monkeypatch):
    import datasets
    from huggingface_hub import constants

    from ko_hf import hub
    from ko_hf.data import DatasetError, load_text_classification

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    hub.hub_unreachable.cache_clear()
    try:
        with pytest.raises(DatasetError, match=r"cannot reach the Hugging Face Hub to load dataset 'someone/some-data' "
                                               r"\(http://127.0.0.1:\d+: .*\); no offline flag"):
            load_text_classification("someone/some-data")
    finally:
        hub.hub_unreachable.cache_clear()


def test_unreachable_hub_with_a_cached_model_uses_the_cache(tiny_model_dir, csv_data, tmp_path):
    snapshot = tmp_path / "hf-home" / "hub" / "models--some-org--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    out = ko_finetune_without_network(["some-org/tiny", "--dataset", csv_data, "-o", tmp_path / "o", "--max-steps",
                                       "1", *FAST_FLAGS_CLI], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "the Hugging Face Hub is unreachable" in out.stderr and "using the cached copy of some-org/tiny" in out.stderr
    assert "Retrying" not in out.stderr


@pytest.mark.parametrize("name, valid, namespaced", [
    ("bert-base-cased", True, False), ("sentence-transformers/all-MiniLM-L6-v2", True, True),
    ("./model", False, False), ("/abs/model", False, False), ("a/b/c", False, False), ("a..b", False, False),
    ("config.json", False, False), ("-x", False, False), ("", False, False), (None, False, False),
])
def test_is_repo_id(name, valid, namespaced):
    from ko_hf.hub import is_repo_id

    assert is_repo_id(name) is valid
    assert is_repo_id(name, namespaced=True) is namespaced
