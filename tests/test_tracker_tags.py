"""What experiment trackers get: transformers' TensorBoard and W&B callbacks prefix every training log with train/,
so the KO metrics logged as ko/<target>/<metric> arrive as train/ko/<target>/<metric>; the README says so."""

from pathlib import Path

from transformers.integrations.integration_utils import rewrite_logs

from ko_hf import KOTrainer, KOTrainingArguments

from tiny import tiny_bert, tiny_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_trackers_get_the_ko_metrics_under_train_ko(tmp_path):
    args = KOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1, logging_steps=1,
                               save_strategy="no", disable_tqdm=True, collision="hard")
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset(n=8))
    trainer.train()
    entry = next(e for e in trainer.state.log_history if "ko/classifier.weight/weight_correlation" in e)
    assert "train/ko/classifier.weight/weight_correlation" in rewrite_logs(entry)  # what TensorBoardCallback writes
    paragraph = next(p for p in README.read_text(encoding="utf-8").split("\n\n") if p.startswith("**Logged metrics.**"))
    assert "`train/ko/<target>/<metric>`" in paragraph and "`ko/<target>/<metric>`" in paragraph
