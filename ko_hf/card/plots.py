"""Condensation pictures: the head's cosine-similarity heatmaps and the ``ko/`` metric curves.

matplotlib is optional (``pip install "ko-hf[plots]"``): it is imported inside each function. Figures are built
with matplotlib's object API on an Agg canvas, never through ``pyplot``: nothing is registered globally (no
figure to leak, no backend switched under a notebook user's feet). Each function writes one PNG and returns its
``Path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..collision import cosine_similarity_matrix
from ..logged_metrics import logged_metric

__all__ = [
    "PLOTS_INSTALL_HINT",
    "matplotlib_available",
    "neuron_order",
    "plot_similarity_heatmaps",
    "plot_condensation_curves",
    "plot_condensation_comparison",
    "CURVE_MIN_SPAN",
    "condensation_ylim",
]

PLOTS_INSTALL_HINT = 'pip install "ko-hf[plots]"'

#: The two condensation metrics, in panel order: (log key suffix, panel title, y label).
_METRICS = (
    ("weight_correlation", "Weight correlation", "mean |cos(w_i, w_j)|, i ≠ j"),
    ("neuron_similarity", "Neuron similarity", "max |cos(w_i, w_j)|, i ≠ j"),
)


#: The y axis of a condensation curve spans at least this much (in |cos| units; both metrics live in [0, 1]).
#: Run-to-run noise of a head's weight correlation is ~0.01 (README, CPU study: 0.045 ± 0.010 over 3 seeds), so a
#: change of 0.01 fills a fifth of the panel, while an auto-scaled axis would blow a change of 0.00003 up into a
#: cliff that is only float noise.
CURVE_MIN_SPAN = 0.05


def condensation_ylim(values: Sequence[float], min_span: float = CURVE_MIN_SPAN) -> tuple[float, float]:
    """y limits of a condensation panel: the data with a 5 % margin, but never narrower than ``min_span``,
    centred on the data and kept inside [0, 1] (the range of both metrics)."""
    finite = [float(v) for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    span = min(max((high - low) * 1.1, min_span), 1.0)
    bottom = (low + high) / 2 - span / 2
    bottom = min(max(bottom, 0.0), 1.0 - span)
    return bottom, bottom + span


def plain_text(text: Any) -> str:
    """``text`` for a matplotlib label, shown as written: ``$`` would start mathtext (and a bad formula raises
    at save time), a newline would break the layout."""
    return str(text).replace("\n", "\\n").replace("\r", "\\r").replace("$", r"\$")


def _figure(width: float, height: float):
    """A matplotlib ``Figure`` on an Agg canvas, or an ImportError that says how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"drawing the KO condensation pictures needs matplotlib, which is not installed: {PLOTS_INSTALL_HINT}"
        ) from error
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _as_rows(weight: Any) -> torch.Tensor:
    tensor = torch.as_tensor(weight).detach().float().cpu()
    if tensor.dim() < 2:
        raise ValueError(f"a heatmap needs a weight with neurons as rows (2-D), got shape {tuple(tensor.shape)}")
    return tensor.reshape(tensor.shape[0], -1)


def neuron_order(weight: Any) -> list[int]:
    """An order of the rows that puts similar neurons next to each other, so blocks show in the heatmap.

    Average-linkage hierarchical clustering on the cosine distance ``1 - cos`` (with optimal leaf ordering)
    when scipy is installed; otherwise rows sorted by their coordinate on the first principal direction of the
    unit rows.
    """
    rows = _as_rows(weight)
    n = rows.shape[0]
    if n < 3:
        return list(range(n))
    similarity = cosine_similarity_matrix(rows).double()
    try:
        from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
        from scipy.spatial.distance import squareform

        distance = (1.0 - similarity).clamp_min(0.0)
        distance = 0.5 * (distance + distance.T)
        distance.fill_diagonal_(0.0)
        condensed = squareform(distance.numpy(), checks=False)
        tree = linkage(condensed, method="average")
        tree = optimal_leaf_ordering(tree, condensed)
        return [int(i) for i in leaves_list(tree)]
    except ImportError:
        norms = rows.norm(dim=1, keepdim=True)
        unit = rows / torch.where(norms > 0, norms, torch.ones_like(norms))
        centred = unit - unit.mean(dim=0, keepdim=True)
        _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
        return torch.argsort(centred.double() @ vh[0]).tolist()


def _finish(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=120, bbox_inches="tight", facecolor="white")
    finally:
        fig.clear()
    return path


def plot_similarity_heatmaps(
    weight_start: Any,
    weight_end: Any,
    path: str | os.PathLike,
    title: str | None = None,
    *,
    start_label: str = "start of training",
    end_label: str = "end of training",
    neuron_labels: Sequence[str] | None = None,
) -> Path:
    """Cosine similarity of the rows of a layer's weight at the start and at the end of training, side by side.

    Neurons are reordered once, by :func:`neuron_order` of the *end* weights, and the same order is applied to
    both panels, so a block that forms during training shows as a block on the right and as its origin on the
    left. Colours run from -1 (blue) through 0 (white) to +1 (red), with one shared colour bar. With at most 16
    neurons each tick names the neuron (``neuron_labels``, e.g. a head's class names, else its row index), and
    with at most 8 each cell shows its value.
    """
    start, end = _as_rows(weight_start), _as_rows(weight_end)
    if start.shape != end.shape:
        raise ValueError(f"start and end weights differ in shape: {tuple(start.shape)} vs {tuple(end.shape)}")
    fig = _figure(11.5, 5.4)
    n, d = end.shape
    order = torch.tensor(neuron_order(end))
    panels = [cosine_similarity_matrix(w)[order][:, order].numpy() for w in (start, end)]

    axes = fig.subplots(1, 2)
    image = None
    for axis, matrix, label in zip(axes, panels, (start_label, end_label)):
        image = axis.imshow(matrix, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        axis.set_title(plain_text(label), fontsize=12)
        if n <= 16:  # few neurons: name each one
            names = [plain_text(neuron_labels[int(i)]) if neuron_labels is not None and int(i) < len(neuron_labels)
                     else str(int(i)) for i in order]
            axis.set_xticks(range(n), names, fontsize=8, rotation=45 if neuron_labels is not None else 0,
                            ha="right" if neuron_labels is not None else "center")
            axis.set_yticks(range(n), names, fontsize=8)
            axis.set_xlabel("neuron", fontsize=10)
            axis.set_ylabel("neuron", fontsize=10)
        else:
            axis.tick_params(labelsize=8)
            axis.set_xlabel("neuron (reordered)", fontsize=10)
            axis.set_ylabel("neuron (reordered)", fontsize=10)
        if n <= 8:
            for i in range(n):
                for j in range(n):
                    value = float(matrix[i, j]) + 0.0  # no "-0.00"
                    value = 0.0 if abs(value) < 0.005 else value
                    axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9,
                              color="white" if abs(value) > 0.6 else "black")
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.85, pad=0.02)
    colorbar.set_label("cos(w_i, w_j)", fontsize=10)
    colorbar.set_ticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    heading = plain_text(title or "Cosine similarity of the neurons")
    fig.suptitle(f"{heading}\n{n} neurons × {d} inputs; order: clustering of the end weights", fontsize=12)
    return _finish(fig, path)


def _steps_and_values(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "step" in entry:
            steps.append(entry["step"])
            values.append(float(value))
    return steps, values


def _target_names(history: Sequence[Mapping[str, Any]], suffix: str) -> list[str]:
    names: list[str] = []
    for entry in history:
        for key in entry:
            if key.startswith("ko/") and key.endswith("/" + suffix) and key.count("/") >= 2:
                name = key[len("ko/") : -len("/" + suffix)]
                if name not in names:
                    names.append(name)
    return names


def _no_data(axis) -> None:
    axis.text(0.5, 0.5, "no ko/ metrics logged", ha="center", va="center", transform=axis.transAxes,
              color="grey", fontsize=11)


def plot_condensation_curves(
    log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """``ko/weight_correlation`` and ``ko/neuron_similarity`` against the training step (two panels).

    One thin line per target (``ko/<param>/...``) and a thick black line for the aggregate (mean weight
    correlation / max neuron similarity over the targets). ``log_history`` is ``trainer.state.log_history``
    (entries without ``ko/`` keys are skipped).
    """
    fig = _figure(11.5, 4.4)
    axes = fig.subplots(1, 2)
    for axis, (suffix, panel_title, ylabel) in zip(axes, _METRICS):
        drawn: list[float] = []
        targets = _target_names(log_history, suffix)
        for index, name in enumerate(targets):
            steps, values = _steps_and_values(log_history, f"ko/{name}/{suffix}")
            if steps:
                axis.plot(steps, values, marker="." if len(steps) < 30 else None, linewidth=1.4, alpha=0.8,
                          color=f"C{index % 10}", label=plain_text(name))
                drawn += values
        steps, values = _steps_and_values(log_history, f"ko/{suffix}")
        if steps and len(targets) != 1:
            aggregate = "mean over targets" if suffix == "weight_correlation" else "max over targets"
            axis.plot(steps, values, color="black", linewidth=2.4, label=f"all targets ({aggregate})")
            drawn += values
        _finish_panel(axis, drawn, panel_title, ylabel, legend_size=8)
    fig.suptitle(plain_text(title or "Condensation of the collision targets during training"), fontsize=13)
    return _finish(fig, path)


def _finish_panel(axis: Any, drawn: Sequence[float], title: str, ylabel: str, *, legend_size: int) -> None:
    """Title, labels, grid, legend and y range (:func:`condensation_ylim` of the values ``drawn``) of a
    metric-against-step panel, or a 'no data' note."""
    if not drawn:
        _no_data(axis)
    else:
        axis.legend(fontsize=legend_size, loc="best")
        axis.set_ylim(*condensation_ylim(drawn))
        axis.ticklabel_format(axis="y", useOffset=False)  # no "+0.0599" offset that hides the scale
    axis.set_title(title, fontsize=12)
    axis.set_xlabel("training step", fontsize=10)
    axis.set_ylabel(ylabel, fontsize=10)
    axis.grid(alpha=0.3)


def comparison_series(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], layer: str | None = None
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """``{metric: {run: (steps, values)}}`` for the condensation metrics: each run's aggregate ``ko/<metric>`` (its
    single target's value when it has one), or ``ko/<layer>/<metric>`` when ``layer`` is given (runs whose targets
    differ compare on a layer they share)."""
    if layer:
        return {suffix: {name: _steps_and_values(history or [], f"ko/{layer}/{suffix}")
                         for name, history in histories.items()} for suffix, _, _ in _METRICS}
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for suffix, _, _ in _METRICS:
        series[suffix] = {}
        for name, history in histories.items():
            points = [(e["step"], logged_metric(dict(e), suffix)) for e in history or [] if "step" in e]
            points = [(step, value) for step, value in points if value is not None]
            series[suffix][name] = ([s for s, _ in points], [v for _, v in points])
    return series


def plot_condensation_comparison(
    histories: dict[str, list[dict]], path: str | os.PathLike, title: str | None = None, layer: str | None = None
) -> Path:
    """One figure comparing runs, e.g. ``{"AdamW": log_history, "soft": ..., "hard": ...}``.

    Two panels (weight correlation, neuron similarity) with one line per run against the training step: the
    aggregate ``ko/`` metric of each run's ``log_history``, or that of ``layer`` (see :func:`comparison_series`).
    """
    if not histories:
        raise ValueError("plot_condensation_comparison needs at least one run: {name: log_history}")
    series = comparison_series(histories, layer)
    fig = _figure(11.5, 4.4)
    axes = fig.subplots(1, 2)
    for axis, (suffix, panel_title, ylabel) in zip(axes, _METRICS):
        drawn: list[float] = []
        for index, (name, (steps, values)) in enumerate(series[suffix].items()):
            if steps:
                axis.plot(steps, values, marker="." if len(steps) < 30 else None, linewidth=2.0,
                          color=f"C{index % 10}", label=plain_text(name))
                drawn += values
        _finish_panel(axis, drawn, panel_title, ylabel, legend_size=9)
    fig.suptitle(plain_text(title or "Condensation of the head: runs compared"), fontsize=13)
    return _finish(fig, path)
