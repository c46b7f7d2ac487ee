"""The model card: ko-hf 0.2's and 0.3's import path, kept so that their imports keep working. The code lives in
:mod:`ko_hf.card` (the callback, the facts, the data, the template and the pictures, a module each).
"""

from typing import Any

from .card.base_model import BaseModelOrigin, is_hub_id, resolve_base_model
from .card.callback import KOModelCardCallback, card_data_from_arguments, hub_required, ko_field_names, write_model_card
from .card.data import KOModelCardData
from .card.escape import md_code, md_fence, md_text, visible  # noqa: F401 - where earlier releases had them
from .card.non_default import non_default_fields
from .card.pictures import CURVES_FILE, similarity_plot_file  # noqa: F401 - where earlier releases had them
from .card.plots import PLOTS_INSTALL_HINT  # noqa: F401 - where earlier releases had them
from .card.portable import portable_command
from .card.render import KO_CITATION, KO_PAPER_URL, render_model_card  # noqa: F401 - where earlier releases had them
from .settings import setting_names

__all__ = [
    "KO_CITATION",
    "KOModelCardData",
    "KOModelCardCallback",
    "render_model_card",
    "write_model_card",
    "card_data_from_arguments",
    "is_hub_id",
    "hub_required",
    "BaseModelOrigin",
    "resolve_base_model",
    "ko_field_names",
    "non_default_fields",
    "portable_command",
    "md_text",
    "md_code",
    "md_fence",
]


def __getattr__(name: str) -> Any:
    if name == "KO_FIELDS_SHOWN":  # ko-hf 0.1's constant: the settings the KO section shows, now the declared ones
        return setting_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
