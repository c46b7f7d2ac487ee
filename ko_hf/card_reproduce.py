"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.reproduce` (the card's reproduce snippet), kept for their imports."""

from .card.reproduce import RESUME_KEY, RESUME_OPTION, python_snippet, scratch_command

__all__ = [
    "python_snippet",
    "scratch_command",
    "RESUME_OPTION",
    "RESUME_KEY",
]
