"""The trainer callback of the model card: :class:`KOModelCardCallback` records what only the running trainer knows
(targets, optimizer, condensation at the start and end, ``ko/`` and evaluation metrics) and keeps the start of
training in every checkpoint; :func:`hub_required` says when a push needs the Hub."""

from __future__ import annotations

import base64
import contextlib
from typing import Any, Iterator, Mapping

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

from .data import KOModelCardData
from .facts import measure_targets, record_run, split_metrics
from ..hub import hub_offline_flag
from ..logged_metrics import is_number

logger = logging.get_logger(__name__)

__all__ = ["KOModelCardCallback", "hub_required"]


@contextlib.contextmanager
def hub_required(action: str = "pushing to the Hugging Face Hub") -> Iterator[None]:
    """Turns an offline / connection failure inside the block into an error that says the Hub is needed."""
    flag = hub_offline_flag()
    if flag:
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, but {flag} is set. The model and its card (README.md) are saved "
            f"locally in output_dir; unset {flag.split('=')[0]}, log in (`hf auth login`) and push again."
        )
    try:
        yield
    except (OSError, ConnectionError) as error:  # requests/httpx connection errors derive from OSError
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, which could not be reached ({type(error).__name__}: {error}). "
            "The model and its card (README.md) are saved locally in output_dir; push again once online."
        ) from error


class KOModelCardCallback(TrainerCallback, ExportableState):
    """Collects what the model card says while the trainer runs.

    ``KOTrainer`` adds one automatically (pass your own in ``callbacks=`` to change ``plots``). With
    ``plots=True`` it keeps a CPU copy of every target's weight at the start of training, so that
    ``create_model_card`` can draw start-vs-end similarity heatmaps (when matplotlib is installed).

    What the card calls "start of training" (the targets' condensation, and their weights for the heatmaps up to
    :attr:`max_saved_elements` elements each) is saved with every checkpoint (``trainer_state.json``, as an
    ``ExportableState``), so a resumed run's card describes the real start, not the resume point. So is
    ``command``, the command line that started the run: a resumed run's card gives the command that trains it
    from scratch, not the one that resumed it.
    """

    #: targets larger than this (elements) are not copied for the heatmap
    max_plot_elements = 4 * 1024 * 1024
    #: targets up to this size (elements) keep their start weights in checkpoints (base64 float32 in JSON)
    max_saved_elements = 1 << 17

    def __init__(self, plots: bool = True, trainer: Any = None, command: str | None = None) -> None:
        self.plots = plots
        self.trainer = trainer
        #: The command line that started the run (kept from the checkpoint when the run resumes).
        self.command = command
        self.card_data = KOModelCardData()
        self.start_weights: dict[str, torch.Tensor] = {}
        #: the step each of ``start_weights`` was taken at (0, or the resume point for a target too large to save)
        self.start_weights_step: dict[str, int] = {}
        #: what a checkpoint keeps of the start: {"step", "condensation", "weights"}
        self.start_record: dict[str, Any] | None = None
        self.trained = False

    @classmethod
    def attach(cls, trainer: Any) -> "KOModelCardCallback":
        """The trainer's card callback: the one passed in ``callbacks=`` if any, else a new one, added."""
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, cls):
                callback.trainer = trainer
                return callback
        callback = cls(trainer=trainer)
        trainer.add_callback(callback)
        return callback

    def state(self) -> dict[str, Any]:
        """Saved in every checkpoint's ``trainer_state.json`` (``stateful_callbacks``)."""
        return {"args": {"plots": self.plots},
                "attributes": {"start_record": self.start_record, "command": self.command}}

    # -------------------------------------------------------------- what the trainer knows

    def _targets(self, model: Any, args: Any = None) -> list[tuple[str, torch.Tensor]]:
        if model is None:
            return []
        names = list(getattr(self.trainer, "collision_targets", None) or [])
        if not names:
            from ..targets import collision_target_names

            args = args if args is not None else getattr(self.trainer, "args", None)
            try:
                names = collision_target_names(model, getattr(args, "collision_targets", None))
            except ValueError:
                return []
        from ..targets import unwrapped_named_parameters

        params = dict(unwrapped_named_parameters(model))  # the targets' names through PEFT / compile / DDP
        return [(name, params[name]) for name in names if name in params]

    def _model(self, model: Any) -> Any:
        if self.trainer is not None and getattr(self.trainer, "model", None) is not None:
            return self.trainer.model
        return model

    def measure(self, model: Any, args: Any = None) -> dict[str, dict[str, float]]:
        return measure_targets(self._targets(self._model(model), args))

    def _saved(self, state: Any) -> dict[str, Any]:
        """The attributes a resumed run's checkpoint holds of this callback (empty for a fresh run)."""
        if not state.global_step:
            return {}
        stored = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(stored, list):
            stored = stored[0] if stored else None
        attributes = stored.get("attributes") if isinstance(stored, dict) else None
        return attributes if isinstance(attributes, dict) else {}

    def _saved_start(self, state: Any) -> dict[str, Any] | None:
        """The start record a resumed run's checkpoint holds (None for a fresh run or an older checkpoint)."""
        record = self._saved(state).get("start_record")
        return record if isinstance(record, dict) and "condensation" in record else None

    # -------------------------------------------------------------- events

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        data = self.card_data
        model = self._model(model)
        self.trained = True
        targets = self._targets(model, args)
        data.targets = [{"name": name, "shape": list(param.shape)} for name, param in targets]
        data.eval_metrics, data.test_metrics = {}, {}
        # on resume, the log history up to the checkpoint is back in ``state``: the curves and the first logged
        # collision statistics are those of the real start
        data.ko_history = []
        for entry in state.log_history if state.global_step else []:
            self.on_log(args, state, control, logs=entry, step=entry.get("step"))
        data.resumed = {"step": int(state.global_step)} if state.global_step else None
        command = self._saved(state).get("command")
        if isinstance(command, str) and command:
            self.command = command  # the run's first command: what trains it from scratch

        record = self._saved_start(state)
        if record is None:
            if state.global_step:
                logger.warning("the checkpoint does not record the start of training: the model card's start "
                               "condensation is measured at the resume point (step %d)", state.global_step)
            record = {"step": int(state.global_step), "condensation": measure_targets(targets),
                      "weights": {name: _encode_tensor(param) for name, param in targets
                                  if param.dim() >= 2 and param.numel() <= self.max_saved_elements}}
        self.start_record = record
        data.condensation_start = {name: dict(values) for name, values in record["condensation"].items()}
        data.condensation_start_step = int(record.get("step", 0))
        # heatmap "start" weights: the recorded ones, else (a target too large to record) the weights now
        self.start_weights, self.start_weights_step = {}, {}
        for name, param in targets if self.plots else []:
            saved = (record.get("weights") or {}).get(name)
            if saved is not None:
                self.start_weights[name] = _decode_tensor(saved)
                self.start_weights_step[name] = data.condensation_start_step
            elif param.dim() >= 2 and param.numel() <= self.max_plot_elements:
                self.start_weights[name] = local_copy(param)
                self.start_weights_step[name] = int(state.global_step)

        data.lr_scheduler = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        # the batch the training loop really draws per process (Trainer's, which auto_find_batch_size may lower)
        per_step = int(getattr(self.trainer, "_train_batch_size", None) or args.train_batch_size)
        record_run(data, args, getattr(self.trainer, "optimizer", None) or optimizer, per_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        ko = {key: float(value) for key, value in logs.items() if key.startswith("ko/") and is_number(value)}
        if not ko:
            return
        step = kwargs.get("step")
        entry = {"step": int(step if step is not None else state.global_step), **ko}
        history = self.card_data.ko_history
        if history and history[-1]["step"] == entry["step"]:
            history[-1].update(entry)
        else:
            history.append(entry)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for prefix in ("eval_", "test_"):
            values = split_metrics(metrics or {}, prefix)
            if values:
                (self.card_data.eval_metrics if prefix == "eval_" else self.card_data.test_metrics).update(values)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        values = split_metrics(metrics or {}, "test_")
        if values:
            self.card_data.test_metrics.update(values)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.card_data.condensation_end = self.measure(model, args)
        self.card_data.global_step = int(state.global_step)
        self.card_data.epochs = float(state.epoch) if state.epoch is not None else None

    def on_push_begin(self, args, state, control, **kwargs):
        # push_to_hub goes to the network right after this event: fail early with a message that says why.
        with hub_required("push_to_hub"):
            pass


def local_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy of a weight (the whole tensor, for a sharded DTensor too)."""
    tensor = tensor.detach()
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.float().cpu().clone()


def _encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    data = local_copy(tensor).contiguous().numpy().tobytes()
    return {"shape": list(tensor.shape), "float32_base64": base64.b64encode(data).decode("ascii")}


def _decode_tensor(entry: Mapping[str, Any]) -> torch.Tensor:
    data = bytearray(base64.b64decode(entry["float32_base64"]))
    return torch.frombuffer(data, dtype=torch.float32).reshape(entry["shape"]).clone()
