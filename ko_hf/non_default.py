"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.non_default` (a dataclass's non-default fields), kept for their
imports.
"""

from .card.non_default import field_default, non_default_fields, plain

__all__ = [
    "plain",
    "field_default",
    "non_default_fields",
]
