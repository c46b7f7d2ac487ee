"""The memory a sequence of tensor ops allocates, traced op by op on any device (the meta device included)."""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakLiveBytes(TorchDispatchMode):
    """The largest number of bytes that the tensors allocated inside the mode hold at once: what
    ``torch.cuda.max_memory_allocated()`` measures, without the caching allocator's rounding and without kernels'
    internal workspaces. Views and in-place results share their storage's bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.references: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.references[key] -= 1
        if not self.references[key]:
            del self.references[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage()._cdata for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            key = tensor.untyped_storage()._cdata
            if key not in self.references:
                if key in inputs:  # a view of (or in place on) a tensor made outside the mode: no new memory
                    continue
                self.references[key], self.sizes[key] = 0, tensor.untyped_storage().nbytes()
                self.live += self.sizes[key]
                self.peak = max(self.peak, self.live)
            self.references[key] += 1
            weakref.finalize(tensor, self._release, key)
        return out


def traced_peak(fn: Callable[[torch.Tensor, torch.Tensor], Any], n: int, d: int) -> int:
    """Peak bytes ``fn(weight, grad)`` allocates for float32 ``[n, d]`` inputs, traced on the meta device (no memory
    used, no time spent computing), the result included."""
    weight, grad = torch.empty(n, d, device="meta"), torch.empty(n, d, device="meta")
    with PeakLiveBytes() as tracker:
        result = fn(weight, grad)
    del result
    return tracker.peak


def allocated_peak(fn: Callable[[torch.Tensor, torch.Tensor], Any], weight: torch.Tensor, grad: torch.Tensor) -> int:
    """Extra peak bytes of ``fn(weight, grad)`` on a CUDA device (``torch.cuda.max_memory_allocated()`` above what
    was allocated before the call), after a call on 8 rows has loaded the kernels and cuBLAS' workspace."""
    fn(weight[:8], grad[:8])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn(weight, grad)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return peak


def _default_generator(like: torch.Tensor) -> torch.Generator | None:
    return None if like.is_meta else torch.Generator(device=like.device).manual_seed(0)


def collision_ops() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Soft and hard (DSMC) collision at the library's defaults, as ``fn(weight, grad)``."""
    from ko_hf.collision import hard_collision, soft_collision
    from ko_hf.settings import DEFAULT_COLL_COEF, ko_setting

    distance_scale = ko_setting("collision_distance_scale").default
    return {
        "soft": lambda w, g: soft_collision(w, g, DEFAULT_COLL_COEF["soft"]),
        "dsmc": lambda w, g: hard_collision(w, g, DEFAULT_COLL_COEF["hard"], pairing="dsmc",
                                            distance_scale=distance_scale, generator=_default_generator(g)),
    }
