"""Soft and hard collision (KO paper, Alg. 1 and 2) as pure tensor functions.

Rows of a linear layer's weight ``w`` (shape ``[N, D]``) are particles and the rows of its gradient ``g``
are their velocities. Every function here is pure: inputs are never modified in place, the result has the
gradient's dtype and device, and the arithmetic runs in float32 (bf16, fp16 and fp32 inputs) or float64 (float64
inputs).

Hard collision pairs the rows in one of two ways (``pairing``):

- ``"dsmc"``: a random perfect matching of the rows is drawn from the generator (the candidate pairs of DSMC's
  no-time-counter scheme); each candidate pair is tested with Eq. 7 and, if accepted, collides once as hard
  spheres (Eq. 4-6). Every row has at most one partner, so momentum, kinetic energy and relative speed are
  conserved pair by pair. O(N·D) memory; never synchronises with the host.
- ``"all"``: Eq. 8 as printed: every accepted pair of the ``N (N - 1) / 2`` adds its update to both rows at once.
  Acceptance is ``N x N`` matrix algebra, then only the accepted pairs are touched, with the random unit vectors
  drawn in chunks of bounded size. Selecting the accepted pairs (``nonzero``) is its one host synchronisation.

Nothing here materialises an ``N x N x D`` tensor, and no function except ``"all"`` produces a shape that depends
on tensor values, so ``soft_collision`` and ``hard_collision(pairing="dsmc")`` run under CUDA graphs, on the meta
device and under ``FakeTensorMode``.

Numerics shared by every op: gradients are scaled by an exact power of two (from the exponent of their largest
magnitude) before anything is squared, and scaled back at the end, so float32 gradients up to ~1e38 do not overflow
and, because scaling by 2^k is exact, results are bit for bit what the unscaled arithmetic gives. Non-finite
values in ``weight`` or ``grad``, or a result that would overflow the gradient's dtype (float16 tops out at
65,504), leave the gradient unchanged.
"""

from __future__ import annotations

import math
import numbers

import torch

from .settings import PAIRINGS

__all__ = [
    "PAIRINGS",
    "MAX_SPEEDS",
    "soft_collision",
    "collision_mask",
    "hard_collision",
    "hard_collision_with_count",
    "candidate_pairs",
    "row_cosines",
    "weight_correlation",
    "neuron_similarity",
    "condensation",
    "cosine_similarity_matrix",
    "accepted_pair_fraction",
]

#: What normalises the relative speed in Eq. 7 under DSMC pairing: the largest relative speed over all
#: ``N (N - 1) / 2`` pairs (Eq. 7's ``max g_r`` as written) or over this step's candidate pairs only.
MAX_SPEEDS = ("all_pairs", "candidates")

# Upper bound on the random vectors held at once by ``hard_collision(pairing="all")`` (float32 elements: 64 MiB).
_RANDOM_CHUNK_ELEMENTS = 16 * 1024 * 1024
# Slice of a drawn chunk that the per-pair arithmetic works on at once (float32 elements: 4 MiB).
_WORK_CHUNK_ELEMENTS = 1024 * 1024
# Elements of one block of the Gram matrix when DSMC pairing looks for the largest relative speed (at least N·D).
_GRAM_BLOCK_ELEMENTS = 1024 * 1024


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


def check_coef(coef: object) -> float:
    """``coef`` as a float in [0, 1]; a bool, a string, a tensor or anything outside [0, 1] is a ``ValueError``.

    A tensor is refused rather than read with ``.item()``: that would synchronise with the device every step.
    """
    if isinstance(coef, bool) or not isinstance(coef, numbers.Real):
        raise ValueError(f"coef must be a real number in [0, 1], got {coef!r} ({type(coef).__name__})")
    value = float(coef)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"coef must be a finite number in [0, 1], got {coef!r}")
    return value


def _check_inputs(weight: torch.Tensor, grad: torch.Tensor, coef: object) -> float:
    _check_matrix("weight", weight)
    _check_matrix("grad", grad)
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} and {tuple(grad.shape)}"
        )
    return check_coef(coef)


def _check_distance_scale(distance_scale: object) -> float:
    if isinstance(distance_scale, bool) or not isinstance(distance_scale, numbers.Real):
        raise ValueError(f"distance_scale must be a finite number >= 0, got {distance_scale!r}")
    value = float(distance_scale)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"distance_scale must be a finite number >= 0, got {distance_scale!r}")
    return value


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; valid: {', '.join(map(repr, choices))}")
    return value  # type: ignore[return-value]


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64 (its precision is kept), else float32 (bf16/fp16/fp32 inputs)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _as_compute(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.detach().to(dtype)


# (exponent bias, mantissa bits, integer type of the same width, largest safe exponent) of each compute dtype
_FLOAT_LAYOUT = {torch.float32: (127, 23, torch.int32, 125), torch.float64: (1023, 52, torch.int64, 1021)}


def _power_of_two_scale(x: torch.Tensor, rows: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2^-e, 2^e)`` in ``x``'s dtype (float32 or float64) with ``2^(e-1) <= max|x| < 2^e`` (e clamped to the
    dtype's safe range: ±125 for float32): 0-d, or ``[N, 1]`` with one exponent per row when ``rows``.

    Built from the bits of the exponent field, so both factors are exact powers of two and multiplying by them is
    exact; computed on the device, without a host synchronisation.
    """
    bias, mantissa, int_dtype, limit = _FLOAT_LAYOUT[x.dtype]
    if rows:
        peak = x.abs().amax(dim=1, keepdim=True) if x.shape[1] else x.new_zeros(x.shape[0], 1)
    else:
        peak = x.abs().amax() if x.numel() else x.new_zeros(())
    exponent = torch.frexp(peak)[1].clamp(-limit, limit).to(int_dtype)  # peak = m · 2^e, m in [0.5, 1); 0/inf/NaN: 0
    scale = ((bias - exponent) << mantissa).view(x.dtype)
    inverse = ((bias + exponent) << mantissa).view(x.dtype)
    return scale, inverse


def _all_finite(*tensors: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor on the device: every value of every tensor is finite."""
    finite = torch.isfinite(tensors[0]).all()
    for tensor in tensors[1:]:
        finite = finite & torch.isfinite(tensor).all()
    return finite


def _finish(result: torch.Tensor, grad: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The float32 ``result`` in ``grad``'s dtype where ``valid`` and representable there; else ``grad`` unchanged.

    A result that overflows the gradient's dtype (e.g. float16 beyond 65,504) would reach the base optimizer as
    inf after the loss scaler's check, so the step's collision is dropped instead of clamped (clamping would break
    the conservation laws and the direction of the rows it touched).
    """
    result = result.to(grad.dtype)
    return torch.where(valid & torch.isfinite(result).all(), result, grad)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; a zero row stays zero (it has no direction, so its cosines are 0).

    Each row is first brought to [0.5, 1) in magnitude by an exact power of two, so no square over- or underflows.
    """
    x = x * _power_of_two_scale(x, rows=True)[0]
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` cosine similarity of the rows of ``x`` (float32, float64 for float64 ``x``; 0 for any pair
    involving a zero row)."""
    _check_matrix("x", x)
    unit = _unit_rows(_as_compute(x, _compute_dtype(x)))
    return unit @ unit.T


def row_cosines(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``cos(new_i, old_i)`` for every row, ``[N]`` (float32; float64 for float64 inputs): 1 where both rows are
    zero, 0 where only one is.

    On a collision's output and input it says how much of each row's own direction survived: a negative mean
    means the collision reverses the gradient on average.
    """
    _check_matrix("new", new)
    _check_matrix("old", old)
    dtype = _compute_dtype(new, old)
    a, b = _unit_rows(_as_compute(new, dtype)), _unit_rows(_as_compute(old, dtype))
    cosine = (a * b).sum(dim=1)
    both_zero = (a == 0).all(dim=1) & (b == 0).all(dim=1)
    return torch.where(both_zero, torch.ones_like(cosine), cosine)


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows from the Gram matrix: exactly symmetric, zero diagonal."""
    gram = x @ x.T
    sq_norms = gram.diagonal()
    squared = (sq_norms[:, None] + sq_norms[None, :]).sub_(gram, alpha=2.0).clamp_min_(0.0)
    # The product can differ from its transpose in the last bit: symmetrise (into gram's storage, now unused).
    squared = torch.add(squared, squared.T, out=gram).mul_(0.5)
    squared.fill_diagonal_(0.0)
    return squared.sqrt_()


def _max_pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """``max_{i != j} ‖x_i - x_j‖`` as a 0-d tensor, from blocks of the Gram matrix (O(N·D) extra memory)."""
    n = x.shape[0]
    sq_norms = torch.linalg.vector_norm(x, dim=1).square_()  # no N x D temporary
    rows = max(1, min(n, max(_GRAM_BLOCK_ELEMENTS, x.numel()) // max(n, 1)))
    best = x.new_zeros(())
    for start in range(0, n, rows):  # the block count depends on the shape only
        block = x[start : start + rows]
        squared = torch.addmm(sq_norms[None, :], block, x.T, alpha=-2.0).add_(sq_norms[start : start + rows, None])
        squared.diagonal(offset=start).fill_(0.0)  # row start + k against itself: rounding, not a distance
        best = torch.maximum(best, squared.amax())
    return best.clamp_min(0.0).sqrt()


def soft_collision(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, *, include_self: bool = False, bounded: bool = False
) -> torch.Tensor:
    """Soft collision (KO Alg. 2): ``g* = g - coef * S' @ g`` with ``S = cos(w, w) * cos(g, g)`` over rows.

    ``S'`` is ``S`` without its diagonal unless ``include_self`` (Alg. 2 read literally, which only adds a
    uniform ``(1 - coef)`` rescale of every row). By default the paper's form, as printed. ``bounded=True`` caps
    each row's change at ``coef`` times that row's own length, ``‖g*_i - g_i‖ <= coef ‖g_i‖`` (the row's change is
    scaled down, keeping its direction, only where it is larger): then ``cos(g*_i, g_i) >= sqrt(1 - coef²)``, so no
    row is ever turned around, however many similar rows a wide layer has (README, "Defaults, and why"). Where the
    paper's change is within the cap (class heads, whose rows are nearly orthogonal) both forms agree (to rounding).

    ``coef = 0`` returns ``grad`` itself. Non-finite values in ``weight`` or ``grad``, or a result that overflows the
    gradient's dtype, return ``grad``'s values unchanged. Never synchronises with the host; compiles with
    ``torch.compile(fullgraph=True)``.
    """
    coef = _check_inputs(weight, grad, coef)
    if coef == 0.0 or (grad.shape[0] < 2 and not include_self):
        return grad
    dtype = _compute_dtype(weight, grad)
    w, g = _as_compute(weight, dtype), _as_compute(grad, dtype)
    finite = _all_finite(w, g)
    g_scale, g_inverse = _power_of_two_scale(g)
    g_scaled = g * g_scale
    similarity = cosine_similarity_matrix(w) * cosine_similarity_matrix(g_scaled)
    if not include_self:
        similarity.fill_diagonal_(0.0)
    if bounded:
        new_grad = _cap_row_change((similarity @ g_scaled).mul_(-coef), g_scaled, coef).add_(g_scaled)
    else:  # the paper's form, computed as ko-hf 0.1 and 0.2 did (one fused product: the same bits)
        new_grad = torch.addmm(g_scaled, similarity, g_scaled, alpha=-coef)
    return _finish(new_grad.mul_(g_inverse), grad, finite)


def _cap_row_change(change: torch.Tensor, g: torch.Tensor, fraction: float) -> torch.Tensor:
    """``change`` with each row scaled down to at most ``fraction`` times the length of the same row of ``g``."""
    limit = torch.linalg.vector_norm(g, dim=1, keepdim=True).mul_(fraction)
    return change.mul_(_cap_factor(torch.linalg.vector_norm(change, dim=1, keepdim=True), limit))


def _cap_factor(length: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """The factor that scales a change of ``length`` down to at most ``limit`` (1 where it is within it)."""
    return torch.where(length > limit, limit / torch.where(length > 0, length, 1.0), 1.0)


def candidate_pairs(n: int, pairing: str = "all") -> int:
    """How many candidate pairs one step tests for ``n`` rows: ``n // 2`` (DSMC) or ``n (n - 1) / 2`` (all)."""
    _check_choice("pairing", pairing, PAIRINGS)
    return n // 2 if pairing == "dsmc" else n * (n - 1) // 2


def _acceptance_ratio(w: torch.Tensor, g: torch.Tensor, distance_scale: float) -> torch.Tensor:
    """Left side of Eq. 7, ``g_r * exp(-lambda * w_r) / max(g_r)``, with a zero diagonal (fp32 ``[N, N]``)."""
    ratio = _pairwise_distances(g)
    max_speed = ratio.max()
    if distance_scale != 0.0:
        ratio.mul_(_pairwise_distances(w).mul_(-distance_scale).exp_())
    # When max_speed is 0 every relative speed is 0, so dividing by 1 leaves the ratio 0 (computed in place:
    # fresh N x N buffers are not free).
    return ratio.div_(torch.where(max_speed > 0, max_speed, 1.0))


def _draw_device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def _dsmc_candidates(
    n: int, generator: torch.Generator | None, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random perfect matching: rows ``first[k]`` and ``second[k]`` form candidate pair k (odd N: the last
    row of the permutation sits out). The first draw from ``generator``."""
    order = torch.randperm(n, generator=generator, device=_draw_device(generator, like)).to(like.device)
    half = n // 2
    return order[:half], order[half : 2 * half]


def _dsmc_accept(
    w: torch.Tensor,
    g: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    coef: float,
    distance_scale: float,
    max_speed: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 7 for each candidate pair: ``(accepted [M] bool, g_first, g_second, relative speed [M])``."""
    g_first, g_second = g.index_select(0, first), g.index_select(0, second)
    speed = torch.linalg.vector_norm(g_first - g_second, dim=1)
    ratio = speed
    if distance_scale != 0.0:
        distance = torch.linalg.vector_norm(w.index_select(0, first) - w.index_select(0, second), dim=1)
        ratio = ratio * torch.exp(-distance_scale * distance)
    top = _max_pairwise_distance(g) if max_speed == "all_pairs" else speed.amax()
    ratio = ratio / torch.where(top > 0, top, torch.ones_like(top))
    return ratio > (1.0 - coef), g_first, g_second, speed


def collision_mask(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    distance_scale: float = 1.0,
    pairing: str = "all",
    generator: torch.Generator | None = None,
    max_speed: str = "all_pairs",
) -> torch.Tensor:
    """Which pairs collide (KO Eq. 7): ``g_r[i,j] * exp(-distance_scale * w_r[i,j]) / max(g_r) > 1 - coef``.

    Returns a symmetric ``[N, N]`` bool tensor with a False diagonal. With ``pairing="all"`` every pair is a
    candidate; with ``"dsmc"`` only the pairs of the random matching that ``generator`` draws, so the mask has at
    most one True per row and is exactly the set of pairs ``hard_collision`` collides with the same generator
    state. Nothing collides when all gradient rows are equal (``max g_r = 0``, which includes ``N = 1``) or when
    ``weight`` or ``grad`` holds non-finite values.
    """
    coef = _check_inputs(weight, grad, coef)
    distance_scale = _check_distance_scale(distance_scale)
    _check_choice("pairing", pairing, PAIRINGS)
    _check_choice("max_speed", max_speed, MAX_SPEEDS)
    dtype = _compute_dtype(weight, grad)
    w, g = _as_compute(weight, dtype), _as_compute(grad, dtype)
    finite = _all_finite(w, g)
    g = g * _power_of_two_scale(g)[0]
    n = g.shape[0]
    if pairing == "all":
        mask = _acceptance_ratio(w, g, distance_scale) > (1.0 - coef)
        mask.fill_diagonal_(False)
        return mask & finite
    mask = torch.zeros(n, n, dtype=torch.bool, device=g.device)
    if n < 2:
        return mask
    first, second = _dsmc_candidates(n, generator, g)
    accepted = _dsmc_accept(w, g, first, second, coef, distance_scale, max_speed)[0] & finite
    mask[first, second] = accepted
    mask[second, first] = accepted
    return mask


def hard_collision(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    generator: torch.Generator | None = None,
    distance_scale: float = 1.0,
    pairing: str = "all",
    max_speed: str = "all_pairs",
    bounded: bool = False,
) -> torch.Tensor:
    """Hard collision (KO Alg. 1, Eq. 4-8) of the accepted pairs; see :func:`hard_collision_with_count`."""
    return hard_collision_with_count(
        weight, grad, coef, generator=generator, distance_scale=distance_scale, pairing=pairing, max_speed=max_speed,
        bounded=bounded,
    )[0]


def hard_collision_with_count(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    generator: torch.Generator | None = None,
    distance_scale: float = 1.0,
    pairing: str = "all",
    max_speed: str = "all_pairs",
    bounded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard collision and the number of accepted pairs (a 0-d int64 tensor on the gradient's device).

    ``pairing="dsmc"``: the rows are split into ``N // 2`` random candidate pairs (``torch.randperm`` from
    ``generator``); a candidate pair ``(i, j)`` is accepted by Eq. 7, with ``max g_r`` the largest relative speed
    over all pairs (``max_speed="all_pairs"``, from blocks of the Gram matrix) or over the candidates
    (``"candidates"``), and then collides as hard spheres (Eq. 4-6)::

        c = (g_i + g_j) / 2,   g*_i = c + ½ ‖g_i − g_j‖ n,   g*_j = c − ½ ‖g_i − g_j‖ n,   n uniform, ‖n‖ = 1

    Every row has at most one partner, so momentum ``g_i + g_j``, energy ``‖g_i‖² + ‖g_j‖²`` and relative
    speed are conserved per pair (to float32 rounding), and so are the layer's totals. The draws are one permutation
    then ``N // 2`` normal vectors (one per candidate, accepted or not), so shapes never depend on values and the
    function never synchronises with the host.

    ``pairing="all"`` (Eq. 8 as printed, ko-hf 0.1's behaviour, bit for bit): every accepted pair of the
    ``N (N − 1) / 2`` adds ``Δg_ij = (g_j − g_i)/2 + ½ ‖g_i − g_j‖ n_ij`` to row i and subtracts it from row j,
    all at once. Momentum is conserved up to the rounding of summing every pair's update (measured drift at N = 4096,
    D = 1, coef 1: up to 3.0e-5 of Σ|g_i|, i.e. 1.4e-8 of Σ|g*_i|; DSMC: 1.2e-9 of Σ|g_i|; README "What KO
    does"); energy is not once a row has several partners. The unit vectors are drawn one per accepted pair in
    row-major order of the upper triangle. It synchronises with the host once, where ``nonzero`` lists the
    accepted pairs (their number sets the shape of the draws); on the meta device it raises ``ValueError``.

    Both: the unit vectors come from ``generator`` only (the global generator when None), on the generator's
    device, so the same seed gives the same result on every process; acceptance is invariant to scaling ``g``
    and ``hard(w, c·g) = c·hard(w, g)`` for c > 0 with the same draws.

    ``bounded=True`` caps how far a collision moves a row, as soft collision's bounded form does: no row's gradient
    changes by more than ``coef`` times its own length. Under DSMC an accepted pair's change ``Δ`` (``+Δ`` for one
    row, ``−Δ`` for the other) is scaled by one factor for both rows, so momentum stays exact and the pair loses
    energy instead of keeping it (a partly inelastic collision); under "all" each row's summed change is scaled on
    its own. By default the paper's collisions, as printed.
    """
    coef = _check_inputs(weight, grad, coef)
    distance_scale = _check_distance_scale(distance_scale)
    _check_choice("pairing", pairing, PAIRINGS)
    _check_choice("max_speed", max_speed, MAX_SPEEDS)
    no_pairs = torch.zeros((), dtype=torch.int64, device=grad.device)
    if coef == 0.0 or grad.shape[0] < 2:
        return grad, no_pairs
    if pairing == "all" and (grad.is_meta or weight.is_meta):
        raise ValueError(
            "hard_collision(pairing='all') lists its accepted pairs on the host (their number sets the shape of "
            "the random draws), which the meta device cannot do; use pairing='dsmc', which has static shapes"
        )
    dtype = _compute_dtype(weight, grad)
    w, g = _as_compute(weight, dtype), _as_compute(grad, dtype)
    finite = _all_finite(w, g)
    g_scale, g_inverse = _power_of_two_scale(g)
    g = g * g_scale
    if pairing == "dsmc":
        new_grad, accepted = _dsmc_collision(w, g, coef, distance_scale, generator, max_speed, finite, bounded)
    else:
        mask = (_acceptance_ratio(w, g, distance_scale) > (1.0 - coef)) & finite
        upper = torch.triu(mask, diagonal=1)
        accepted = upper.sum()
        pairs = upper.nonzero()  # the host synchronisation of Eq. 8: the accepted pairs' number sets the draws
        if pairs.shape[0] == 0:
            return grad, accepted
        new_grad = g.clone()
        _add_pair_updates(new_grad, g, pairs, generator)
        if bounded:
            new_grad = _cap_row_change(new_grad.sub_(g), g, coef).add_(g)
    return _finish(new_grad.mul_(g_inverse), grad, finite), accepted


def _dsmc_collision(
    w: torch.Tensor,
    g: torch.Tensor,
    coef: float,
    distance_scale: float,
    generator: torch.Generator | None,
    max_speed: str,
    finite: torch.Tensor,
    bounded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSMC pairing on the (scaled) gradient in its compute dtype: the new gradient and the accepted-pair count."""
    n, dim = g.shape
    first, second = _dsmc_candidates(n, generator, g)
    directions = torch.randn(first.shape[0], dim, generator=generator, device=_draw_device(generator, g))
    directions = directions.to(device=g.device, dtype=g.dtype)
    accepted, g_first, g_second, speed = _dsmc_accept(w, g, first, second, coef, distance_scale, max_speed)
    accepted = accepted & finite
    # Post-collision relative velocity: the pre-collision speed along a uniform random direction (Eq. 3-4).
    half = directions.mul_((0.5 * speed / _direction_norms(directions)[:, 0])[:, None])
    centre = (g_first + g_second).mul_(0.5)
    keep = ~accepted[:, None]
    if bounded:  # one factor for the pair's change +Δ / −Δ: momentum stays exact
        change = centre.add_(half).sub_(g_first)
        limit = coef * torch.minimum(torch.linalg.vector_norm(g_first, dim=1),
                                     torch.linalg.vector_norm(g_second, dim=1))
        change.mul_(_cap_factor(torch.linalg.vector_norm(change, dim=1), limit)[:, None])
        new_first = torch.where(keep, g_first, g_first + change)
        new_second = torch.where(keep, g_second, g_second - change)
    else:
        new_first = torch.where(keep, g_first, centre + half)
        new_second = torch.where(keep, g_second, centre.sub_(half))
    new_grad = g.clone()
    new_grad.index_copy_(0, first, new_first)
    new_grad.index_copy_(0, second, new_second)
    return new_grad, accepted.sum()


def _direction_norms(draws: torch.Tensor) -> torch.Tensor:
    """The ``[M, 1]`` lengths of normal draws, which become uniform unit vectors once divided by them. A draw that
    is exactly zero (each float32 coordinate is 0 with a tiny probability, so with D = 1 among millions of pairs it
    happens) has no direction: it is made the first basis vector, in place, instead of 0/0, which would make the
    whole step's result non-finite and drop it."""
    norms = torch.linalg.vector_norm(draws, dim=1, keepdim=True)
    zero = norms == 0
    draws[:, :1] = torch.where(zero, 1.0, draws[:, :1])
    return torch.where(zero, 1.0, norms)


def _add_pair_updates(
    out: torch.Tensor, g: torch.Tensor, pairs: torch.Tensor, generator: torch.Generator | None
) -> None:
    """Adds ``Δg_ij = (g_j - g_i)/2 + ½ ‖g_i - g_j‖ n_ij`` to row i and subtracts it from row j, for every pair.

    The unit vectors are drawn in chunks of ``_RANDOM_CHUNK_ELEMENTS // D`` pairs (this fixes the draw order for
    a given seed); the arithmetic runs on smaller slices of each chunk so that its temporaries stay small.
    Both the deterministic and the random term are per-pair, so the cost is O(pairs · D), not O(N² · D).
    """
    dim = g.shape[1]
    draw_device = _draw_device(generator, g)
    chunk = max(1, _RANDOM_CHUNK_ELEMENTS // max(dim, 1))
    piece = max(1, min(_WORK_CHUNK_ELEMENTS // max(dim, 1), pairs.shape[0]))
    # Two work buffers reused for every slice: freshly allocated memory costs page faults on every call.
    row_buffer = torch.empty(piece, dim, dtype=g.dtype, device=g.device)
    col_buffer = torch.empty_like(row_buffer)
    for start in range(0, pairs.shape[0], chunk):
        chunk_pairs = pairs[start : start + chunk]
        directions = torch.randn(chunk_pairs.shape[0], dim, generator=generator, device=draw_device)
        directions = directions.to(device=g.device, dtype=g.dtype)
        for offset in range(0, chunk_pairs.shape[0], piece):
            rows, cols = chunk_pairs[offset : offset + piece].unbind(dim=1)
            count = rows.shape[0]
            delta = directions[offset : offset + piece]
            delta /= _direction_norms(delta)
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


def condensation(weight: torch.Tensor) -> dict[str, float] | None:
    """:func:`weight_correlation` and :func:`neuron_similarity` of a weight's rows (a convolution kernel flattened
    per output channel), from one cosine matrix; ``None`` for fewer than two rows."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    if rows.shape[0] < 2:
        return None
    cosines = _off_diagonal_abs_cosines(rows)
    return {"weight_correlation": float(cosines.mean()), "neuron_similarity": float(cosines.max())}


def accepted_pair_fraction(
    weight: torch.Tensor,
    grad: torch.Tensor,
    coef: float,
    *,
    distance_scale: float = 1.0,
    pairing: str = "all",
    generator: torch.Generator | None = None,
    max_speed: str = "all_pairs",
) -> float:
    """Accepted pairs / candidate pairs (``candidate_pairs(N, pairing)``) of ``collision_mask``.

    For ``"all"`` that is the fraction of the ``N (N - 1) / 2`` pairs; for ``"dsmc"`` the fraction of the
    ``N // 2`` candidate pairs drawn from ``generator`` (so twice the accepted pairs over N is the fraction of
    rows that collided).
    """
    mask = collision_mask(
        weight, grad, coef, distance_scale=distance_scale, pairing=pairing, generator=generator, max_speed=max_speed
    )
    candidates = candidate_pairs(mask.shape[0], pairing)
    if candidates == 0:
        return 0.0
    return float(torch.triu(mask, diagonal=1).sum()) / candidates
