import math

import pytest
import torch

from ko_hf import (
    accepted_pair_fraction,
    collision_mask,
    hard_collision,
    neuron_similarity,
    soft_collision,
    weight_correlation,
)


def make(n=6, d=5, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- soft collision


def reference_soft(w, g, coef, include_self):
    n = w.shape[0]
    out = g.clone().double()
    w, g = w.double(), g.double()
    for i in range(n):
        for j in range(n):
            if i == j and not include_self:
                continue
            cw = torch.dot(w[i], w[j]) / (w[i].norm() * w[j].norm())
            cg = torch.dot(g[i], g[j]) / (g[i].norm() * g[j].norm())
            out[i] -= coef * cw * cg * g[j]
    return out


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_matches_double_loop_reference(seed, include_self):
    w, g = make(7, 4, seed)
    got = soft_collision(w, g, 0.3, include_self=include_self)
    torch.testing.assert_close(got.double(), reference_soft(w, g, 0.3, include_self), rtol=1e-5, atol=1e-6)


def test_soft_include_self_is_off_diagonal_form_rescaled():
    w, g = make()
    off = soft_collision(w, g, 0.2)
    with_self = soft_collision(w, g, 0.2, include_self=True)
    torch.testing.assert_close(with_self, off - 0.2 * g)


def test_soft_does_not_modify_inputs():
    w, g = make()
    w0, g0 = w.clone(), g.clone()
    soft_collision(w, g, 0.5)
    hard_collision(w, g, 1.0, generator=seeded(0))
    collision_mask(w, g, 1.0)
    assert torch.equal(w, w0) and torch.equal(g, g0)


@pytest.mark.parametrize("fn", ["soft", "hard"])
def test_coef_zero_is_bitwise_identity(fn):
    w, g = make()
    out = soft_collision(w, g, 0.0) if fn == "soft" else hard_collision(w, g, 0.0, generator=seeded(0))
    assert torch.equal(out, g)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_output_keeps_dtype_and_math_runs_in_fp32(dtype):
    w, g = make(dtype=dtype)
    soft = soft_collision(w, g, 0.4)
    hard = hard_collision(w, g, 1.0, generator=seeded(0))
    assert soft.dtype == dtype and hard.dtype == dtype
    expected = soft_collision(w.float(), g.float(), 0.4).to(dtype)
    assert torch.equal(soft, expected)


@pytest.mark.parametrize(
    "coef", [-0.1, 1.5, float("nan"), float("inf"), "a lot"],
)
def test_bad_coef_is_value_error_naming_value(coef):
    w, g = make()
    for fn in (soft_collision, hard_collision, collision_mask):
        with pytest.raises(ValueError, match="coef") as info:
            fn(w, g, coef)
        assert repr(coef) in str(info.value)


def test_shape_and_rank_errors():
    w, g = make()
    with pytest.raises(ValueError, match=r"same shape.*\(6, 5\).*\(6, 4\)"):
        soft_collision(w, g[:, :4], 0.1)
    with pytest.raises(ValueError, match=r"2-D.*\(6, 5, 1\)"):
        hard_collision(w[..., None], g[..., None], 0.1)
    with pytest.raises(ValueError, match=r"2-D.*\(5,\)"):
        collision_mask(w[0], g[0], 0.1)
    with pytest.raises(ValueError, match="distance_scale.*-1"):
        collision_mask(w, g, 0.1, distance_scale=-1)


@pytest.mark.parametrize("fn", ["soft", "hard"])
def test_single_neuron_is_unchanged(fn):
    w, g = make(1, 5)
    out = soft_collision(w, g, 1.0) if fn == "soft" else hard_collision(w, g, 1.0, generator=seeded(0))
    assert torch.equal(out, g)
    assert not collision_mask(w, g, 1.0).any()


def test_zero_gradient_is_unchanged_for_both():
    w, _ = make()
    g = torch.zeros_like(w)
    assert torch.equal(soft_collision(w, g, 1.0), g)
    assert torch.equal(hard_collision(w, g, 1.0, generator=seeded(0)), g)


def test_equal_gradients_never_collide_hard_and_stay_finite_soft():
    w, _ = make()
    g = torch.ones_like(w)
    assert not collision_mask(w, g, 1.0).any()
    assert torch.equal(hard_collision(w, g, 1.0, generator=seeded(0)), g)
    # Soft collision is a similarity-weighted repulsion: identical gradients are maximally similar, so the
    # formula does act on them (see README); it must stay finite and match the reference.
    soft = soft_collision(w, g, 0.5)
    assert torch.isfinite(soft).all()
    torch.testing.assert_close(soft.double(), reference_soft(w, g, 0.5, False))


def test_zero_weight_rows_give_no_nan():
    w, g = make()
    w[2] = 0
    w[4] = 0
    for out in (soft_collision(w, g, 0.9), hard_collision(w, g, 1.0, generator=seeded(0))):
        assert torch.isfinite(out).all()
    assert weight_correlation(w) >= 0 and math.isfinite(neuron_similarity(w))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_grad_is_returned_unchanged(bad):
    w, g = make()
    g[3, 1] = bad
    for out in (soft_collision(w, g, 0.5), hard_collision(w, g, 1.0, generator=seeded(0))):
        assert torch.equal(out[torch.isfinite(g)], g[torch.isfinite(g)])
        assert torch.isfinite(out).sum() == torch.isfinite(g).sum()
    assert not collision_mask(w, g, 1.0).any()


# ---------------------------------------------------------------- acceptance (Eq. 7)


def reference_mask(w, g, coef, lam):
    n = w.shape[0]
    wr = torch.cdist(w.double(), w.double())
    gr = torch.cdist(g.double(), g.double())
    ratio = gr * torch.exp(-lam * wr) / gr.max()
    mask = ratio > 1 - coef
    mask &= ~torch.eye(n, dtype=torch.bool)
    return mask


@pytest.mark.parametrize("coef", [0.05, 0.3, 0.6, 0.9, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.05, 1.0])
def test_mask_matches_reference_and_is_symmetric(coef, lam):
    w, g = make(12, 8, seed=3)
    mask = collision_mask(w, g, coef, distance_scale=lam)
    assert mask.dtype == torch.bool and mask.shape == (12, 12)
    assert torch.equal(mask, mask.T)
    assert not mask.diagonal().any()
    assert torch.equal(mask, reference_mask(w, g, coef, lam))


@pytest.mark.parametrize("scale", [2.0, 0.25, 1024.0, 3.0])
def test_acceptance_is_scale_invariant(scale):
    w, g = make(16, 8, seed=4)
    for coef in (0.2, 0.5, 0.8):
        assert torch.equal(collision_mask(w, g, coef), collision_mask(w, scale * g, coef))


def test_coef_one_accepts_every_pair_with_distinct_gradients():
    w, g = make(9, 4)
    mask = collision_mask(w, g, 1.0)
    assert mask.sum() == 9 * 8
    assert accepted_pair_fraction(w, g, 1.0) == 1.0


def test_accepted_fraction_grows_with_coef():
    w, g = make(30, 16, seed=5)
    fractions = [accepted_pair_fraction(w, g, c, distance_scale=0.1) for c in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)]
    assert fractions == sorted(fractions)
    assert fractions[0] < fractions[-1] == 1.0


# ---------------------------------------------------------------- hard collision (Eq. 8)


def reference_hard(w, g, coef, lam, generator, pairs_per_draw=None):
    """Per-pair loop in the same draw order as the implementation (row-major upper triangle, drawn in chunks)."""
    mask = reference_mask(w, g, coef, lam)
    out = g.clone().double()
    g = g.double()
    n, d = g.shape
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if mask[i, j]]
    chunk = pairs_per_draw or max(len(pairs), 1)
    directions = torch.cat(
        [torch.randn(len(pairs[k : k + chunk]), d, generator=generator) for k in range(0, len(pairs), chunk)]
    ).double()
    for (i, j), direction in zip(pairs, directions):
        direction = direction / direction.norm()
        speed = (g[i] - g[j]).norm()
        out[i] += 0.5 * (g[j] - g[i]) + 0.5 * speed * direction
        out[j] += 0.5 * (g[i] - g[j]) - 0.5 * speed * direction
    return out


@pytest.mark.parametrize("coef,lam", [(1.0, 1.0), (0.7, 0.05), (0.9, 0.0)])
def test_hard_matches_per_pair_reference(coef, lam):
    w, g = make(8, 6, seed=6)
    got = hard_collision(w, g, coef, generator=seeded(11), distance_scale=lam)
    want = reference_hard(w, g, coef, lam, seeded(11))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_hard_conserves_momentum():
    w, g = make(20, 12, seed=7)
    out = hard_collision(w, g, 1.0, generator=seeded(0))
    torch.testing.assert_close(out.sum(0), g.sum(0), rtol=0, atol=1e-4)
    assert not torch.allclose(out, g)


def test_isolated_pair_conserves_energy_and_relative_speed():
    w, g = make(2, 64, seed=8)
    assert collision_mask(w, g, 1.0).sum() == 2
    out = hard_collision(w, g, 1.0, generator=seeded(3))
    energy = lambda x: (x.double() ** 2).sum()
    torch.testing.assert_close(energy(out), energy(g), rtol=1e-5, atol=0)
    torch.testing.assert_close((out[0] - out[1]).norm(), (g[0] - g[1]).norm(), rtol=1e-5, atol=0)
    # ...and the direction of the relative velocity is new.
    assert torch.nn.functional.cosine_similarity(out[0] - out[1], g[0] - g[1], dim=0) < 0.99


def test_isolated_pair_among_bystanders():
    # Rows 0 and 1 have a large relative speed, the others are nearly equal: only (0, 1) is accepted.
    w, _ = make(6, 16, seed=9)
    g = torch.full((6, 16), 0.01)
    g[0] += 5.0
    g[1] -= 5.0
    g[2:] += 1e-3 * torch.randn(4, 16, generator=seeded(1))
    mask = collision_mask(w, g, 0.2, distance_scale=0.0)
    assert mask.sum() == 2 and mask[0, 1]
    out = hard_collision(w, g, 0.2, generator=seeded(2), distance_scale=0.0)
    assert torch.equal(out[2:], g[2:]), "rows in no accepted pair must be unchanged"
    torch.testing.assert_close((out[:2].double() ** 2).sum(), (g[:2].double() ** 2).sum(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("scale", [2.0, 0.5, 64.0])
def test_hard_is_homogeneous_in_the_gradient(scale):
    w, g = make(10, 8, seed=10)
    a = hard_collision(w, scale * g, 0.8, generator=seeded(5), distance_scale=0.1)
    b = scale * hard_collision(w, g, 0.8, generator=seeded(5), distance_scale=0.1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_same_seed_same_result_other_seed_different():
    w, g = make(10, 8, seed=11)
    a = hard_collision(w, g, 1.0, generator=seeded(1))
    b = hard_collision(w, g, 1.0, generator=seeded(1))
    c = hard_collision(w, g, 1.0, generator=seeded(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_draws_only_from_the_given_generator():
    w, g = make(10, 8, seed=12)
    torch.manual_seed(0)
    a = hard_collision(w, g, 1.0, generator=seeded(1))
    torch.manual_seed(123)
    b = hard_collision(w, g, 1.0, generator=seeded(1))
    assert torch.equal(a, b)


def test_random_vectors_are_drawn_in_bounded_chunks(monkeypatch):
    import ko_hf.collision as collision

    w, g = make(12, 8, seed=13)
    monkeypatch.setattr(collision, "_RANDOM_CHUNK_ELEMENTS", 8 * 5)  # 5 pairs a chunk, 66 pairs in all
    drawn = []
    real_randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: drawn.append(a[:2]) or real_randn(*a, **k))
    chunked = hard_collision(w, g, 1.0, generator=seeded(4))
    monkeypatch.setattr(torch, "randn", real_randn)
    assert drawn == [(5, 8)] * 13 + [(1, 8)]
    want = reference_hard(w, g, 1.0, 1.0, seeded(4), pairs_per_draw=5)
    torch.testing.assert_close(chunked.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.sum(0), g.sum(0), rtol=0, atol=1e-4)


def test_random_term_statistics():
    """Over many seeds: mean of Σ_j a_j n_ij is 0 and E‖Σ_j a_j n_ij‖² = Σ_j a_j²."""
    w, g = make(5, 6, seed=14)
    deterministic = hard_collision(w, g, 1.0, generator=seeded(0)) - 0  # noqa: F841 (warm-up)
    mask = collision_mask(w, g, 1.0).double()
    g64 = g.double()
    drift = 0.5 * (mask @ g64 - mask.sum(1, keepdim=True) * g64)
    speeds = torch.cdist(g64, g64)
    expected_sq = ((0.5 * speeds) ** 2 * mask).sum(1)  # Σ_j a_j², a_j = ½‖g_i - g_j‖
    trials = 4000
    samples = torch.stack(
        [hard_collision(w, g, 1.0, generator=seeded(s)).double() - g64 - drift for s in range(trials)]
    )
    mean = samples.mean(0)
    # Each coordinate's standard error is at most sqrt(Σ_j a_j² / D / trials).
    stderr = (expected_sq / g.shape[1] / trials).sqrt()[:, None]
    assert (mean.abs() < 5 * stderr).all()
    second_moment = (samples**2).sum(-1).mean(0)
    torch.testing.assert_close(second_moment, expected_sq, rtol=0.05, atol=0)


# ---------------------------------------------------------------- condensation metrics


def test_condensation_metrics():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)
    assert weight_correlation(w) == pytest.approx((0 + c + c) / 3)
    assert neuron_similarity(w) == pytest.approx(c)
    assert neuron_similarity(torch.tensor([[1.0, 2.0], [-2.0, -4.0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        weight_correlation(torch.ones(1, 3))
