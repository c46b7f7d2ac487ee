"""What the model card says, and the Hub metadata (YAML: base model, datasets, tags, ``model-index``) it implies.

:class:`KOModelCardData` is a ``huggingface_hub.CardData``: ``to_dict`` / ``to_yaml`` give the metadata block that
``ModelCard.from_template`` writes at the top of the card; its fields are what the template's body shows.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

from huggingface_hub import CardData

from .logged_metrics import is_number, logged_metric

__all__ = ["KOModelCardData", "RESULT_METRICS", "card_tags"]

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
    """Everything the card says. Filled by ``KOModelCardCallback`` and ``write_model_card`` (``ko_hf.modelcard``)."""

    model_name: str | None = None
    #: The repository this card is pushed to (``args.hub_model_id``), if set.
    hub_model_id: str | None = None
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
    #: True when the data was read from this machine (not from the Hub): the metadata names it by its folder
    #: or file name and marks it local.
    dataset_local: bool = False
    #: Inputs truncated to this many tokens (``FinetuneOptions.max_length``), when known.
    max_length: int | None = None
    #: {"train": n, "validation": n, "test": n}: the splits that are seeded, stratified subsets of this size.
    subsets: dict[str, int] = field(default_factory=dict)
    #: Seed of the subsets (and of a carved validation split).
    data_seed: int | None = None

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
    #: The directory local paths of ``reproduce_command`` are relative to (its name only).
    reproduce_directory: str | None = None
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

    def dataset_identity(self) -> tuple[str, str]:
        """(type, name) of the model-index dataset: its Hub id as type when there is one, ``local`` for data read
        from this machine, else the name it was given."""
        name = self.dataset_name or (self.datasets[0] if self.datasets else "custom")
        if self.datasets:
            return self.datasets[0], name
        return ("local" if self.dataset_local else name), name

    def results(self) -> list[tuple[str, str, float]]:
        """``(split, metric key, value)`` of every numeric evaluation metric, validation split first."""
        return [(split, key, value) for split, metrics in ((self.eval_split, self.eval_metrics),
                                                           ("test", self.test_metrics))
                for key, value in metrics.items() if is_number(value)]

    def metadata(self):
        """The YAML metadata as a ``huggingface_hub.ModelCardData``."""
        from huggingface_hub import EvalResult, ModelCardData

        dataset_type, dataset_name = self.dataset_identity()
        eval_results = [
            EvalResult(task_type=self.pipeline_tag, task_name="Text Classification", dataset_type=dataset_type,
                       dataset_name=dataset_name, dataset_config=self.dataset_config, dataset_split=split,
                       metric_type=RESULT_METRICS[key][0], metric_name=f"{RESULT_METRICS[key][1]} ({split})",
                       metric_value=round(float(value), 6), metric_args=RESULT_METRICS[key][2])
            for split, key, value in self.results() if key in RESULT_METRICS
        ]
        return ModelCardData(
            base_model=self.base_model,
            datasets=list(self.datasets) or None,
            language=self.language,
            license=self.license,
            license_name=self.license_name,
            license_link=self.license_link,
            library_name=self.library_name,
            pipeline_tag=self.pipeline_tag,
            tags=list(self.tags) or card_tags(self.collision),
            model_name=self.model_name or "model",
            eval_results=eval_results or None,
            metrics=sorted({RESULT_METRICS[k][0] for m in (self.eval_metrics, self.test_metrics) for k in m
                            if k in RESULT_METRICS}) or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The metadata block (what ``to_yaml`` writes), ``model-index`` included."""
        return self.metadata().to_dict()


for _legacy, _setting in _LEGACY_ARGUMENTS.items():  # and read back from there (not as a stale class default)
    setattr(KOModelCardData, _legacy, property(lambda self, name=_setting: self.ko_arguments.get(name)))
