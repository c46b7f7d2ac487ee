"""What the model card says, and the Hub metadata (YAML: base model, datasets, tags, ``model-index``) it implies.

:class:`KOModelCardData` is a ``huggingface_hub.CardData``: ``to_dict`` / ``to_yaml`` give the metadata block that
``ModelCard.from_template`` writes at the top of the card; its fields are what the template's body shows.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

from huggingface_hub import CardData

from .escape import visible_lines
from ..logged_metrics import is_number, logged_metric

__all__ = ["KOModelCardData", "RESULT_METRICS", "RESTARTED_STATE", "card_tags", "shown_text"]

#: Names under which evaluation metrics arrive, mapped to (model-index metric type, display name, metric args).
RESULT_METRICS = {
    "accuracy": ("accuracy", "Accuracy", None),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "f1_macro": ("f1", "Macro F1", {"average": "macro"}),
    "f1": ("f1", "F1", None),
    "weighted_f1": ("f1", "Weighted F1", {"average": "weighted"}),
}


#: ko-hf 0.1's ``KOModelCardData`` arguments (in their order) -> the setting each one is.
_LEGACY_ARGUMENTS = {"coll_coef": "coll_coef", "distance_scale": "collision_distance_scale",
                     "include_self": "collision_include_self", "collision_seed": "collision_seed"}


#: What of a run restarts when its checkpoint lacks a state file (``KOTrainer.resume_report.missing``).
RESTARTED_STATE = {
    "optimizer.pt": "the optimizer moments (and KO's collision step counter)",
    "scheduler.pt": "the learning-rate schedule",
    "trainer_state.json": "the step count, the optimizer and the learning-rate schedule (training restarted at "
                          "step 0 from the checkpoint's weights)",
    "rng_state.pth": "the random number generators (data order, dropout)",
}


def shown_text(text: str) -> str:
    """A user-given string as the card's metadata holds it: access tokens redacted, hidden characters (bidi,
    zero-width, controls) made visible; newlines and tabs stay (YAML quotes them)."""
    return visible_lines(text)


def card_tags(collision: str, extra: list[str] | str | None = None) -> list[str]:
    """``ko-optimizer`` + ``collision-<type>`` for a KO run, ``ko-baseline`` (and no KO claim) for ``none``."""
    tags = ["ko-optimizer", f"collision-{collision}"] if collision != "none" else ["ko-baseline"]
    tags += ["text-classification", "ko-hf"]
    for tag in [extra] if isinstance(extra, str) else extra or []:
        if tag not in tags and not (collision == "none" and (tag == "ko-optimizer" or tag.startswith("collision-"))):
            tags.append(tag)
    return tags


@dataclass
class KOModelCardData(CardData):
    """Everything the card says. Filled by ``KOModelCardCallback`` and ``write_model_card`` (:mod:`ko_hf.card`)."""

    model_name: str | None = None
    #: The repository this card is pushed to (the trainer's ``hub_model_id`` once a push created it, else
    #: ``args.hub_model_id``), if set; the card's Hub snippet needs it as ``owner/name``.
    hub_model_id: str | None = None
    #: The output folder as the user would type it in the directory the run started in (:mod:`ko_hf.card.portable`): where
    #: the card's local snippets load the model from.
    output_dir: str | None = None
    #: A Hub model id, or None: only a Hub id goes into the ``base_model`` metadata.
    base_model: str | None = None
    #: The local folder the weights were loaded from (said in the body only), when they came from one.
    base_model_path: str | None = None
    #: Where the Hub id of a local base-model folder was found (e.g. "its README.md"), when it was.
    base_model_evidence: str | None = None
    #: The model class that was trained (the classifier, under any PEFT / compile / DDP wrapper).
    architecture: str | None = None
    num_parameters: int | None = None
    num_trainable_parameters: int | None = None
    language: str | list[str] | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    #: "given" (create_model_card(license=...)) or "base model" (copied from the base model's card)
    license_source: str | None = None
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-classification"
    library_name: str = "transformers"
    #: A PEFT adapter: {"type": "LORA", "config_class": "LoraConfig", "settings": {non-default fields},
    #: "version": peft version, "tags": [...], "quantization": ...}; None for a full fine-tune.
    adapter: dict[str, Any] | None = None

    # dataset
    datasets: list[str] = field(default_factory=list)
    dataset_name: str | None = None
    dataset_source: str | None = None
    dataset_config: str | None = None
    dataset_splits: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    dataset_citation: str | None = None
    #: True when the data was read from this machine (not from the Hub): the body says so, and without a Hub id
    #: (a recipe's) the metadata has no model-index results.
    dataset_local: bool = False
    #: Inputs truncated to this many tokens (``FinetuneOptions.max_length``), when known.
    max_length: int | None = None
    #: {"train": n, "validation": n, "test": n}: the splits that are seeded, stratified subsets of this size.
    subsets: dict[str, int] = field(default_factory=dict)
    #: Seed of the subsets (and of a carved validation split).
    data_seed: int | None = None
    #: The source's text column(s); two: each example's texts were tokenized as a pair.
    text_columns: list[str] = field(default_factory=list)
    label_column: str | None = None
    #: True: validation was carved from train; False: it is the source's own; None: not recorded by the data.
    validation_carved: bool | None = None
    #: The share of train carved out as validation when the source has none (``validation_fraction``).
    validation_fraction: float | None = None
    #: ``drop_unseen_eval_labels``: validation/test rows whose label never occurs in train were dropped.
    drop_unseen_eval_labels: bool = False
    #: {split: rows dropped because their label never occurs in train}, when the data recorded them.
    dropped_unseen: dict[str, int] = field(default_factory=dict)

    # KO
    collision: str = "none"
    #: Every KO setting (``ko_hf.settings``) and other field ``KOTrainingArguments`` adds, as the run used it.
    ko_arguments: dict[str, Any] = field(default_factory=dict)
    #: [{"name": ..., "shape": [N, D]}]
    targets: list[dict[str, Any]] = field(default_factory=list)
    #: {"class": "KOAdamW", "base_class": "torch.optim.AdamW", "hyperparameters": {...}}
    optimizer: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: str | None = None
    #: {target: {"weight_correlation": ..., "neuron_similarity": ...}}
    condensation_start: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The step ``condensation_start`` was measured at: 0, or the resume point of a run resumed from a
    #: checkpoint that did not record its start.
    condensation_start_step: int = 0
    condensation_end: dict[str, dict[str, float]] = field(default_factory=dict)
    #: log entries (``step`` plus the ``ko/`` keys) from the logging steps
    ko_history: list[dict[str, float]] = field(default_factory=list)

    # results and run
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_split: str = "validation"
    test_metrics: dict[str, float] = field(default_factory=dict)
    non_default_hyperparameters: dict[str, Any] = field(default_factory=dict)
    total_train_batch_size: int | None = None
    per_device_train_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    #: Processes that trained together (data parallel), as the running job reported it.
    world_size: int | None = None
    global_step: int | None = None
    epochs: float | None = None
    train_runtime: float | None = None
    device: str | None = None
    precision: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    reproduce_command: str | None = None
    #: The directory local paths of ``reproduce_command`` are relative to (its name, or ``~/...``).
    reproduce_directory: str | None = None
    #: Some path of the reproduce command could not be shown and is a ``path/to/<name>`` placeholder.
    reproduce_placeholders: bool = False
    #: {"checkpoint": its folder name, "step": the step it resumed at, "missing": [state files it lacked]} of a
    #: run resumed from a checkpoint; None for a run trained in one go.
    resumed: dict[str, Any] | None = None
    #: Why the run is taken as diverged (e.g. "the final training loss is nan"); empty for a healthy run.
    diverged: list[str] = field(default_factory=list)
    #: Warnings about the run gathered when the card was made (e.g. ``KOTrainer.collision_warnings``); the card
    #: adds its own findings (:meth:`card_warnings`).
    warnings: list[str] = field(default_factory=list)
    reproduce_snippet: str | None = None
    #: [(caption, relative file name)] of the pictures next to the card
    plots: list[tuple[str, str]] = field(default_factory=list)
    plots_note: str | None = None

    # ko-hf 0.1's constructor arguments for four settings; they fill ``ko_arguments`` (read them there)
    coll_coef: InitVar[float | None] = None
    distance_scale: InitVar[float | None] = None
    include_self: InitVar[bool | None] = None
    collision_seed: InitVar[int | None] = None

    def __post_init__(self, *legacy: Any) -> None:
        given = {name: value for name, value in zip(_LEGACY_ARGUMENTS.values(), legacy) if value is not None}
        self.ko_arguments = {**given, **self.ko_arguments}

    @property
    def ko_applied(self) -> bool:
        return self.collision != "none"

    def series(self, metric: str) -> list[tuple[int, float]]:
        """``(step, value)`` of the aggregate ``ko/<metric>`` (the single target's value when there is one)."""
        values = [(int(e.get("step", 0)), logged_metric(e, metric)) for e in self.ko_history]
        return [(step, value) for step, value in values if value is not None]

    def accepted_pair_fractions(self) -> list[tuple[int, float]]:
        return self.series("accepted_pair_fraction")

    def grad_change_ratios(self) -> list[tuple[int, float]]:
        return self.series("grad_change_ratio")

    def grad_cosines(self) -> list[tuple[int, float]]:
        return self.series("grad_cosine")

    def hub_repo(self) -> str | None:
        """The Hub repository the model is (to be) pushed to, when known as ``owner/name``."""
        repo = self.hub_model_id
        return repo if isinstance(repo, str) and repo.count("/") == 1 and all(repo.split("/")) else None

    def restarted_state(self) -> list[str]:
        """What restarted at the resume point because the checkpoint lacked its state file."""
        missing = (self.resumed or {}).get("missing") or []
        return [RESTARTED_STATE.get(name, f"the state kept in {name}") for name in missing]

    def card_warnings(self) -> list[str]:
        """The warnings the card shows (plain text): those gathered from the run, then the card's own findings."""
        found = list(self.warnings)
        if self.diverged:
            found.append("Training diverged (" + "; ".join(self.diverged) + "): this model is broken, and the "
                         "results below describe a broken model, so the metadata reports none.")
        restarted = self.restarted_state()
        if restarted:
            found.append(f"The run was resumed from a checkpoint that lacked {', '.join(self.resumed['missing'])}: "
                         f"{'; '.join(restarted)} restarted at the resume point, so this run differs from one "
                         "trained in one go.")
        return found

    def dataset_identity(self) -> tuple[str, str] | None:
        """(type, name) of the model-index dataset: its Hub id as type and the name it was given; None for data
        with no Hub id (local or packaged): the model-index spec asks for a Hub dataset id, so such a run has no
        model-index results (the body still gives them)."""
        if not self.datasets:
            return None
        return self.datasets[0], self.dataset_name or self.datasets[0]

    def results(self) -> list[tuple[str, str, float]]:
        """``(split, metric key, value)`` of every numeric evaluation metric, validation split first."""
        return [(split, key, value) for split, metrics in ((self.eval_split, self.eval_metrics),
                                                           ("test", self.test_metrics))
                for key, value in metrics.items() if is_number(value)]

    def metadata(self):
        """The YAML metadata as a ``huggingface_hub.ModelCardData``."""
        from huggingface_hub import EvalResult, ModelCardData

        text = lambda value: shown_text(value) if isinstance(value, str) else value  # noqa: E731
        identity = None if self.diverged else self.dataset_identity()
        eval_results = [
            EvalResult(task_type=self.pipeline_tag, task_name="Text Classification", dataset_type=identity[0],
                       dataset_name=shown_text(identity[1]), dataset_config=text(self.dataset_config),
                       dataset_split=self.result_split(split), metric_type=RESULT_METRICS[key][0],
                       metric_name=f"{RESULT_METRICS[key][1]} ({self.split_label(split)})",
                       metric_value=round(float(value), 6), metric_args=RESULT_METRICS[key][2])
            for split, key, value in (self.results() if identity else []) if key in RESULT_METRICS
        ]
        metric_ids = sorted({RESULT_METRICS[key][0] for _, key, _ in self.results() if key in RESULT_METRICS})
        return ModelCardData(
            base_model=self.base_model,
            datasets=list(self.datasets) or None,
            language=[text(x) for x in self.language] if isinstance(self.language, list) else text(self.language),
            license=text(self.license),
            license_name=text(self.license_name),
            license_link=text(self.license_link),
            library_name=self.library_name,
            pipeline_tag=self.pipeline_tag,
            tags=[text(t) for t in self.tags] or card_tags(self.collision),
            model_name=text(self.model_name or "model"),
            eval_results=eval_results or None,
            metrics=None if self.diverged else metric_ids or None,
        )

    def result_split(self, split: str) -> str | None:
        """The model-index split of a result: the data set's split, or none for a validation split carved from
        train (the data set has no such split)."""
        return None if split == "validation" and self.validation_carved else split

    def split_label(self, split: str) -> str:
        return "validation, carved from train" if split == "validation" and self.validation_carved else split

    def to_dict(self) -> dict[str, Any]:
        """The metadata block (what ``to_yaml`` writes), ``model-index`` included."""
        return self.metadata().to_dict()


for _legacy, _setting in _LEGACY_ARGUMENTS.items():  # and read back from there (not as a stale class default)
    setattr(KOModelCardData, _legacy, property(lambda self, name=_setting: self.ko_arguments.get(name)))
