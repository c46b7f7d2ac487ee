"""The model card's pictures: each target's start-vs-end similarity heatmap and the condensation curves, drawn
next to the card (:mod:`ko_hf.card.plots`) when matplotlib is installed, else a note that says how to get them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .data import KOModelCardData
from .escape import visible
from .render import start_label
from ..logged_metrics import aggregate_condensation
from .plots import PLOTS_INSTALL_HINT
from ..settings import describe

__all__ = ["CURVES_FILE", "draw_card_plots", "similarity_plot_file"]

CURVES_FILE = "ko_condensation.png"


def similarity_plot_file(target: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.removesuffix(".weight")).strip("._") or "target"
    return f"ko_similarity_{name}.png"


def curve_history(d: KOModelCardData) -> list[dict[str, Any]]:
    """The ``ko/`` history the condensation curves draw, starting with the start-of-training measurement."""
    start_entry: dict[str, Any] = {"step": d.condensation_start_step}
    for target, values in d.condensation_start.items():
        start_entry.update({f"ko/{target}/{k}": v for k, v in values.items()})
    start_entry.update(aggregate_condensation(d.condensation_start))  # as logged: with two or more targets only
    first = d.condensation_start_step
    return ([start_entry] if d.condensation_start and not any(e.get("step") == first for e in d.ko_history)
            else []) + [e for e in d.ko_history if e.get("step", 0) >= first]


def _draw(d: KOModelCardData, weights: Mapping[str, torch.Tensor], start_weights: Mapping[str, torch.Tensor],
          start_steps: Mapping[str, int], output_dir: Path) -> None:
    from . import plots

    title_setting = (describe({"collision": d.collision, **d.ko_arguments}) if d.ko_applied
                     else "AdamW baseline, no collision")
    for target in d.targets:
        name = target["name"]
        start = start_weights.get(name)
        if start is None or name not in weights or target["shape"][0] < 2:
            continue
        file = similarity_plot_file(name)
        labels = d.label_names if len(d.label_names) == target["shape"][0] else None
        start_text = start_label(start_steps.get(name, 0))
        plots.plot_similarity_heatmaps(start, weights[name].detach(), output_dir / file,
                                       title=f"{visible(name)} ({title_setting})", start_label=start_text,
                                       end_label=f"end of training (step {d.global_step})"
                                       if d.global_step is not None else "end of training",
                                       neuron_labels=[visible(x) for x in labels] if labels else None)
        d.plots.append((f"Cosine similarity of the neurons of {name}, {start_text} vs end of training", file))
    history = curve_history(d)
    if any(len(e) > 1 for e in history):
        plots.plot_condensation_curves(history, output_dir / CURVES_FILE,
                                       title=f"Condensation during training ({title_setting})")
        d.plots.append(("Weight correlation and neuron similarity during training", CURVES_FILE))


def draw_card_plots(d: KOModelCardData, weights: Mapping[str, torch.Tensor],
                    start_weights: Mapping[str, torch.Tensor], start_steps: Mapping[str, int],
                    output_dir: Path) -> None:
    """Draw the pictures into ``output_dir`` and list them in ``d.plots`` (or say in ``d.plots_note`` why not).

    ``weights`` are the targets' weights now (by the names ``d.targets`` uses), ``start_weights`` their copies
    at the start of training, taken at ``start_steps``.
    """
    from . import plots

    d.plots, d.plots_note = [], None
    if not plots.matplotlib_available():
        d.plots_note = (
            "*Condensation pictures* (start-vs-end similarity heatmaps of the targets, condensation curves) were "
            f"not drawn because matplotlib is not installed: `{PLOTS_INSTALL_HINT}`, then call "
            "`trainer.create_model_card()` again (or draw them with `ko_hf.card.plots`)."
        )
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        _draw(d, weights, start_weights, start_steps, output_dir)
    except ImportError:
        d.plots = []
        d.plots_note = (f"*Condensation pictures* were not drawn because matplotlib could not be imported: "
                        f"`{PLOTS_INSTALL_HINT}`, then call `trainer.create_model_card()` again.")
