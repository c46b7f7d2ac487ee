import math
import sys
from pathlib import Path

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
from ko_hf.collision import candidate_pairs, cosine_similarity_matrix, hard_collision_with_count, row_cosines


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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_output_keeps_dtype_and_math_runs_in_fp32(dtype):
    w, g = make(dtype=dtype)
    soft = soft_collision(w, g, 0.4)
    hard = hard_collision(w, g, 1.0, generator=seeded(0))
    assert soft.dtype == dtype and hard.dtype == dtype
    expected = soft_collision(w.float(), g.float(), 0.4).to(dtype)
    assert torch.equal(soft, expected)


def test_float64_gradients_keep_their_precision():
    """float64 in, float64 math: no row comes back rounded to float32 (rows a collision leaves alone are
    returned bit for bit, collided rows carry float64 precision)."""
    w, g = make(dtype=torch.float64)
    for out in (soft_collision(w, g, 0.4), soft_collision(w, g, 0.4, bounded=True),
                hard_collision(w, g, 1.0, generator=seeded(0), pairing="all")):
        assert out.dtype == torch.float64
        assert not torch.equal(out, out.float().double())  # not rounded to float32
    reference = g - 0.4 * ((cosine_similarity_matrix(w) * cosine_similarity_matrix(g)).fill_diagonal_(0.0) @ g)
    torch.testing.assert_close(soft_collision(w, g, 0.4), reference, rtol=1e-12, atol=1e-14)
    mask = collision_mask(w, g, 0.3, distance_scale=0.05, pairing="dsmc", generator=seeded(4))
    out = hard_collision(w, g, 0.3, distance_scale=0.05, pairing="dsmc", generator=seeded(4))
    untouched = ~mask.any(dim=1)
    assert untouched.any() and (~untouched).any()
    assert torch.equal(out[untouched], g[untouched])


def test_a_zero_random_draw_does_not_drop_the_step():
    """D = 1: each unit vector is one normal draw's sign, and among 8.4 M draws one is exactly 0 (seed 1 here).
    Its 0/0 used to make the result non-finite, so the whole step's collision was silently dropped."""
    w = 0.02 * torch.randn(4096, 1, generator=seeded(0))
    g = torch.randn(4096, 1, generator=seeded(1))
    out, accepted = hard_collision_with_count(w, g, 1.0, generator=seeded(1), pairing="all")
    assert int(accepted) > 8_000_000
    assert torch.isfinite(out).all() and not torch.equal(out, g)


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


# ---------------------------------------------------------------- Eq. 8 ("all") is ko-hf 0.1, bit for bit

FIXTURES = Path(__file__).with_name("fixtures")


def test_all_pairing_is_bit_for_bit_what_0_1_computed():
    sys.path.insert(0, str(FIXTURES))
    try:
        import hard_all_outputs
    finally:
        sys.path.remove(str(FIXTURES))
    recorded = torch.load(FIXTURES / "hard_all_outputs.pt", weights_only=True)
    assert [tuple(c) for c in recorded["cases"]] == [tuple(c) for c in hard_all_outputs.CASES]
    for case, want, count in zip(hard_all_outputs.CASES, recorded["outputs"], recorded["accepted"]):
        got, got_count = hard_all_outputs.compute(case, pairing_keyword=True)
        assert got.dtype == want.dtype
        if want.dtype == torch.float64:
            # 0.1 rounded float64 gradients to float32 (every row); the math now runs in float64, so the result
            # is 0.1's to float32 rounding, not bit for bit
            torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6, msg=f"case {case} changed")
            assert not torch.equal(got, want)
        else:
            assert torch.equal(got, want), f"case {case} changed"
        assert int(got_count) == count, f"case {case}: {int(got_count)} accepted pairs, 0.1 had {count}"


# ---------------------------------------------------------------- DSMC pairing


def dsmc(w, g, coef=1.0, seed=0, **kwargs):
    return hard_collision(w, g, coef, generator=seeded(seed), pairing="dsmc", **kwargs)


def reference_dsmc(w, g, coef, lam, seed, max_speed="all_pairs"):
    """Float64 per-pair loop with the same draws: a permutation of the rows, then one normal vector per candidate."""
    gen = seeded(seed)
    n, d = g.shape
    order = torch.randperm(n, generator=gen)
    directions = torch.randn(n // 2, d, generator=gen).double()
    first, second = order[: n // 2], order[n // 2 : 2 * (n // 2)]
    w64, g64, out = w.double(), g.double(), g.clone().double()
    speeds = [(g64[i] - g64[j]).norm() for i, j in zip(first, second)]
    top = torch.cdist(g64, g64).max() if max_speed == "all_pairs" else max(speeds)
    for k, (i, j) in enumerate(zip(first, second)):
        ratio = speeds[k] * torch.exp(-lam * (w64[i] - w64[j]).norm()) / top
        if ratio > 1 - coef:
            centre = (g64[i] + g64[j]) / 2
            half = 0.5 * speeds[k] * directions[k] / directions[k].norm()
            out[i], out[j] = centre + half, centre - half
    return out


@pytest.mark.parametrize("max_speed", ["all_pairs", "candidates"])
@pytest.mark.parametrize("n,d,coef,lam", [(8, 6, 1.0, 1.0), (9, 5, 0.6, 0.05), (13, 16, 0.3, 0.0), (2, 4, 0.9, 0.5)])
def test_dsmc_matches_per_pair_reference(n, d, coef, lam, max_speed):
    w, g = make(n, d, seed=n + d)
    got = dsmc(w, g, coef, seed=3, distance_scale=lam, max_speed=max_speed)
    want = reference_dsmc(w, g, coef, lam, seed=3, max_speed=max_speed)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 7, 10, 31])
def test_dsmc_gives_each_row_at_most_one_partner_and_odd_n_leaves_one_out(n):
    w, g = make(n, 8, seed=n)
    for seed in range(20):
        mask = collision_mask(w, g, 1.0, pairing="dsmc", generator=seeded(seed))
        assert torch.equal(mask, mask.T) and not mask.diagonal().any()
        assert (mask.sum(1) <= 1).all()
        assert mask.sum() == 2 * (n // 2)  # coef 1, distinct rows: every candidate pair collides
        out = dsmc(w, g, 1.0, seed=seed)
        untouched = ~mask.any(1)
        assert untouched.sum() == n % 2
        assert torch.equal(out[untouched], g[untouched]), "the row that sits out must be unchanged"


def test_dsmc_mask_is_what_collides_and_the_count_is_a_tensor():
    w, g = make(40, 12, seed=21)
    for coef in (0.2, 0.5, 0.8):
        mask = collision_mask(w, g, coef, pairing="dsmc", generator=seeded(5), distance_scale=0.05)
        out, count = hard_collision_with_count(w, g, coef, generator=seeded(5), distance_scale=0.05, pairing="dsmc")
        assert isinstance(count, torch.Tensor) and count.dim() == 0 and count.dtype == torch.int64
        assert int(count) == int(mask.sum()) // 2
        changed = (out != g).any(1)
        assert torch.equal(changed, mask.any(1))
        fraction = accepted_pair_fraction(w, g, coef, pairing="dsmc", generator=seeded(5), distance_scale=0.05)
        assert fraction == int(count) / candidate_pairs(40, "dsmc") == int(count) / 20


@pytest.mark.parametrize("n,d", [(2, 64), (9, 16), (64, 384), (513, 3)])
def test_dsmc_conserves_momentum_energy_and_relative_speed_per_pair_and_in_total(n, d):
    w, g = make(n, d, seed=n)
    g = g * torch.linspace(0.1, 3.0, n)[:, None]  # rows of different sizes
    mask = collision_mask(w, g, 0.6, pairing="dsmc", generator=seeded(9), distance_scale=0.0)
    out = dsmc(w, g, 0.6, seed=9, distance_scale=0.0)
    assert mask.any() and (n < 9 or not mask.any(1).all()), "want accepted and rejected candidates"
    eps = torch.finfo(torch.float32).eps
    g64, out64 = g.double(), out.double()
    for i, j in torch.triu(mask, 1).nonzero().tolist():
        scale = g64[i].abs().max() + g64[j].abs().max()
        torch.testing.assert_close(out64[i] + out64[j], g64[i] + g64[j], rtol=0, atol=float(8 * eps * scale))
        energy = g64[i].square().sum() + g64[j].square().sum()
        torch.testing.assert_close(out64[i].square().sum() + out64[j].square().sum(), energy, rtol=16 * d ** 0.5 * eps,
                                   atol=0)
        torch.testing.assert_close((out64[i] - out64[j]).norm(), (g64[i] - g64[j]).norm(), rtol=16 * d ** 0.5 * eps,
                                   atol=0)
    # The layer's totals, to the same rounding: every coordinate's momentum, and the energy.
    bound = 8 * eps * (g64.abs() + out64.abs()).sum(0)
    assert ((out64.sum(0) - g64.sum(0)).abs() <= bound).all()
    torch.testing.assert_close(out64.square().sum(), g64.square().sum(), rtol=16 * d ** 0.5 * eps, atol=0)


@pytest.mark.parametrize("scale", [2.0, 0.37, 1024.0, 3e-6])
def test_dsmc_is_homogeneous_in_the_gradient(scale):
    w, g = make(12, 8, seed=22)
    a = dsmc(w, scale * g, 0.8, seed=4, distance_scale=0.1)
    b = scale * dsmc(w, g, 0.8, seed=4, distance_scale=0.1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * scale)


def test_dsmc_same_seed_same_result_and_draws_only_from_the_generator():
    w, g = make(11, 8, seed=23)
    torch.manual_seed(0)
    a = dsmc(w, g, 1.0, seed=1)
    global_state = torch.get_rng_state()
    torch.manual_seed(123)
    b = dsmc(w, g, 1.0, seed=1)
    c = dsmc(w, g, 1.0, seed=2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.manual_seed(0)
    dsmc(w, g, 1.0, seed=1)
    assert torch.equal(torch.get_rng_state(), global_state), "the global generator was drawn from"


def test_dsmc_random_direction_and_matching_statistics():
    """Over 4,000 seeds: the post-collision relative velocity of a pair is ‖g_i - g_j‖ times a uniform unit vector
    (mean 0, covariance I/D, each coordinate uniform on [-1, 1] in 3-D), and the matching is uniform."""
    trials, d = 4000, 3
    w, g = make(2, d, seed=24)
    speed = (g[0] - g[1]).double().norm()
    units = torch.stack([(lambda o: (o[0] - o[1]).double() / speed)(dsmc(w, g, 1.0, seed=s)) for s in range(trials)])
    torch.testing.assert_close(units.norm(dim=1), torch.ones(trials, dtype=torch.float64), rtol=1e-5, atol=0)
    assert (units.mean(0).abs() < 5 * (1 / d / trials) ** 0.5).all()
    covariance = units.T @ units / trials
    assert (covariance - torch.eye(d, dtype=torch.float64) / d).abs().max() < 5 * (0.1 / trials) ** 0.5
    # Archimedes: on the 2-sphere each coordinate of a uniform point is uniform on [-1, 1].
    counts = torch.histc(units[:, 2], bins=10, min=-1, max=1)
    assert (counts - trials / 10).abs().max() < 5 * (trials / 10 * 0.9) ** 0.5
    # Four rows have three perfect matchings; five rows: each row sits out a fifth of the time.
    w4, g4 = make(4, 2, seed=25)
    matchings = {}
    for s in range(trials // 4):
        mask = collision_mask(w4, g4, 1.0, pairing="dsmc", generator=seeded(s))
        partner = int(mask[0].nonzero())
        matchings[partner] = matchings.get(partner, 0) + 1
    assert sorted(matchings) == [1, 2, 3]
    expected = trials / 4 / 3
    assert all(abs(c - expected) < 5 * (expected * 2 / 3) ** 0.5 for c in matchings.values())
    w5, g5 = make(5, 2, seed=26)
    alone = torch.zeros(5)
    for s in range(trials // 4):
        alone += ~collision_mask(w5, g5, 1.0, pairing="dsmc", generator=seeded(s)).any(1)
    expected = trials / 4 / 5
    assert ((alone - expected).abs() < 5 * (expected * 0.8) ** 0.5).all()


def test_dsmc_acceptance_follows_coef_and_is_scale_invariant():
    w, g = make(200, 16, seed=27)
    fractions = [accepted_pair_fraction(w, g, c, pairing="dsmc", generator=seeded(0), distance_scale=0.05)
                 for c in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    for scale in (3.0, 2.0**-20, 1e6):
        assert torch.equal(collision_mask(w, g, 0.5, pairing="dsmc", generator=seeded(1)),
                           collision_mask(w, scale * g, 0.5, pairing="dsmc", generator=seeded(1)))


def test_dsmc_normalised_by_candidates_always_collides_its_fastest_candidate():
    w, g = make(7, 8, seed=28)
    for seed in range(10):
        # λ = 0: the fastest candidate's ratio is exactly 1 > 1 - coef for any coef > 0.
        assert collision_mask(w, g, 0.01, pairing="dsmc", generator=seeded(seed), distance_scale=0.0,
                              max_speed="candidates").sum() == 2
    assert not collision_mask(w, g, 0.01, pairing="dsmc", generator=seeded(0), distance_scale=0.0).any()


def test_bad_pairing_and_max_speed_are_value_errors():
    w, g = make()
    with pytest.raises(ValueError, match=r"pairing='pairs'.*'dsmc', 'all'"):
        hard_collision(w, g, 0.5, pairing="pairs")
    with pytest.raises(ValueError, match=r"max_speed='max'.*'all_pairs', 'candidates'"):
        collision_mask(w, g, 0.5, pairing="dsmc", max_speed="max")


# ---------------------------------------------------------------- no host synchronisation


def test_soft_and_dsmc_run_under_fake_tensor_mode_and_all_syncs_once():
    """FakeTensorMode refuses exactly what needs the host: .item(), bool(tensor), nonzero(), value-dependent shapes."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode

    gen = seeded(0)
    with FakeTensorMode():
        w, g = torch.randn(9, 16), torch.randn(9, 16)
        assert soft_collision(w, g, 0.3).shape == (9, 16)
        assert soft_collision(w, g, 0.3, include_self=True).shape == (9, 16)
        out, count = hard_collision_with_count(w, g, 0.3, generator=gen, pairing="dsmc", distance_scale=0.05)
        assert out.shape == (9, 16) and count.shape == ()
        assert collision_mask(w, g, 0.3, pairing="dsmc", generator=gen).shape == (9, 9)
        assert collision_mask(w, g, 0.3, pairing="all").shape == (9, 9)
        assert hard_collision(w, g, 0.3, generator=gen, pairing="dsmc", max_speed="candidates").shape == (9, 16)
        assert row_cosines(out, g).shape == (9,)
        with pytest.raises((DataDependentOutputException, DynamicOutputShapeException)):
            hard_collision(w, g, 0.3, generator=gen, pairing="all")  # its one sync: nonzero() lists the pairs


def test_soft_collision_compiles_with_fullgraph_and_matches_eager():
    torch._dynamo.reset()
    compiled = torch.compile(soft_collision, fullgraph=True)
    w, g = make(24, 16, seed=29)
    w[3] = 0  # a zero row, and a second call with a non-finite gradient: both branches are tensor-side
    torch.testing.assert_close(compiled(w, g, 0.3), soft_collision(w, g, 0.3), rtol=1e-5, atol=1e-6)
    g[2, 2] = float("nan")
    assert torch.equal(compiled(w, g, 0.3).isnan(), g.isnan())


# ---------------------------------------------------------------- numerics and edge cases


PAIRING_CASES = ["soft", "all", "dsmc"]


def collide(kind, w, g, coef=0.9, seed=0, **kwargs):
    if kind == "soft":
        return soft_collision(w, g, coef)
    return hard_collision(w, g, coef, generator=seeded(seed), pairing=kind, distance_scale=0.05, **kwargs)


@pytest.mark.parametrize("kind", PAIRING_CASES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["weight", "grad"])
def test_non_finite_weight_or_grad_leaves_the_gradient_unchanged(kind, bad, where):
    w, g = make(6, 5, seed=30)
    (w if where == "weight" else g)[3, 1] = bad
    out = collide(kind, w, g)
    assert torch.equal(out.isnan(), g.isnan()) and torch.equal(out[g.isfinite()], g[g.isfinite()])


@pytest.mark.parametrize("kind", PAIRING_CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_result_that_would_overflow_the_input_dtype_leaves_the_gradient_unchanged(kind, dtype):
    top = torch.finfo(dtype).max
    if kind == "soft":  # similar weights and gradients: every row is pushed by all 15 others, to ~-14 g_i
        w, g = make(16, 8, seed=31)
        w, g = 1 + 0.01 * w, 1 + 0.01 * g
        g = (g / g.abs().max() * top / 4).to(dtype)
    else:  # one pair of entries at 0.6 of the range; its energy allows entries up to 1.2 of it (about half the draws)
        w = 0.02 * make(2, 2, seed=31)[0]
        g = torch.tensor([[0.6, 0.6], [-0.6, 0.6]]).mul(top).to(dtype)
    outs = [collide(kind, w.to(dtype), g, coef=1.0, seed=s) for s in range(8)]
    for out in outs:
        assert out.dtype == dtype and torch.isfinite(out).all()
    assert any(torch.equal(out, g) for out in outs), "no draw overflowed: the test lost its point"
    small = (g.float() * 1e-3).to(dtype)  # the same collisions well inside the range do change the gradient
    assert not torch.equal(collide(kind, w.to(dtype), small, coef=1.0), small)


@pytest.mark.parametrize("kind", PAIRING_CASES)
@pytest.mark.parametrize("magnitude", [1e19, 1e30, 1e-30])
def test_fp32_gradients_far_from_one_give_finite_scaled_results(kind, magnitude):
    w, g = make(10, 8, seed=32)
    out = collide(kind, w, magnitude * g, seed=3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double() / magnitude, collide(kind, w, g, seed=3).double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["soft", "dsmc"])
def test_meta_tensors_give_a_shape_correct_meta_result(kind):
    w = torch.empty(7, 12, device="meta")
    out = collide(kind, w, torch.empty(7, 12, device="meta"))
    assert out.is_meta and out.shape == (7, 12)


def test_meta_tensors_with_all_pairing_are_a_clear_error():
    w = torch.empty(7, 12, device="meta")
    with pytest.raises(ValueError, match="pairing='all'.*meta device.*pairing='dsmc'"):
        hard_collision(w, w, 0.5, pairing="all")


@pytest.mark.parametrize("coef", [True, False, "0.5", torch.tensor(0.5), None, [0.5]])
def test_coef_must_be_a_real_number(coef):
    w, g = make()
    for fn in (soft_collision, hard_collision, collision_mask):
        with pytest.raises(ValueError, match="coef must be a real number"):
            fn(w, g, coef)


def test_momentum_is_conserved_to_the_measured_rounding_bounds():
    """N = 4096, D = 1, coef 1 (the README's figures, measured over 6 seeds): under "all" every row has 4095
    partners, rows grow ~2000-fold and the total drifts by up to 3.0e-5 of Σ|g_i| (1.4e-8 of Σ|g*_i|: the rounding
    of the result); under DSMC by at most 1.2e-9 of Σ|g_i|."""
    eps = torch.finfo(torch.float32).eps
    g = torch.randn(4096, 1, generator=seeded(100))
    w = 0.02 * torch.randn(4096, 1, generator=seeded(200))
    total, size = g.double().sum(), g.double().abs().sum()
    out = hard_collision(w, g, 1.0, generator=seeded(0), pairing="all").double()
    drift = float((out.sum() - total).abs())
    assert drift <= 5e-5 * size and drift <= eps * out.abs().sum()
    assert drift > 1e-6 * size, "Eq. 8's drift vanished: update the README's bound"
    drift = float((dsmc(w, g, 1.0).double().sum() - total).abs())
    assert drift <= eps / 32 * size


def test_row_cosines():
    old = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, 3.0]])
    new = torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1e30, 1e30]])
    torch.testing.assert_close(row_cosines(new, old), torch.tensor([-1.0, 2**-0.5, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize("pairing", ["dsmc", "all"])
def test_bounded_hard_collision_caps_each_row_and_dsmc_keeps_momentum(pairing):
    gen = torch.Generator().manual_seed(11)
    w = 0.02 * torch.randn(72, 384, generator=gen)
    g = torch.randn(72, 384, generator=gen) * torch.rand(72, 1, generator=gen).mul(3)
    for coef in (0.2, 0.9):
        paper = hard_collision(w, g, coef, generator=seeded(1), distance_scale=0.05, pairing=pairing)
        out = hard_collision(w, g, coef, generator=seeded(1), distance_scale=0.05, pairing=pairing, bounded=True)
        change = torch.linalg.vector_norm(out - g, dim=1)
        assert (change <= coef * torch.linalg.vector_norm(g, dim=1) * (1 + 1e-5) + 1e-6).all()
        assert row_cosines(out, g).min() >= math.sqrt(1 - coef**2) - 1e-5
        # it acts where the paper's collision does, and only there, scaled down
        assert torch.equal((out != g).any(dim=1), (paper != g).any(dim=1))
        if pairing == "dsmc":
            torch.testing.assert_close(out.sum(0), g.sum(0), rtol=0, atol=2e-4)  # momentum, pair by pair
            assert torch.linalg.vector_norm(out) <= torch.linalg.vector_norm(g) * (1 + 1e-6)  # energy is lost
