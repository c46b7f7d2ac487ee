"""The Hub model card of a KO run: the facts as data, the prose as a template (as in sentence-transformers).

* :mod:`~ko_hf.card.callback`: :class:`KOModelCardCallback` records what the card says while the trainer runs (and
  keeps the start of training in checkpoints);
* :mod:`~ko_hf.card.facts`: the run's facts read from its arguments, optimizer, model and machine (settings,
  non-default arguments, optimizer hyperparameters, device, versions, adapter), for the callback and the card;
* :mod:`~ko_hf.card.write`: :func:`build_card_data` fills the data from a trainer, :func:`write_model_card` (what
  ``KOTrainer.create_model_card`` calls) writes ``README.md``;
* :mod:`~ko_hf.card.data`: :class:`KOModelCardData`, a ``huggingface_hub.CardData``: the facts and the YAML metadata;
* :mod:`~ko_hf.card.render` + ``templates/model_card_template.md``: the Markdown (Jinja, via
  ``ModelCard.from_template``);
* :mod:`~ko_hf.card.reproduce`: the command and the Python snippet that train the model again;
* :mod:`~ko_hf.card.pictures` (which pictures a card gets) and :mod:`~ko_hf.card.plots` (drawing them, and
  ``compare``'s figure; matplotlib);
* helpers: :mod:`~ko_hf.card.escape` (text made safe for Markdown), :mod:`~ko_hf.card.base_model` (where the
  model came from), :mod:`~ko_hf.card.portable` (paths without a user's name), :mod:`~ko_hf.card.non_default`.

Every public name loads on first use, as in :mod:`ko_hf`.
"""

from .._lazy import lazy_exports

_LAZY = {
    "KOModelCardCallback": "callback",
    "card_data_from_arguments": "write",
    "build_card_data": "write",
    "write_model_card": "write",
    "KOModelCardData": "data",
    "render_model_card": "render",
    "python_snippet": "reproduce",
    "draw_card_plots": "pictures",
    "plot_condensation_comparison": "plots",
    "plot_condensation_curves": "plots",
    "plot_similarity_heatmaps": "plots",
    "BaseModelOrigin": "base_model",
    "resolve_base_model": "base_model",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
