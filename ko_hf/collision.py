"""Soft and hard collision (KO paper, Alg. 1 and 2) as pure tensor functions.

Rows of a linear layer's weight ``w`` (shape ``[N, D]``) are particles and the rows of its gradient ``g``
are their velocities. Every function here is pure: inputs are never modified in place, the result has the
gradient's dtype and device, and the arithmetic runs in float32 whatever the input precision.

Nothing here materialises an ``N x N x D`` tensor: hard collision decides acceptance with ``N x N`` matrix
algebra, then touches only the accepted pairs (deterministic and random term together, O(pairs · D)), with
the random unit vectors drawn in chunks of bounded size.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "soft_collision",
    "collision_mask",
    "hard_collision",
    "weight_correlation",
    "neuron_similarity",
    "cosine_similarity_matrix",
    "accepted_pair_fraction",
]

# Upper bound on the random vectors held at once by ``hard_collision`` (in float32 elements: 64 MiB).
_RANDOM_CHUNK_ELEMENTS = 16 * 1024 * 1024
# Slice of a drawn chunk that the per-pair arithmetic works on at once (float32 elements: 4 MiB).
_WORK_CHUNK_ELEMENTS = 1024 * 1024


def _check_matrix(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D [N neurons, D inputs], got shape {tuple(tensor.shape)}; "
            "flatten convolution kernels to [out_channels, -1] first"
        )
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def _check_inputs(weight: torch.Tensor, grad: torch.Tensor, coef: float) -> float:
    _check_matrix("weight", weight)
    _check_matrix("grad", grad)
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} and {tuple(grad.shape)}"
        )
    if isinstance(coef, torch.Tensor):
        coef = coef.item()
    try:
        coef = float(coef)
    except (TypeError, ValueError):
        raise ValueError(f"coef must be a number in [0, 1], got {coef!r}") from None
    if not math.isfinite(coef) or not 0.0 <= coef <= 1.0:
        raise ValueError(f"coef must be a finite number in [0, 1], got {coef!r}")
    return coef


def _check_distance_scale(distance_scale: float) -> float:
    try:
        value = float(distance_scale)
    except (TypeError, ValueError):
        raise ValueError(f"distance_scale must be a finite number >= 0, got {distance_scale!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"distance_scale must be a finite number >= 0, got {distance_scale!r}")
    return value


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; a zero row stays zero (it has no direction, so its cosines are 0)."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` cosine similarity of the rows of ``x`` (float32; 0 for any pair involving a zero row)."""
    _check_matrix("x", x)
    unit = _unit_rows(x.detach().float())
    return unit @ unit.T


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows from the Gram matrix: exactly symmetric, zero diagonal."""
    gram = x @ x.T
    sq_norms = gram.diagonal()
    squared = (sq_norms[:, None] + sq_norms[None, :]).sub_(gram, alpha=2.0).clamp_min_(0.0)
    # The product can differ from its transpose in the last bit: symmetrise (into gram's storage, now unused).
    squared = torch.add(squared, squared.T, out=gram).mul_(0.5)
    squared.fill_diagonal_(0.0)
    return squared.sqrt_()


def soft_collision(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, *, include_self: bool = False
) -> torch.Tensor:
    """Soft collision (KO Alg. 2): ``g* = g - coef * S' @ g`` with ``S = cos(w, w) * cos(g, g)`` over rows.

    ``S'`` is ``S`` without its diagonal unless ``include_self`` (Alg. 2 read literally, which only adds a
    uniform ``(1 - coef)`` rescale of every row). ``coef = 0`` and gradients with non-finite values return
    ``grad`` itself, unchanged.
    """
    coef = _check_inputs(weight, grad, coef)
    if coef == 0.0 or (grad.shape[0] < 2 and not include_self):
        return grad
    w = weight.detach().float()
    g = grad.detach().float()
    similarity = cosine_similarity_matrix(w) * cosine_similarity_matrix(g)
    if not include_self:
        similarity.fill_diagonal_(0.0)
    new_grad = torch.addmm(g, similarity, g, alpha=-coef)
    # Decided on the device, without a host synchronisation: a gradient holding inf/NaN (an overflowing
    # fp16 step that the scaler will skip) comes back as it was instead of spreading NaN to every row.
    finite = torch.isfinite(g).all()
    return torch.where(finite, new_grad, g).to(grad.dtype)


def _acceptance_ratio(w: torch.Tensor, g: torch.Tensor, distance_scale: float) -> torch.Tensor:
    """Left side of Eq. 7, ``g_r * exp(-lambda * w_r) / max(g_r)``, with a zero diagonal (fp32 ``[N, N]``)."""
    ratio = _pairwise_distances(g)
    max_speed = ratio.max()
    if distance_scale != 0.0:
        ratio.mul_(_pairwise_distances(w).mul_(-distance_scale).exp_())
    # When max_speed is 0 every relative speed is 0, so dividing by 1 leaves the ratio 0 (computed in place:
    # fresh N x N buffers are not free).
    return ratio.div_(torch.where(max_speed > 0, max_speed, 1.0))


def collision_mask(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, *, distance_scale: float = 1.0
) -> torch.Tensor:
    """Which pairs collide (KO Eq. 7): ``g_r[i,j] * exp(-distance_scale * w_r[i,j]) / max(g_r) > 1 - coef``.

    Returns a symmetric ``[N, N]`` bool tensor with a False diagonal. Nothing collides when all gradient
    rows are equal (``max g_r = 0``, which includes ``N = 1``) or when ``grad`` holds non-finite values.
    """
    coef = _check_inputs(weight, grad, coef)
    distance_scale = _check_distance_scale(distance_scale)
    g = grad.detach().float()
    ratio = _acceptance_ratio(weight.detach().float(), g, distance_scale)
    mask = ratio > (1.0 - coef)
    mask.fill_diagonal_(False)
    return mask & torch.isfinite(g).all()


def hard_collision(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    generator: torch.Generator | None = None,
    distance_scale: float = 1.0,
) -> torch.Tensor:
    """Hard collision (KO Alg. 1, Eq. 5-8): every accepted pair ``(i, j)`` adds to row ``i``

        ``Δg_ij = (g_j - g_i) / 2 + ½ · ‖g_i - g_j‖ · n_ij``,  with ``n_ij`` uniform on the unit sphere
        and ``n_ji = -n_ij``,

    so total momentum ``Σ g_i`` is conserved. The unit vectors are drawn from ``generator`` only (the global
    generator when None), on the generator's device, one per accepted pair in row-major order of the upper
    triangle, so the same seed gives the same result on every process.
    """
    return hard_collision_with_count(
        weight, grad, coef, generator=generator, distance_scale=distance_scale
    )[0]


def hard_collision_with_count(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    generator: torch.Generator | None = None,
    distance_scale: float = 1.0,
) -> tuple[torch.Tensor, int]:
    """``hard_collision`` plus the number of accepted pairs ``(i < j)``, which it knows anyway."""
    coef = _check_inputs(weight, grad, coef)
    distance_scale = _check_distance_scale(distance_scale)
    if coef == 0.0 or grad.shape[0] < 2:
        return grad, 0
    g = grad.detach().float()
    if not bool(torch.isfinite(g).all()):
        return grad, 0
    mask = _acceptance_ratio(weight.detach().float(), g, distance_scale) > (1.0 - coef)
    pairs = torch.triu(mask, diagonal=1).nonzero()
    if pairs.shape[0] == 0:
        return grad, 0
    new_grad = g.clone()
    _add_pair_updates(new_grad, g, pairs, generator)
    return new_grad.to(grad.dtype), int(pairs.shape[0])


def _add_pair_updates(
    out: torch.Tensor, g: torch.Tensor, pairs: torch.Tensor, generator: torch.Generator | None
) -> None:
    """Adds ``Δg_ij = (g_j - g_i)/2 + ½ ‖g_i - g_j‖ n_ij`` to row i and subtracts it from row j, for every pair.

    The unit vectors are drawn in chunks of ``_RANDOM_CHUNK_ELEMENTS // D`` pairs (this fixes the draw order for
    a given seed); the arithmetic runs on smaller slices of each chunk so that its temporaries stay small.
    Both the deterministic and the random term are per-pair, so the cost is O(pairs · D), not O(N² · D).
    """
    dim = g.shape[1]
    draw_device = generator.device if generator is not None else g.device
    chunk = max(1, _RANDOM_CHUNK_ELEMENTS // max(dim, 1))
    piece = max(1, min(_WORK_CHUNK_ELEMENTS // max(dim, 1), pairs.shape[0]))
    # Two work buffers reused for every slice: freshly allocated memory costs page faults on every call.
    row_buffer = torch.empty(piece, dim, dtype=g.dtype, device=g.device)
    col_buffer = torch.empty_like(row_buffer)
    for start in range(0, pairs.shape[0], chunk):
        chunk_pairs = pairs[start : start + chunk]
        directions = torch.randn(chunk_pairs.shape[0], dim, generator=generator, device=draw_device)
        directions = directions.to(g.device)
        for offset in range(0, chunk_pairs.shape[0], piece):
            rows, cols = chunk_pairs[offset : offset + piece].unbind(dim=1)
            count = rows.shape[0]
            delta = directions[offset : offset + piece]
            delta /= torch.linalg.vector_norm(delta, dim=1, keepdim=True)
            # The pair's own relative velocity, computed directly rather than from the Gram matrix, so an
            # isolated pair keeps ‖g_i - g_j‖ and ‖g_i‖² + ‖g_j‖² to rounding error.
            difference = torch.index_select(g, 0, rows, out=row_buffer[:count])
            difference.sub_(torch.index_select(g, 0, cols, out=col_buffer[:count]))  # g_i - g_j
            delta *= 0.5 * torch.linalg.vector_norm(difference, dim=1, keepdim=True)
            delta.add_(difference, alpha=-0.5)  # + (g_j - g_i) / 2
            out.index_add_(0, rows, delta)
            out.index_add_(0, cols, delta, alpha=-1.0)


def _off_diagonal_abs_cosines(weight: torch.Tensor) -> torch.Tensor:
    _check_matrix("weight", weight)
    n = weight.shape[0]
    if n < 2:
        raise ValueError(f"condensation metrics need at least 2 rows (neurons), got shape {tuple(weight.shape)}")
    cosines = cosine_similarity_matrix(weight).abs()
    return cosines[~torch.eye(n, dtype=torch.bool, device=cosines.device)]


def weight_correlation(weight: torch.Tensor) -> float:
    """Mean ``|cos(w_i, w_j)|`` over pairs ``i != j`` of rows (Jin et al., NeurIPS 2020)."""
    return float(_off_diagonal_abs_cosines(weight).mean())


def neuron_similarity(weight: torch.Tensor) -> float:
    """Max ``|cos(w_i, w_j)|`` over pairs ``i != j`` of rows (KO paper, Fig. 3)."""
    return float(_off_diagonal_abs_cosines(weight).max())


def accepted_pair_fraction(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, *, distance_scale: float = 1.0
) -> float:
    """Fraction of the ``N (N - 1) / 2`` neuron pairs that ``collision_mask`` accepts."""
    mask = collision_mask(weight, grad, coef, distance_scale=distance_scale)
    n = mask.shape[0]
    if n < 2:
        return 0.0
    return float(torch.triu(mask, diagonal=1).sum()) / (n * (n - 1) / 2)
