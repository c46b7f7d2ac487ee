"""What a run says while it trains: the wall time of every optimizer step (:class:`StepTimerCallback`) and a few
progress lines instead of a progress bar (:class:`StepProgressCallback`)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

__all__ = ["StepProgressCallback", "StepTimerCallback"]


class StepTimerCallback(TrainerCallback, ExportableState):
    """Wall time of every optimizer step, from ``on_step_begin`` to ``on_step_end`` (seconds).

    The durations are saved with every checkpoint (``trainer_state.json``) and come back on resume, so the median
    covers the whole run, also when the resumed part has no step left to time.
    """

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start: float | None = None

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"durations": [round(d, 6) for d in self.durations]}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        durations = ((saved or {}).get("attributes") or {}).get("durations")
        if durations and not self.durations:  # resumed: the steps timed before the checkpoint
            self.durations = [float(d) for d in durations]

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.durations.append(time.perf_counter() - self._start)
            self._start = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StepProgressCallback(TrainerCallback):
    """A few progress lines per run instead of a progress bar: ``label: step 40/132 (30%), 0.8 s/step, ETA 1 min
    14 s`` at every ``every`` share of the steps (and at least once a ``max_quiet`` seconds), then one line at the
    end. Lines go to ``say`` (the CLI prints them); main process only."""

    def __init__(self, say: Callable[[str], None], label: str, every: float = 0.1, max_quiet: float = 60.0) -> None:
        self.say, self.label, self.every, self.max_quiet = say, label, every, max_quiet
        self._start = self._last_said = 0.0
        self._first_step = self._next_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_said = time.perf_counter()
        self._first_step = state.global_step
        self._next_step = state.global_step + max(1, math.ceil(self.every * state.max_steps))
        if state.is_world_process_zero:
            resumed = f", resuming at step {state.global_step}" if state.global_step else ""
            self.say(f"{self.label}: training, {state.max_steps} steps{resumed}")

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step < self._next_step and now - self._last_said < self.max_quiet:
            return
        self._next_step = state.global_step + max(1, math.ceil(self.every * state.max_steps))
        self._last_said = now
        done = state.global_step - self._first_step
        per_step = (now - self._start) / max(done, 1)
        if state.is_world_process_zero and state.global_step < state.max_steps:
            self.say(f"{self.label}: step {state.global_step}/{state.max_steps} "
                     f"({100 * state.global_step / max(state.max_steps, 1):.0f}%), {per_step:.2f} s/step, "
                     f"ETA {_duration(per_step * (state.max_steps - state.global_step))}")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.say(f"{self.label}: trained {state.global_step - self._first_step} steps in "
                     f"{_duration(time.perf_counter() - self._start)}")
