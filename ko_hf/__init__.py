"""ko-hf: the KO (Kinetics-inspired Optimizer) collision step for Hugging Face fine-tuning."""

from .collision import (
    accepted_pair_fraction,
    collision_mask,
    cosine_similarity_matrix,
    hard_collision,
    neuron_similarity,
    soft_collision,
    weight_correlation,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "accepted_pair_fraction",
    "collision_mask",
    "cosine_similarity_matrix",
    "hard_collision",
    "neuron_similarity",
    "soft_collision",
    "weight_correlation",
]
