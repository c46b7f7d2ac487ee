"""The optimizer side of KO: any ``torch.optim`` optimizer, plus collisions on flagged parameter groups.

``ko_optimizer_class(torch.optim.AdamW)`` (exported as ``KOAdamW``) is a real subclass of the base optimizer:
``state_dict``, ``param_groups``, LR schedulers, ``GradScaler`` and accelerate treat it exactly as the base
optimizer. A parameter group takes part in collisions when it carries ``collision="soft"`` or ``"hard"``; every
other group is stepped by the base optimizer alone. All KO settings, and the step counter that seeds hard
collision, live in the parameter groups as primitives, so they round-trip through ``state_dict()`` (and
``torch.load(weights_only=True)``) and survive parameter swaps by FSDP-style wrappers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import torch
from transformers.utils import logging

from .collision import candidate_pairs, hard_collision_with_count, row_cosines, soft_collision
from .settings import COLLISION_TYPES, PAIRINGS, ko_setting, ko_settings  # noqa: F401 - importable from here too
from .settings import group_defaults as setting_group_defaults

logger = logging.get_logger(__name__)

#: Param-group keys that are state, not settings: the hard-collision step counter (it continues across a resume)
#: and the targets' names (for logging).
GROUP_STATE_DEFAULTS: dict[str, Any] = {"collision_step": 0, "collision_names": None}


def group_defaults() -> dict[str, Any]:
    """Every key a flagged parameter group may carry, with what a group without it means: each setting's group
    default (:func:`ko_hf.settings.group_defaults`; e.g. a group without ``collision_pairing``, built by hand or
    saved by ko-hf 0.1, pairs as 0.1 did: Eq. 8's "all"), then the state keys."""
    return {**setting_group_defaults(), **GROUP_STATE_DEFAULTS}


def __getattr__(name: str) -> Any:
    if name == "GROUP_DEFAULTS":  # read at access time, so that a setting added to the table is in it
        return group_defaults()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """Each setting that ``group`` carries, checked by its declaration; a param group holds the values themselves,
    so ``None`` ("derive it") is refused too."""
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

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        #: running per-target sums since the last ``pop_collision_stats()``, for logging; not part of the state.
        self.collision_stats: dict[str, dict[str, Any]] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        collision = param_group.get("collision", "none")
        if collision != "none":
            for key, default in group_defaults().items():
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
        super().add_param_group(param_group)

    @torch.no_grad()
    def apply_collisions(self) -> None:
        """Rewrites the gradients of flagged groups in place: soft or hard collision of each target.

        Adds no host synchronisation to the step (``"all"`` pairing aside, which lists its accepted pairs on the
        host): the ops are sync-free and the statistics stay device tensors until :meth:`pop_collision_stats`.
        """
        for index, group in enumerate(self.param_groups):
            collision = group.get("collision", "none")
            if collision == "none":
                continue
            generator = None
            # a group restored from a checkpoint of ko-hf 0.1 has no pairing key: it paired as "all"
            pairing = (group["collision_pairing"] if "collision_pairing" in group
                       else ko_setting("collision_pairing").group_default)
            for name, param in zip(group["collision_names"], group["params"]):
                if param.grad is None:
                    continue
                weight, grad = _whole_rows(param)
                accepted = None
                if collision == "soft":
                    new_grad = soft_collision(
                        weight, grad, group["coll_coef"], include_self=group["collision_include_self"]
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
                    )
                self._record_stats(name, grad, new_grad, accepted, pairing)
                if new_grad is not grad:
                    _write_back(param, grad, new_grad)
            group["collision_step"] += 1

    def collision_generator(self, group: dict[str, Any], index: int, device: torch.device) -> torch.Generator:
        """The generator hard collision draws from for ``group`` (the ``index``-th param group) at this step: a fresh
        one on ``device``, seeded by :func:`collision_generator_seed` from the group's seed and step counter.

        :class:`ko_hf.cuda_graphs.CapturedStep` replaces it, on the optimizer whose step it captures, by one
        persistent generator per group that it reseeds with the same seed before every replay (README "On a GPU").
        """
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
        return loss


@functools.cache
def ko_optimizer_class(base: type) -> type:
    """The KO version of a ``torch.optim.Optimizer`` class: same constructor, plus collisions on flagged groups.

    >>> KOSGD = ko_optimizer_class(torch.optim.SGD)
    >>> opt = KOSGD([{"params": body}, {"params": [head.weight], "collision": "soft", "coll_coef": 0.1}], lr=0.1)
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
