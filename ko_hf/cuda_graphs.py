"""Capture a whole KO optimizer step (collisions, then the base optimizer) in a CUDA graph and replay it.

A CUDA graph records the kernels of one call and replays them without running Python again, so every value that
Python computes during the capture is frozen into the graph. Three things in a KO step are host-side state that
changes from step to step; :class:`CapturedStep` carries each of them across replays:

- **Hard collision's random draws.** The eager step draws from a fresh ``torch.Generator`` seeded with
  ``collision_generator_seed(seed, step, group)`` (:meth:`~ko_hf.optim.CollisionMixin.collision_generator`); a
  generator cannot be created or reseeded during a capture. Here each flagged group gets one persistent generator,
  registered with the graph, and reseeded on the host with that same seed before every replay. PyTorch's graph-safe
  RNG reads a registered generator's current seed and offset at each replay (reseeding sets the offset to 0, as a
  fresh generator has), so a replay draws exactly what the eager step draws: the same numbers on every data-parallel
  rank, and a resumed run draws what the uninterrupted run would.
- **The Python counters of the param groups** (``collision_step``): put back after the capture (which ran no kernel,
  so no step happened), then advanced after each replay by what one step adds.
- **The collision statistics:** the tensors the optimizer's ``_record_stats`` receives are copied inside the graph
  (each replay refreshes the copies) and handed to it after each replay, so ``pop_collision_stats()`` counts
  captured steps as it counts eager ones (``statistics=False`` leaves captured steps out and keeps their kernels
  out of the graph).

Everything else a step reads must stay in place: gradients in the same tensors (``zero_grad(set_to_none=False)``),
the same settings (a float ``lr`` changed by a scheduler is refused at the next replay: give AdamW a tensor ``lr``
with ``capturable=True`` instead), and ``collision_pairing="dsmc"`` for hard collision (``"all"`` lists its pairs
on the host). :class:`RehearsalBackend` runs the same bookkeeping on any device without a graph, for tests and CPU
rehearsals.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from transformers.utils import logging

from .optim import CollisionMixin, collision_generator_seed

logger = logging.get_logger(__name__)

__all__ = ["CapturedStep", "CudaGraphBackend", "RehearsalBackend", "check_capturable_base", "check_capturable_groups"]

GroupKey = tuple[int, str]


def _int_values(optimizer: torch.optim.Optimizer) -> dict[GroupKey, int]:
    """Every integer (not bool) value of every param group, by (group index, key): the step counters."""
    return {(index, key): value for index, group in enumerate(optimizer.param_groups)
            for key, value in group.items() if type(value) is int}


def _set_values(optimizer: torch.optim.Optimizer, values: dict[GroupKey, Any]) -> None:
    for (index, key), value in values.items():
        optimizer.param_groups[index][key] = value


def _counter_steps(before: dict[GroupKey, int], after: dict[GroupKey, int]) -> dict[GroupKey, int]:
    """What one step added to each counter that it changed."""
    return {key: after[key] - before[key] for key in before.keys() & after.keys() if after[key] != before[key]}


def _settings(optimizer: torch.optim.Optimizer) -> dict[GroupKey, Any]:
    """The values a replay has frozen: everything in the param groups but the parameters and the counters."""
    return {(index, key): value for index, group in enumerate(optimizer.param_groups)
            for key, value in group.items() if key != "params" and type(value) is not int}


def _changed_settings(frozen: dict[GroupKey, Any], now: dict[GroupKey, Any]) -> list[str]:
    def same(a: Any, b: Any) -> bool:
        if a is b:
            return True
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return False  # a tensor setting (a capturable lr) is read in place: only replacing it matters
        try:
            return type(a) is type(b) and bool(a == b)
        except RuntimeError:  # e.g. tuples of tensors (betas): compared by identity above
            return False

    return [f"param group {index}'s {key!r} ({frozen.get((index, key), '<absent>')!r} -> "
            f"{now.get((index, key), '<absent>')!r})"
            for index, key in sorted(frozen.keys() | now.keys())
            if not same(frozen.get((index, key)), now.get((index, key)))]


def check_capturable_groups(optimizer: torch.optim.Optimizer) -> None:
    """``ValueError`` for a flagged group whose step cannot be captured: hard collision with ``pairing="all"``."""
    for index, group in enumerate(optimizer.param_groups):
        # every flagged group carries its pairing (filled when built, or when loaded from an older checkpoint)
        if group.get("collision", "none") == "hard" and group["collision_pairing"] != "dsmc":
            raise ValueError(
                f"param group {index} ({', '.join(group.get('collision_names') or [])}) has hard collision with "
                f"collision_pairing={group['collision_pairing']!r}, which lists its accepted pairs on the host (nonzero) "
                "and cannot be captured in a CUDA graph; use collision_pairing='dsmc' (the default)"
            )


def check_capturable_base(optimizer: torch.optim.Optimizer) -> None:
    """``ValueError`` when the base optimizer was built with ``capturable=False`` (AdamW then reads its step count on
    the host, which a CUDA graph cannot replay)."""
    uncapturable = [index for index, group in enumerate(optimizer.param_groups) if group.get("capturable") is False]
    if uncapturable:
        raise ValueError(
            f"param groups {uncapturable} have capturable=False, which reads the step count on the host; build the "
            "optimizer with capturable=True (e.g. KOAdamW(groups, lr=torch.tensor(1e-3, device='cuda'), "
            "capturable=True, fused=True)) to capture its step"
        )


class _PersistentGenerators:
    """Stands in for the optimizer's ``collision_generator``: one generator per param group, kept across steps.
    Outside a capture it is reseeded each time it is handed out, so an eager step draws what a fresh generator
    would; during a capture it is handed out as it is (a generator cannot be seeded then), and
    :meth:`reseed` sets the seed of the next replay."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.generators: dict[int, torch.Generator] = {}
        self.capturing = False

    def __call__(self, group: dict[str, Any], index: int, device: torch.device) -> torch.Generator:
        generator = self.generators.get(index)
        if generator is None:
            if self.capturing:
                raise RuntimeError(
                    f"param group {index} first drew random numbers during the capture (it had no gradient in the "
                    "eager warm-up steps); a generator cannot be created while a CUDA graph is captured"
                )
            generator = self.generators[index] = torch.Generator(device=device)
        if not self.capturing:
            self.reseed(index)
        return generator

    def reseed(self, index: int | None = None) -> None:
        """Seeds the generator of group ``index`` (default: every one) for the group's current step."""
        for number in self.generators if index is None else [index]:
            group = self.optimizer.param_groups[number]
            self.generators[number].manual_seed(
                collision_generator_seed(group["collision_seed"], group["collision_step"], number))


class _StatisticsRecorder:
    """Stands in for the optimizer's ``_record_stats`` during a capture: copies its tensor arguments (the copies
    are kernels of the graph, so every replay refreshes them) and, after a replay, hands the copies to the real
    method."""

    def __init__(self, optimizer: torch.optim.Optimizer, keep: bool) -> None:
        self.record = getattr(optimizer, "_record_stats", None)
        self.keep = keep and self.record is not None
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if not self.keep:
            return
        copies: dict[int, torch.Tensor] = {}

        def copy(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            if id(value) not in copies:  # one copy per tensor: `new_grad is grad` stays true when it was
                copies[id(value)] = value.detach().clone()
            return copies[id(value)]

        self.calls.append((tuple(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()}))

    def replay(self) -> None:
        for args, kwargs in self.calls:
            self.record(*args, **kwargs)


def _register(graph: torch.cuda.CUDAGraph, generator: torch.Generator) -> None:
    with warnings.catch_warnings():  # torch >= 2.14 registers generators by itself and deprecates this
        warnings.simplefilter("ignore", category=(DeprecationWarning, FutureWarning))
        graph.register_generator_state(generator)


def replays_follow_reseeding(device: torch.device) -> bool:
    """Whether a captured draw from a registered generator, replayed after ``manual_seed(s)``, equals an eager draw
    from a fresh generator seeded with ``s`` (what :class:`CapturedStep` relies on); checked once per capture."""
    generator = torch.Generator(device=device).manual_seed(1)
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream(device=device)
    _register(graph, generator)
    torch.cuda.synchronize(device)
    with torch.cuda.graph(graph, stream=stream):
        drawn = torch.randn(64, generator=generator, device=device)
    replayed = []
    for seed in (2, 3):
        generator.manual_seed(seed)
        graph.replay()
        replayed.append(drawn.clone())
    expected = [torch.randn(64, generator=torch.Generator(device=device).manual_seed(seed), device=device)
                for seed in (2, 3)]
    return all(torch.equal(a, b) for a, b in zip(replayed, expected))


class CudaGraphBackend:
    """Captures into a ``torch.cuda.CUDAGraph`` on a side stream (where the warm-up steps run too, as PyTorch's
    CUDA graph notes ask) and replays it on the current stream."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()
        self.stream = torch.cuda.Stream()
        self.output: Any = None

    def prepare(self, optimizer: torch.optim.Optimizer, generators: list[torch.Generator]) -> None:
        check_capturable_base(optimizer)
        for generator in generators:
            if generator.device.type != "cuda":
                raise ValueError(f"hard collision draws from a generator on {generator.device}: the collision "
                                 "targets must be on the GPU for a CUDA graph")
            _register(self.graph, generator)
        if generators and not replays_follow_reseeding(generators[0].device):
            raise RuntimeError(
                f"torch {torch.__version__} replays a registered generator with the seed it had at the capture, not "
                "the one set before the replay, so captured hard collisions would repeat their draws; capture soft "
                "collision only, or run hard collision eagerly"
            )

    def warm(self, fn: Callable[[], Any]) -> Any:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            output = fn()
        torch.cuda.current_stream().wait_stream(self.stream)
        return output

    def capture(self, fn: Callable[[], Any]) -> None:
        torch.cuda.synchronize()
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.output = fn()

    def replay(self) -> Any:
        self.graph.replay()
        return self.output


class RehearsalBackend:
    """Runs :class:`CapturedStep`'s bookkeeping without a graph, on any device: the capture only keeps the step,
    and each replay runs it with the host state frozen as the capture saw it (the counters as captured, no reseeding
    inside the step, the statistics' arguments copied). So it computes what the CUDA graph computes, without the
    speed-up; under ``FakeTensorMode`` it also shows that the captured step reads no tensor value on the host."""

    def __init__(self) -> None:
        self.fn: Callable[[], Any] | None = None

    def prepare(self, optimizer: torch.optim.Optimizer, generators: list[torch.Generator]) -> None:
        pass

    def warm(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def capture(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def replay(self) -> Any:
        return self.fn()


def _default_backend(optimizer: torch.optim.Optimizer) -> CudaGraphBackend | RehearsalBackend:
    devices = {param.device.type for group in optimizer.param_groups for param in group["params"]}
    return CudaGraphBackend() if devices == {"cuda"} else RehearsalBackend()


class CapturedStep:
    """A KO optimizer's step (or a training step ending with it) captured once in a CUDA graph, then replayed.

    The first ``warmup`` calls run ``fn`` (default: ``optimizer.step``) eagerly, on the side stream the capture
    uses; the next call captures it and replays it, and every later call replays it. Each call is one real step
    and returns what ``fn`` returned at the capture (a graph refreshes its output tensors in place). Replays compute
    what eager steps compute: the same random draws (see the module's docstring), counters and statistics::

        opt = KOAdamW(groups, lr=torch.tensor(2e-5, device="cuda"), capturable=True, fused=True)
        step = CapturedStep(opt)
        for batch in batches:
            loss = model(**batch).loss          # gradients accumulate into the same .grad tensors
            loss.backward()
            step()
            opt.zero_grad(set_to_none=False)

    ``fn`` may also hold the forward and backward on static input tensors (the whole training step, as in PyTorch's
    CUDA graph notes). Raises ``ValueError`` for a step that cannot be captured (``pairing="all"``, a base optimizer
    built with ``capturable=False``) and ``RuntimeError`` when a replay would silently compute something else than
    the eager step (a gradient tensor replaced, a setting changed since the capture). On a CPU (or with
    ``backend=RehearsalBackend()``) it rehearses the same bookkeeping without a graph.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, fn: Callable[[], Any] | None = None, *, warmup: int = 3,
                 statistics: bool = True, backend: CudaGraphBackend | RehearsalBackend | None = None) -> None:
        if not isinstance(optimizer, CollisionMixin):
            raise ValueError(f"CapturedStep needs a KO optimizer (ko_optimizer_class(...)), got "
                             f"{type(optimizer).__name__}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an integer >= 1 (eager steps that create the optimizer state before "
                             f"the capture), got {warmup!r}")
        check_capturable_groups(optimizer)
        self.optimizer = optimizer
        self.fn = optimizer.step if fn is None else fn
        self.warmup = warmup
        self.statistics = statistics
        self.backend = _default_backend(optimizer) if backend is None else backend
        self.generators = _PersistentGenerators(optimizer)
        optimizer.collision_generator = self.generators  # type: ignore[method-assign]
        self.calls = 0
        self.captured = False
        self._captured_counters: dict[GroupKey, int] | None = None
        self._counter_steps: dict[GroupKey, int] = {}
        self._frozen: dict[GroupKey, Any] = {}
        self._grads: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._recorder: _StatisticsRecorder | None = None
        self._warned_stray = False

    def __call__(self) -> Any:
        if self.calls < self.warmup:
            self.calls += 1
            return self.backend.warm(self.fn)
        if not self.captured:
            self._capture()
        output = self._replay()
        self.calls += 1
        return output

    def close(self) -> None:
        """Gives the optimizer back its own ``collision_generator`` (fresh generators, the same draws)."""
        self.optimizer.__dict__.pop("collision_generator", None)

    # ------------------------------------------------------------------ capture

    def _capture(self) -> None:
        check_capturable_groups(self.optimizer)
        self.backend.prepare(self.optimizer, list(self.generators.generators.values()))
        self._frozen = _settings(self.optimizer)
        self.backend.capture(self._run_as_captured)
        self._grads = [(param, param.grad) for group in self.optimizer.param_groups for param in group["params"]]
        self.captured = True

    def _run_as_captured(self) -> Any:
        """``fn`` as the graph sees it: the counters as they were at the capture, no reseeding, the statistics'
        arguments copied; then the host state put back as it was before (a capture runs no kernel)."""
        optimizer = self.optimizer
        live = _int_values(optimizer)
        if self._captured_counters is None:
            self._captured_counters = live
        _set_values(optimizer, self._captured_counters)
        recorder = _StatisticsRecorder(optimizer, self.statistics)
        statistics = optimizer.collision_stats
        optimizer.collision_stats = {}
        optimizer._record_stats = recorder  # type: ignore[method-assign]
        self.generators.capturing = True
        optimizer._step_in_capture = True  # the guard rail's bookkeeping is the replay's (after_step), not the graph's
        try:
            output = self.fn()
            after = _int_values(optimizer)
        finally:
            optimizer._step_in_capture = False
            self.generators.capturing = False
            optimizer.__dict__.pop("_record_stats", None)
            stray, optimizer.collision_stats = optimizer.collision_stats, statistics
            _set_values(optimizer, live)
        self._counter_steps = _counter_steps(self._captured_counters, after)
        self._recorder = recorder
        if stray and not self._warned_stray:
            self._warned_stray = True
            logger.warning("the captured step recorded statistics outside _record_stats (%s): captured steps are "
                           "left out of pop_collision_stats()", ", ".join(stray))
        return output

    # ------------------------------------------------------------------ replay

    def _replay(self) -> Any:
        self._check_unchanged()
        self.generators.reseed()
        output = self.backend.replay()
        optimizer = self.optimizer
        _set_values(optimizer, {key: optimizer.param_groups[key[0]][key[1]] + step
                                for key, step in self._counter_steps.items()})
        if self._recorder is not None:
            self._recorder.replay()
        optimizer.after_step()
        return output

    def _check_unchanged(self) -> None:
        replaced = [index for index, (param, grad) in enumerate(self._grads) if param.grad is not grad]
        if replaced:
            raise RuntimeError(
                f"the gradients of {len(replaced)} parameter(s) are not the tensors the step was captured with (set "
                "to None or replaced since): a replay would read the old ones. Zero them with "
                "zero_grad(set_to_none=False) so that backward accumulates into the same tensors"
            )
        changed = _changed_settings(self._frozen, _settings(self.optimizer))
        if changed:
            raise RuntimeError(
                f"{'; '.join(changed)} changed since the step was captured, and a replay runs with the captured "
                "values; capture a new CapturedStep, or give the optimizer a tensor lr (capturable=True) for a "
                "schedule to update in place"
            )
