import os

# A slip into a Hub call must fail at once instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402 - after the environment above


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny BERT classifier saved as a local model folder, once per test module."""
    from test_finetune import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny-bert")


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    """A small CSV data set (train/validation/test files), once per test module."""
    from test_finetune import write_fixture

    return write_fixture(tmp_path_factory.mktemp("data"), "csv")[0]
