"""ko-hf: the KO (Kinetics-inspired Optimizer) collision step for Hugging Face fine-tuning.

Every public name loads on first use: ``import ko_hf`` imports neither torch nor transformers, so the light
modules (``ko_hf.run.preflight``, ``ko_hf.run.folder``) can check a command line before anything heavy is imported.
``from ko_hf import soft_collision`` imports torch; ``from ko_hf import KOTrainer`` imports transformers.
"""

from . import _moved
from ._lazy import lazy_exports

_moved.install()  # the module paths of earlier releases (ko_hf.modelcard, ko_hf.preflight, ...) keep importing

__version__ = "0.3.0"

_LAZY = {
    **{name: "collision" for name in (
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
    )},
    "KOAdamW": "optim",
    "KOSGD": "optim",
    "ko_optimizer_class": "optim",
    "collision_generator_seed": "optim",
    "ko_param_groups": "groups",
    "collision_target_names": "targets",
    "KOTrainer": "trainer",
    "KOTrainingArguments": "arguments",
    "load_text_classification": "data",
    "DATASET_RECIPES": "data",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = ["__version__", *_LAZY]
