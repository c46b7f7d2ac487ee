"""What counts as a secret, and that it is hidden in every form a command line or a mapping carries it."""

import pytest

from ko_hf.redaction import REDACTED, is_secret_key, redact_argv, redact_mapping, redact_text

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.mark.parametrize("key", ["hub_token", "--hub-token", "HF_TOKEN", "wandb_api_key", "password", "api-key",
                                 "client_secret", "push_to_hub_token"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["average_tokens_across_devices", "max_length", "tokenizer_name", "hub_model_id",
                                 "keyboard", "monkey", "seed"])
def test_keys_that_are_not_secrets(key):
    assert not is_secret_key(key)


def test_hf_token_text_is_hidden_anywhere():
    assert redact_text(f"push with {TOKEN} now") == f"push with {REDACTED} now"
    assert redact_text("a path/hf_x stays") == "a path/hf_x stays"  # too short to be a token


def test_argv_hides_every_form():
    argv = ["ko-finetune", "m", "--set", f"hub_token={TOKEN}", "--hub-token", "secret-value",
            "--hub_token=other-secret", "--set", "save_steps=200", "--note", TOKEN, "--set=hub_token=third",
            "--set=save_steps=5"]
    shown = redact_argv(argv)
    assert shown == ["ko-finetune", "m", "--set", f"hub_token={REDACTED}", "--hub-token", REDACTED,
                     f"--hub_token={REDACTED}", "--set", "save_steps=200", "--note", REDACTED,
                     f"--set=hub_token={REDACTED}", "--set=save_steps=5"]
    assert not any("secret" in word or "third" in word or TOKEN in word for word in shown)


def test_mapping_hides_secret_values_and_token_text_but_keeps_unset_ones():
    shown = redact_mapping({"hub_token": "abc", "push_to_hub_token": None, "average_tokens_across_devices": True,
                            "note": f"x {TOKEN}", "nested": {"api_key": "k", "n": 1}, "items": ["a", TOKEN]})
    assert shown == {"hub_token": REDACTED, "push_to_hub_token": None, "average_tokens_across_devices": True,
                     "note": f"x {REDACTED}", "nested": {"api_key": REDACTED, "n": 1}, "items": ["a", REDACTED]}
