"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.base_model` (where a model came from), kept for their imports."""

from .card.base_model import BaseModelOrigin, is_hub_id, resolve_base_model

__all__ = [
    "BaseModelOrigin",
    "is_hub_id",
    "resolve_base_model",
]
