"""ko-hf: the KO (Kinetics-inspired Optimizer) collision step for Hugging Face fine-tuning.

The collision functions import only torch. The Trainer side (``KOTrainer``, ``KOTrainingArguments``), the
optimizers and the data recipes load transformers/datasets on first use, so ``import ko_hf`` stays cheap.
"""

from importlib import import_module
from typing import Any

from .collision import (
    PAIRINGS,
    accepted_pair_fraction,
    candidate_pairs,
    collision_mask,
    cosine_similarity_matrix,
    hard_collision,
    hard_collision_with_count,
    neuron_similarity,
    row_cosines,
    soft_collision,
    weight_correlation,
)

__version__ = "0.1.0"

_LAZY = {
    "KOAdamW": "optim",
    "KOSGD": "optim",
    "ko_optimizer_class": "optim",
    "collision_generator_seed": "optim",
    "collision_target_names": "targets",
    "KOTrainer": "trainer",
    "KOTrainingArguments": "trainer",
    "load_text_classification": "data",
    "DATASET_RECIPES": "data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "PAIRINGS",
    "accepted_pair_fraction",
    "candidate_pairs",
    "collision_mask",
    "cosine_similarity_matrix",
    "hard_collision",
    "hard_collision_with_count",
    "neuron_similarity",
    "row_cosines",
    "soft_collision",
    "weight_correlation",
    *_LAZY,
]
