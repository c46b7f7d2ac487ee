"""Tiny models and data built in the test: offline, fast, real code paths."""

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

VOCAB = 50


def tiny_bert(num_labels: int = 3, seed: int = 0, dropout: float = 0.1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def tiny_dataset(n: int = 48, length: int = 12, num_labels: int = 3, seed: int = 0) -> Dataset:
    """Token sequences whose label is carried by a class-specific token, so the task is learnable."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_labels, (n,), generator=gen)
    ids = torch.randint(5, VOCAB, (n, length), generator=gen)
    ids[:, 1] = labels + 1
    ids[:, 0] = 0
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * length] * n, "labels": labels.tolist()}
    )
