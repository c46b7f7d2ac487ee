"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.card.portable` (paths a card can show), kept for their imports."""

from .card.portable import (
    PLACEHOLDER_PREFIX,
    Machine,
    is_placeholder,
    join_words,
    portable_command,
    portable_directory,
    portable_option,
    portable_path,
    portable_value,
    portable_values,
    portable_words,
    scrub_text,
)

__all__ = [
    "portable_path",
    "portable_command",
    "portable_option",
    "PLACEHOLDER_PREFIX",
    "Machine",
    "portable_value",
    "portable_values",
    "portable_words",
    "portable_directory",
    "is_placeholder",
    "join_words",
    "scrub_text",
]
