"""What ko-finetune train prints: a few progress lines and the results, not transformers' bar and log dicts."""

from test_cli import FAST_FLAGS, run


def test_train_prints_progress_lines_not_log_dicts(tiny_model_dir, csv_data, tmp_path):
    out = tmp_path / "run"
    result = run(tiny_model_dir, "--dataset", csv_data, "--output-dir", out, "--set", "logging_steps=1", *FAST_FLAGS)
    assert result.exit_code == 0, result.output
    assert "{'loss'" not in result.output and "'train_runtime'" not in result.output, result.output
    assert "run: training, " in result.stderr and "run: trained " in result.stderr, result.stderr
    assert "head weight correlation" in result.stdout  # the results table stays on stdout
    logged = (out / "trainer_state.json").read_text()
    assert '"loss"' in logged  # the metrics are still logged, to the trainer state (and any tracker)
