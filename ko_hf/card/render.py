"""The card's Markdown: :class:`~ko_hf.card.data.KOModelCardData` rendered through the template shipped in the
package (``templates/model_card_template.md``, Jinja, via ``huggingface_hub.ModelCard.from_template``).

The template holds the prose; this module gives it the values already escaped and formatted: the number format,
the tables (``ko_hf.markdown.markdown_table``), and the KO settings to show, read from ``ko_hf.settings`` when the
card is rendered (a setting added there shows with no change here).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from .base_model import is_hub_id
from .data import RESULT_METRICS, KOModelCardData
from .escape import md_code, md_fence, md_text
from ..markdown import markdown_table
from .non_default import plain
from ..settings import KOSetting, ko_settings

__all__ = ["KO_CITATION", "KO_PAPER_URL", "TEMPLATE_PATH", "render_model_card", "start_label"]

TEMPLATE_PATH = Path(__file__).with_name("templates") / "model_card_template.md"
KO_PAPER_URL = "https://arxiv.org/abs/2505.14777"
KO_CITATION = """@article{feng2025ko,
  title   = {KO: Kinetics-inspired Neural Optimizer with PDE Simulation Approaches},
  author  = {Feng, Mingquan and Huang, Yixin and Fu, Yifan and Wang, Shaobo and Yan, Junchi},
  journal = {arXiv preprint arXiv:2505.14777},
  year    = {2025}
}"""


#: Below this magnitude (and from :data:`LARGE` on) a measured number is written in scientific notation.
SMALL, LARGE = 1e-4, 1e6


def fmt(value: Any) -> str:
    """A measured number as the card's body writes it — the card's one number format: a whole number as an integer
    with thousands separators (``1,234``); any other number with four decimals (``0.5000``, ``1.1080``,
    ``-0.0146``), in scientific notation with four significant digits when its magnitude is below 0.0001 or from a
    million on (``3.215e-05``); ``nan`` and ``inf`` as such. Settings are shown as given (:func:`code`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not SMALL <= abs(value) < LARGE:
        return f"{value:.3e}"
    return f"{value:,.4f}"


def change(before: float, after: float) -> str:
    """A measured change, signed, in :func:`fmt`'s format (``+0.0146``)."""
    text = fmt(after - before)
    return text if text.startswith(("-", "n")) else "+" + text


def setting_text(value: Any) -> str:
    """A setting as given: a float by its shortest exact form (``0.003``, ``5e-05``), lists as JSON."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def code(value: Any, *, cell: bool = False) -> str:
    """A setting's value in a code span (:func:`setting_text`)."""
    return md_code(setting_text(value), cell=cell)


def count(n: float, unit: str) -> str:
    """``1 epoch``, ``0.5000 epochs``, ``3 epochs`` (a whole count as an integer)."""
    n = int(n) if float(n).is_integer() else n
    return f"{fmt(n)} {unit}" if n == 1 else f"{fmt(n)} {unit}s"


def hub_link(repo: str, kind: str = "") -> str:
    return f"[{md_text(repo)}](https://huggingface.co/{kind}{repo})" if is_hub_id(repo) else md_code(repo)


def start_label(step: int) -> str:
    """What the card calls the first measurement: the start of training, or the point a run resumed from."""
    return "start of training" if not step else f"resume point (step {step})"


# ---------------------------------------------------------------- what the template's sections list


def shown_settings(d: KOModelCardData) -> list[tuple[KOSetting, Any]]:
    """The declared KO settings the run recorded that act on its collision type, and their values, in declaration
    order; the collision type itself has a line of its own."""
    return [(s, d.ko_arguments[s.name]) for s in ko_settings()
            if s.name != "collision" and d.collision in s.applies_to and s.name in d.ko_arguments]


def other_arguments(d: KOModelCardData) -> list[tuple[str, Any]]:
    """The fields the run's arguments class adds beyond the declared settings (e.g. resume options)."""
    declared = {s.name for s in ko_settings()}
    return [(name, plain(value)) for name, value in d.ko_arguments.items() if name not in declared]


def _seed(d: KOModelCardData) -> str:
    return f", seed {d.data_seed}" if d.data_seed is not None else ""


def carved_note(d: KOModelCardData) -> str:
    """How a validation split carved from train was made."""
    share = f"{d.validation_fraction:.0%} of train" if d.validation_fraction is not None else "a share of train"
    return f"carved from train: {share}, label-stratified (`validation_fraction`{_seed(d)})"


def split_rows(d: KOModelCardData) -> list[list[str]]:
    """``[split, examples, note]``; the note says which splits are seeded, stratified subsets, which one was carved
    from train, and how many rows were dropped for a label that train lacks."""
    rows = []
    for split, n in d.dataset_splits.items():
        notes = []
        if split == "validation" and d.validation_carved:
            notes.append(carved_note(d))
        if split in d.subsets:
            option = "max_train_samples" if split == "train" else "max_eval_samples"
            notes.append(f"a seeded, label-stratified subset (`{option}={d.subsets[split]}`{_seed(d)})")
        if d.dropped_unseen.get(split):
            notes.append(f"{fmt(d.dropped_unseen[split])} rows dropped: their label is not in train")
        rows.append([md_text(split), fmt(n), "; ".join(notes)])
    return rows if any(row[2] for row in rows) else [row[:2] for row in rows]


def result_rows(d: KOModelCardData) -> list[list[str]]:
    return [[md_text(split), RESULT_METRICS[key][1] if key in RESULT_METRICS else "Loss", fmt(value)]
            for split, key, value in d.results() if key in RESULT_METRICS or key == "loss"]


def target_rows(d: KOModelCardData) -> list[list[str]]:
    """``[parameter, shape, neurons × inputs]``: each row of a weight is one neuron."""
    return [[md_code(t["name"], cell=True), "×".join(str(s) for s in t["shape"]),
             f"{t['shape'][0]} × {math.prod(int(s) for s in t['shape'][1:])}"] for t in d.targets]


def statistic_rows(statistics: list[tuple[str, list[tuple[int, float]]]]) -> list[list[str]]:
    """``[label, first logged, last logged, mean]`` of each ``(label, [(step, value)])`` that was logged."""
    return [[label, f"{fmt(series[0][1])} (step {series[0][0]})", f"{fmt(series[-1][1])} (step {series[-1][0]})",
             fmt(sum(v for _, v in series) / len(series))] for label, series in statistics if series]


def condensation_rows(d: KOModelCardData, metrics: list[tuple[str, str]]) -> list[list[str]]:
    """``[parameter, metric label, start, end, change]`` of each target measured at the start or the end."""
    rows = []
    for target in d.targets:
        name = target["name"]
        start, end = d.condensation_start.get(name) or {}, d.condensation_end.get(name) or {}
        if not start and not end:
            continue
        for metric, label in metrics:
            a, b = start.get(metric), end.get(metric)
            rows.append([md_code(name, cell=True), label, fmt(a) if a is not None else "–",
                         fmt(b) if b is not None else "–", change(a, b) if a is not None and b is not None else "–"])
    return rows


def snippet_path(path: str) -> str:
    """A local folder as Python code that names it: a string literal, ``os.path.expanduser`` around ``~/...``."""
    literal = json.dumps(path)
    return f"os.path.expanduser({literal})" if path == "~" or path.startswith("~/") else literal


def render_model_card(card_data: KOModelCardData) -> str:
    """The card's Markdown, YAML metadata included."""
    from huggingface_hub import ModelCard

    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE_PATH), card=card_data,
        md_text=md_text, md_code=md_code, md_fence=md_fence, fmt=fmt, code=code, count=count, hub_link=hub_link,
        json=json.dumps, table=markdown_table, start_label=start_label,
        settings=shown_settings(card_data), other_arguments=other_arguments(card_data),
        split_rows=split_rows(card_data), carved_note=carved_note(card_data), warnings=card_data.card_warnings(),
        snippet_path=snippet_path, result_rows=result_rows(card_data), target_rows=target_rows(card_data),
        statistic_rows=statistic_rows, condensation_rows=condensation_rows,
        paper_url=KO_PAPER_URL, ko_citation=KO_CITATION,
    )
    return re.sub(r"\n{3,}", "\n\n", str(card))
