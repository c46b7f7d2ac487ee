"""The optimizer side of KO: any ``torch.optim`` optimizer, plus collisions on flagged parameter groups.

``ko_optimizer_class(torch.optim.AdamW)`` (exported as ``KOAdamW``) is a real subclass of the base optimizer:
``state_dict``, ``param_groups``, LR schedulers, ``GradScaler`` and accelerate treat it exactly as the base
optimizer. A parameter group takes part in collisions when it carries ``collision="soft"`` or ``"hard"``; every
other group is stepped by the base optimizer alone. A flagged group means what ``KOTrainingArguments`` means: each
setting it leaves out gets the declared default (:func:`ko_hf.settings.group_settings`). All KO settings, and the
step counter that seeds hard collision, live in the parameter groups as primitives, so they round-trip through
``state_dict()`` (and ``torch.load(weights_only=True)``) and survive parameter swaps by FSDP-style wrappers; a
state dict saved by an earlier release resumes with the settings it ran with (:meth:`CollisionMixin.load_state_dict`).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Iterable

import torch
from transformers.utils import logging

from .collision import candidate_pairs, hard_collision_with_count, row_cosines, soft_collision
from .guards import CollisionWarning, inert_target_warning, reversed_gradient_warning
from .settings import COLLISION_TYPES, PAIRINGS, ko_setting, ko_settings  # noqa: F401 - importable from here too
from .settings import DEFAULTS_VERSION, group_setting_names, group_settings, legacy_values

logger = logging.get_logger(__name__)

#: Param-group keys that are state, not settings: the hard-collision step counter (it continues across a resume)
#: and the targets' names (for logging).
GROUP_STATE_DEFAULTS: dict[str, Any] = {"collision_step": 0, "collision_names": None}
#: The param-group key that records which release's defaults filled the group (``"0.3"``); groups saved before it
#: existed are recognised by the keys they have (:func:`saved_defaults_version`).
DEFAULTS_KEY = "ko_hf_defaults"


def group_defaults() -> dict[str, Any]:
    """ko-hf 0.2's name, deprecated: every key a flagged group carries, with what a group that leaves it out and
    names no collision type means (:func:`ko_hf.settings.group_settings`), then the state keys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from .settings import group_defaults as setting_group_defaults

        settings = setting_group_defaults()
    warnings.warn("ko_hf.optim.group_defaults() is deprecated since ko-hf 0.3: use ko_hf.settings.group_settings(group)",
                  FutureWarning, stacklevel=2)
    return {**settings, **GROUP_STATE_DEFAULTS}


def __getattr__(name: str) -> Any:
    if name == "GROUP_DEFAULTS":  # ko-hf 0.2's constant, read at access time
        return group_defaults()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def saved_defaults_version(group: dict[str, Any]) -> str:
    """Which release's defaults a saved flagged group was written with: its ``ko_hf_defaults``, else ``"0.2"``
    (it has ``collision_pairing``) or ``"0.1"``."""
    if DEFAULTS_KEY in group:
        return str(group[DEFAULTS_KEY])
    return "0.2" if "collision_pairing" in group else "0.1"


def fill_saved_group(group: dict[str, Any]) -> dict[str, Any]:
    """A flagged group as saved by any release, completed in place: each setting it lacks gets what the release
    that wrote it ran with (the setting's ``legacy``: 0.1 had no pairing and paired as ``"all"``; 0.1 and 0.2 had
    the paper's soft form), and the group records that release's defaults."""
    group.setdefault(DEFAULTS_KEY, saved_defaults_version(group))
    for name, value in legacy_values().items():
        group.setdefault(name, value)
    for name, value in group_settings(group).items():  # a key with no legacy: the group's own default
        group.setdefault(name, value)
    for key, value in GROUP_STATE_DEFAULTS.items():
        group.setdefault(key, value)
    return group

#: How often (in optimizer steps) the optimizer reads its collision statistics to check the guard rails: after
#: the first step, then once per window. Each check reads a few numbers from the device.
GUARD_WINDOW = 100


_MASK64 = (1 << 64) - 1


def collision_generator_seed(seed: int, step: int, group_index: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, optimizer step, group): SplitMix64 over the three numbers.

    Every data-parallel rank computes the same value, and a resumed run computes what the uninterrupted run
    did, so hard collision draws identical vectors everywhere.
    """
    state = 0
    for value in (seed, step, group_index):
        state = (state + (int(value) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        mixed = state
        mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = mixed ^ (mixed >> 31)
    return state >> 1


def check_group_settings(group: dict[str, Any]) -> None:
    """Each setting that ``group`` carries, checked by its declaration (a complete group holds the values
    themselves, so ``None`` is refused too)."""
    for setting in ko_settings():
        if setting.in_group and setting.name in group:
            value = group[setting.name]
            if value is None:
                raise setting.error(value)
            setting.validate(value)


def _as_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Neurons as rows: a linear weight as is, a convolution kernel flattened to [out_channels, -1] (a copy when
    its memory layout, e.g. channels_last, does not allow a view: write results back into the original)."""
    return tensor if tensor.dim() == 2 else tensor.reshape(tensor.shape[0], -1)


def _is_dtensor(tensor: Any) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(tensor, DTensor)


def _whole_rows(param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's whole weight and gradient as ``[N, D]`` rows. Under FSDP2 (``DTensor`` parameters) both are
    all-gathered, so every rank holds the same whole tensors (a collective: every rank calls it, in group order)."""
    weight, grad = param.detach(), param.grad
    if _is_dtensor(weight):
        weight = weight.full_tensor()
    if _is_dtensor(grad):
        grad = grad.full_tensor()
    return _as_rows(weight), _as_rows(grad)


def _write_back(param: torch.Tensor, grad: torch.Tensor, new_grad: torch.Tensor) -> None:
    """Store the collided ``[N, D]`` gradient in ``param.grad``, or, for a ``DTensor`` gradient, in this rank's
    own shard of it (every rank computed the same whole tensor, so no communication is needed)."""
    if not _is_dtensor(param.grad):
        # Into param.grad itself: the rows ``grad`` are a copy when the kernel's layout (channels_last) allows no
        # flattened view.
        param.grad.copy_(new_grad.reshape(param.grad.shape))
        return
    from torch.distributed.tensor import distribute_tensor

    sharded = param.grad
    local = distribute_tensor(new_grad.reshape(sharded.shape), sharded.device_mesh, sharded.placements,
                              src_data_rank=None).to_local()
    sharded.to_local().copy_(local)


class CollisionMixin:
    """Adds KO collisions to a ``torch.optim.Optimizer``; see :func:`ko_optimizer_class`."""

    param_groups: list[dict[str, Any]]
    #: Steps between two guard-rail checks (after the first step, then every ``guard_window`` steps); ``None``:
    #: no checks (and no device reads of the optimizer's own). An attribute, so it can be set per optimizer.
    guard_window: int | None = GUARD_WINDOW

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        #: guard-rail warnings given so far (:class:`ko_hf.guards.CollisionWarning`), one per target and kind.
        self.collision_warnings: list[CollisionWarning] = []
        #: per target, since the last check: the sum of the steps' mean row cosines and the count of finite steps.
        self._guard_sums: dict[str, dict[str, Any]] = {}
        self._guard_steps = 0
        self._guard_window_start = 1
        #: True while ``CapturedStep`` captures a step: a replay runs no Python, so it calls :meth:`after_step` itself.
        self._step_in_capture = False
        super().__init__(params, *args, **kwargs)
        #: running per-target sums since the last ``pop_collision_stats()``, for logging; not part of the state.
        self.collision_stats: dict[str, dict[str, Any]] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        collision = param_group.get("collision", "none")
        if collision != "none":
            # a group that names a collision means what KOTrainingArguments means (ko_hf.settings.group_settings)
            param_group.update(group_settings(param_group))
            param_group.setdefault(DEFAULTS_KEY, DEFAULTS_VERSION)
            for key, default in GROUP_STATE_DEFAULTS.items():
                param_group.setdefault(key, default)
            check_group_settings(param_group)
            params = param_group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            param_group["params"] = params
            names = param_group["collision_names"]
            if names is None:
                names = [f"group{len(self.param_groups)}.param{i}" for i in range(len(params))]
            if len(names) != len(params):
                raise ValueError(
                    f"collision_names has {len(names)} names for {len(params)} parameters; give one name per parameter"
                )
            param_group["collision_names"] = list(names)
            for name, param in zip(names, params):
                if param.dim() < 2:
                    raise ValueError(
                        f"collision target {name!r} has shape {tuple(param.shape)}: collisions need a weight with "
                        "neurons as rows (2-D, or a convolution kernel)"
                    )
                self._warn(name, "inert", 0, inert_target_warning(name, tuple(param.shape), collision,
                                                                    param_group["collision_form"]))
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``Optimizer.load_state_dict``; each flagged group of the saved state keeps the settings it was saved with,
        and a group saved by an earlier release gets, for each setting that release did not have, what it ran with
        (:func:`fill_saved_group`): a checkpoint resumes exactly as it ran, whatever the current defaults."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            if group.get("collision", "none") != "none":
                fill_saved_group(group)
                check_group_settings(group)

    def _warn(self, target: str, kind: str, step: int, message: str | None) -> None:
        if message is None or any(w.target == target and w.kind == kind for w in self.collision_warnings):
            return
        self.collision_warnings.append(CollisionWarning(target, kind, step, message))
        logger.warning(message)

    @torch.no_grad()
    def apply_collisions(self) -> None:
        """Rewrites the gradients of flagged groups in place: soft or hard collision of each target.

        Adds no host synchronisation to the step (``"all"`` pairing aside, which lists its accepted pairs on the
        host): the ops are sync-free and the statistics stay device tensors until :meth:`pop_collision_stats` or a
        guard-rail check reads them.
        """
        for index, group in enumerate(self.param_groups):
            collision = group.get("collision", "none")
            if collision == "none":
                continue
            generator = None
            pairing = group["collision_pairing"]
            for name, param in zip(group["collision_names"], group["params"]):
                if param.grad is None:
                    continue
                weight, grad = _whole_rows(param)
                accepted = None
                if collision == "soft":
                    new_grad = soft_collision(
                        weight, grad, group["coll_coef"], include_self=group["collision_include_self"],
                        bounded=group["collision_form"] == "bounded",
                    )
                else:
                    if generator is None:
                        generator = self.collision_generator(group, index, param.device)
                    new_grad, accepted = hard_collision_with_count(
                        weight,
                        grad,
                        group["coll_coef"],
                        generator=generator,
                        distance_scale=group["collision_distance_scale"],
                        pairing=pairing,
                        bounded=group["collision_form"] == "bounded",
                    )
                self._record_stats(name, grad, new_grad, accepted, pairing)
                if new_grad is not grad:
                    _write_back(param, grad, new_grad)
            group["collision_step"] += 1

    def collision_generator(self, group: dict[str, Any], index: int, device: torch.device) -> torch.Generator | None:
        """The generator hard collision draws from for ``group`` (the ``index``-th param group) at this step: a fresh
        one on ``device``, seeded by :func:`collision_generator_seed` from the group's seed and step counter. The
        meta device has no generator and draws nothing (shapes only): ``None``.

        :class:`ko_hf.cuda_graphs.CapturedStep` replaces it, on the optimizer whose step it captures, by one
        persistent generator per group that it reseeds with the same seed before every replay (README "On a GPU").
        """
        if device.type == "meta":
            return None
        seed = collision_generator_seed(group["collision_seed"], group["collision_step"], index)
        return torch.Generator(device=device).manual_seed(seed)

    def _record_stats(
        self, name: str, grad: torch.Tensor, new_grad: torch.Tensor, accepted: torch.Tensor | None, pairing: str
    ) -> None:
        """Cheap running sums kept as device tensors (no host synchronisation) until a logging step reads them."""
        stats = self.collision_stats.setdefault(name, {"grad_change_ratio": 0.0, "steps": 0})
        stats["steps"] += 1
        if new_grad is grad:  # coef 0 or a single row: nothing changed
            cosines = None
        else:
            norm = torch.linalg.vector_norm(grad.float())
            change = torch.linalg.vector_norm(new_grad.float() - grad.float())
            stats["grad_change_ratio"] = stats["grad_change_ratio"] + torch.where(norm > 0, change / norm, 0.0)
            cosines = row_cosines(new_grad, grad)
        mean = cosines.mean() if cosines is not None else 1.0
        low = cosines.min() if cosines is not None else torch.ones((), device=grad.device)
        stats["grad_cosine"] = stats.get("grad_cosine", 0.0) + mean
        stats["grad_cosine_min"] = torch.minimum(stats["grad_cosine_min"], low) if "grad_cosine_min" in stats else low
        if accepted is not None:
            stats["accepted_pairs"] = stats.get("accepted_pairs", 0) + accepted
            stats["pairs"] = stats.get("pairs", 0) + candidate_pairs(grad.shape[0], pairing)
        if cosines is not None and self.guard_window is not None and not grad.is_meta:  # meta: no values to read
            guard = self._guard_sums.setdefault(name, {"cosine": 0.0, "finite": 0})
            finite = torch.isfinite(mean)  # a non-finite gradient was left unchanged: not a turned-around one
            guard["cosine"] = guard["cosine"] + torch.where(finite, mean, 0.0)
            guard["finite"] = guard["finite"] + finite.to(torch.int64)

    def check_collisions(self) -> list[CollisionWarning]:
        """The guard rail over the steps since the last check: warns (once per target) where the mean over those
        steps of the mean per-row ``cos(g*_i, g_i)`` is below 0, and starts a new window. Reads the device; called
        by :meth:`step` after the first step and every ``guard_window`` steps. Returns the new warnings."""
        before = len(self.collision_warnings)
        sums, self._guard_sums = self._guard_sums, {}
        last = self._guard_steps
        first = self._guard_window_start
        self._guard_window_start = last + 1
        targets = {name: (group, param) for group in self.param_groups if group.get("collision", "none") != "none"
                   for name, param in zip(group["collision_names"], group["params"])}
        for name, guard in sums.items():
            finite = int(guard["finite"])
            if finite == 0 or name not in targets:
                continue
            cosine = float(guard["cosine"]) / finite
            if cosine < 0:
                group, param = targets[name]
                settings = {key: group[key] for key in group_setting_names()}
                self._warn(name, "reversed", last,
                           reversed_gradient_warning(name, tuple(param.shape), settings, cosine, first, last))
        return self.collision_warnings[before:]

    def pop_collision_stats(self) -> dict[str, dict[str, float]]:
        """Per target, over the steps since the last call: the mean gradient change ratio ``‖g* - g‖ / ‖g‖``,
        the mean over steps of the mean per-row ``cos(g*_i, g_i)`` (``grad_cosine``) and its smallest row
        (``grad_cosine_min``), and (hard) the accepted fraction of candidate pairs with the raw counts; then
        starts counting afresh. This is where the device is read (once per logging step)."""
        result = self.peek_collision_stats()
        self.collision_stats = {}
        return result

    def peek_collision_stats(self) -> dict[str, dict[str, float]]:
        """What :meth:`pop_collision_stats` would return, without starting afresh (reads the device)."""
        result = {}
        for name, stats in self.collision_stats.items():
            steps = max(stats["steps"], 1)
            values = {
                "grad_change_ratio": float(stats["grad_change_ratio"]) / steps,
                "grad_cosine": float(stats["grad_cosine"]) / steps,
                "grad_cosine_min": float(stats["grad_cosine_min"]),
            }
            if "pairs" in stats:
                values["accepted_pairs"] = int(stats["accepted_pairs"])
                values["pairs"] = stats["pairs"]
                values["accepted_pair_fraction"] = values["accepted_pairs"] / max(stats["pairs"], 1)
            result[name] = values
        return result

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            # The closure's backward must run before the collision rewrites its gradients.
            with torch.enable_grad():
                loss = closure()
        self.apply_collisions()
        super().step()
        if not self._step_in_capture:
            self.after_step()
        return loss

    def after_step(self) -> None:
        """Count a finished step for the guard rail and, after the first step and every ``guard_window`` steps,
        check it (:meth:`check_collisions`, which reads the device). :meth:`step` calls it, and so does each replay
        of a step captured in a CUDA graph (:class:`ko_hf.cuda_graphs.CapturedStep`), which runs no Python."""
        self._guard_steps += 1
        window = self.guard_window
        if window is not None and self._guard_sums and (self._guard_steps == 1 or self._guard_steps % window == 0):
            if not _capturing():
                self.check_collisions()


def _capturing() -> bool:
    """Inside a CUDA graph capture, where reading the device is not allowed."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


@functools.cache
def ko_optimizer_class(base: type) -> type:
    """The KO version of a ``torch.optim.Optimizer`` class: same constructor, plus collisions on flagged groups.

    >>> KOSGD = ko_optimizer_class(torch.optim.SGD)
    >>> opt = KOSGD([{"params": body}, {"params": [head.weight], "collision": "hard"}], lr=0.1)
    """
    if isinstance(base, type) and issubclass(base, CollisionMixin):
        return base
    if not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
        raise ValueError(f"KO needs a torch.optim.Optimizer subclass as its base optimizer, got {base!r}")
    return type(
        f"KO{base.__name__}",
        (CollisionMixin, base),
        {"__module__": __name__, "__doc__": f"{base.__name__} with KO collisions on flagged parameter groups."},
    )


KOAdamW = ko_optimizer_class(torch.optim.AdamW)
KOSGD = ko_optimizer_class(torch.optim.SGD)
KOAdamW.__qualname__ = "KOAdamW"
KOSGD.__qualname__ = "KOSGD"
