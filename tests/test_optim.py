import io

import pytest
import torch

from ko_hf import KOAdamW, KOSGD, collision_generator_seed, hard_collision, ko_optimizer_class, soft_collision


def model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    x, y = torch.randn(32, 6), torch.randint(5, (32,))
    return model, x, y


def groups(model, collision, coef=0.5, **extra):
    head = model[2]
    return [
        {"params": [model[0].weight, model[0].bias, head.bias]},
        {"params": [head.weight], "collision": collision, "coll_coef": coef, "collision_names": ["head"], **extra},
    ]


def backward(model, x, y):
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


def test_is_a_real_subclass_of_the_base_optimizer():
    model, *_ = model_and_batch()
    opt = KOAdamW(groups(model, "soft"), lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW) and isinstance(opt, torch.optim.Optimizer)
    assert ko_optimizer_class(torch.optim.AdamW) is KOAdamW
    assert isinstance(KOSGD(groups(model, "hard"), lr=0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="torch.optim.Optimizer subclass"):
        ko_optimizer_class(dict)
    scheduler = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=4)
    opt.step()  # no gradients yet: a no-op, but the scheduler wants a step first
    scheduler.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3 * 0.625)


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_step_applies_the_collision_then_the_base_update(collision):
    model, x, y = model_and_batch()
    reference, _, _ = model_and_batch()
    opt = KOSGD(groups(model, collision, coef=1.0), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    backward(model, x, y)
    backward(reference, x, y)
    head, grad = model[2].weight.detach().clone(), model[2].weight.grad.clone()
    # a group that names the type means the documented defaults: the bounded form; hard's DSMC pairing, λ 0.05
    # and TrainingArguments' default seed 42
    if collision == "soft":
        expected_grad = soft_collision(head, grad, 1.0, bounded=True)
    else:
        seed = collision_generator_seed(42, 0, 1)
        expected_grad = hard_collision(head, grad, 1.0, generator=torch.Generator().manual_seed(seed),
                                       distance_scale=0.05, pairing="dsmc", bounded=True)
    opt.step()
    ref_opt.step()
    torch.testing.assert_close(model[2].weight, head - 0.1 * expected_grad)
    torch.testing.assert_close(model[0].weight, reference[0].weight, rtol=0, atol=0)
    assert not torch.allclose(model[2].weight, reference[2].weight)


def test_closure_backward_runs_before_the_collision():
    model, x, y = model_and_batch()
    twin, _, _ = model_and_batch()
    opt = KOAdamW(groups(model, "soft"), lr=1e-2)
    twin_opt = KOAdamW(groups(twin, "soft"), lr=1e-2)
    loss = opt.step(lambda: backward(model, x, y))
    backward(twin, x, y)
    twin_opt.step()
    assert torch.is_tensor(loss)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_hard_draws_differ_per_step_and_state_round_trips_with_weights_only():
    model, x, y = model_and_batch()
    opt = KOAdamW(groups(model, "hard", coef=1.0, collision_seed=5), lr=1e-2)
    for _ in range(3):
        backward(model, x, y)
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["param_groups"][1]["collision_step"] == 3
    # A fresh optimizer loaded from the state continues exactly like the original one.
    clone, _, _ = model_and_batch()
    clone.load_state_dict(model.state_dict())
    resumed = KOAdamW(groups(clone, "hard", coef=1.0, collision_seed=5), lr=1e-2)
    resumed.load_state_dict(state)
    for net, optimizer in ((model, opt), (clone, resumed)):
        backward(net, x, y)
        optimizer.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_generator_seed_mixes_seed_step_and_group():
    seeds = {collision_generator_seed(s, t, g) for s in range(3) for t in range(50) for g in range(3)}
    assert len(seeds) == 3 * 50 * 3
    assert all(0 <= s < 2**63 for s in seeds)
    assert collision_generator_seed(1, 2, 0) == collision_generator_seed(1, 2, 0)


def test_bad_group_settings_are_rejected():
    model, *_ = model_and_batch()
    with pytest.raises(ValueError, match="'elastic' is not a collision type"):
        KOAdamW(groups(model, "elastic"), lr=1e-3)
    with pytest.raises(ValueError, match=r"coll_coef=2.*\[0, 1\]"):
        KOAdamW(groups(model, "soft", coef=2), lr=1e-3)
    with pytest.raises(ValueError, match="neurons as rows"):
        KOAdamW([{"params": [model[2].bias], "collision": "soft", "coll_coef": 0.1}], lr=1e-3)
    with pytest.raises(ValueError, match="one name per parameter"):
        KOAdamW([{"params": [model[2].weight], "collision": "soft", "collision_names": ["a", "b"]}], lr=1e-3)


def test_convolution_kernels_collide_as_flattened_rows():
    conv = torch.nn.Conv2d(3, 8, 3)
    opt = KOSGD([{"params": [conv.weight], "collision": "soft", "coll_coef": 0.5}, {"params": [conv.bias]}], lr=0.1)
    conv(torch.randn(2, 3, 6, 6)).square().mean().backward()
    grad = conv.weight.grad.clone()
    weight = conv.weight.detach().clone()
    opt.step()
    expected = soft_collision(weight.reshape(8, -1), grad.reshape(8, -1), 0.5, bounded=True).reshape_as(grad)
    torch.testing.assert_close(conv.weight, weight - 0.1 * expected)


def test_collision_stats_are_kept_until_popped():
    model, x, y = model_and_batch()
    opt = KOAdamW(groups(model, "hard", coef=1.0), lr=1e-3)
    for _ in range(2):
        backward(model, x, y)
        opt.step()
    stats = opt.pop_collision_stats()
    assert stats["head"]["accepted_pair_fraction"] == 1.0 and stats["head"]["pairs"] == 2 * (5 // 2)  # DSMC
    assert stats["head"]["grad_change_ratio"] > 0
    assert opt.pop_collision_stats() == {}


# ------------------------------------------------------------------ pairing, layouts, host synchronisation


def test_pairing_is_a_validated_group_key_and_saved_groups_without_it_pair_as_all():
    model, x, y = model_and_batch()
    with pytest.raises(ValueError, match=r"collision_pairing='pairs' is not a pairing; valid: dsmc, all"):
        KOAdamW(groups(model, "hard", collision_pairing="pairs"), lr=1e-3)
    with pytest.raises(ValueError, match=r"coll_coef=True"):
        KOAdamW(groups(model, "hard", coef=True), lr=1e-3)
    assert KOAdamW(groups(model, "hard"), lr=1e-3).param_groups[1]["collision_pairing"] == "dsmc"
    # A checkpoint of ko-hf 0.1 has no collision_pairing: it keeps colliding with Eq. 8's all pairs.
    opt = KOSGD(groups(model, "hard", coef=1.0, collision_pairing="dsmc"), lr=0.1)
    state = opt.state_dict()
    for group in state["param_groups"]:  # what 0.1 saved: none of the keys added since
        for key in ("collision_pairing", "collision_form", "ko_hf_defaults"):
            group.pop(key, None)
    opt.load_state_dict(state)
    assert opt.param_groups[1]["collision_pairing"] == "all" and opt.param_groups[1]["ko_hf_defaults"] == "0.1"
    assert_first_step_collides_head_as(opt, model, x, y, "all", bounded=False)  # 0.1 had only the paper's form


def assert_first_step_collides_head_as(opt, model, x, y, pairing, bounded=True):
    backward(model, x, y)
    head, grad = model[2].weight.detach().clone(), model[2].weight.grad.clone()
    opt.apply_collisions()
    seed = collision_generator_seed(42, 0, 1)  # TrainingArguments' default seed
    expected = hard_collision(head, grad, 1.0, generator=torch.Generator().manual_seed(seed), pairing=pairing,
                              distance_scale=0.05, bounded=bounded)
    assert torch.equal(model[2].weight.grad, expected)


def test_dsmc_group_collides_with_dsmc_and_counts_candidate_pairs():
    model, x, y = model_and_batch()
    opt = KOSGD(groups(model, "hard", coef=1.0, collision_pairing="dsmc"), lr=0.1)
    assert_first_step_collides_head_as(opt, model, x, y, "dsmc")
    stats = opt.pop_collision_stats()["head"]
    assert stats["pairs"] == 5 // 2 and stats["accepted_pairs"] == 2 and stats["accepted_pair_fraction"] == 1.0
    assert -1 <= stats["grad_cosine_min"] <= stats["grad_cosine"] < 1


def conv_with_grad(memory_format):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=memory_format)
    conv(torch.randn(2, 3, 6, 6).to(memory_format=memory_format)).square().mean().backward()
    return conv


@pytest.mark.parametrize("collision,extra", [("soft", {}), ("hard", {"collision_pairing": "dsmc"}),
                                             ("hard", {"collision_pairing": "all"})])
def test_collisions_are_written_back_into_channels_last_kernels(collision, extra):
    conv = conv_with_grad(torch.channels_last)
    assert conv.weight.grad.is_contiguous(memory_format=torch.channels_last) and not conv.weight.grad.is_contiguous()
    opt = KOSGD([{"params": [conv.weight], "collision": collision, "coll_coef": 1.0, "collision_names": ["conv"],
                  **extra}], lr=0.1)
    before = conv.weight.grad.clone()
    rows = (conv.weight.detach().reshape(8, -1), before.reshape(8, -1))
    if collision == "soft":
        expected = soft_collision(*rows, 1.0, bounded=True)
    else:
        generator = torch.Generator().manual_seed(collision_generator_seed(42, 0, 0))
        expected = hard_collision(*rows, 1.0, generator=generator, pairing=extra["collision_pairing"],
                                  distance_scale=0.05, bounded=True)
    opt.apply_collisions()
    assert not torch.equal(conv.weight.grad, before), "the collision was computed but never written back"
    torch.testing.assert_close(conv.weight.grad, expected.reshape_as(before), rtol=0, atol=0)
    assert opt.pop_collision_stats()["conv"]["grad_change_ratio"] > 0


def test_collisions_are_written_back_into_non_contiguous_gradients():
    linear = torch.nn.Linear(6, 5)
    linear.weight.grad = torch.randn(6, 5).t()  # a transposed view
    conv = torch.nn.Conv2d(2, 4, 3)
    conv.weight.grad = torch.randn(3, 3, 2, 4).permute(3, 2, 0, 1)  # [4, 2, 3, 3], no flattened view
    assert not linear.weight.grad.is_contiguous() and not conv.weight.grad.is_contiguous()
    opt = KOSGD([{"params": [linear.weight, conv.weight], "collision": "soft", "coll_coef": 1.0}], lr=0.1)
    before = [p.grad.clone() for p in (linear.weight, conv.weight)]
    opt.apply_collisions()
    for param, old in zip((linear.weight, conv.weight), before):
        expected = soft_collision(param.detach().reshape(param.shape[0], -1), old.reshape(old.shape[0], -1), 1.0,
                                  bounded=True)
        torch.testing.assert_close(param.grad, expected.reshape_as(old), rtol=0, atol=0)


def _fake_step(collision, pairing, base):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        head, conv = torch.nn.Linear(16, 7), torch.nn.Conv2d(3, 8, 3)
        (head(torch.randn(4, 16)).square().mean() + conv(torch.randn(2, 3, 6, 6)).square().mean()).backward()
        opt = ko_optimizer_class(base)(
            [{"params": [head.bias, conv.bias]},
             {"params": [head.weight, conv.weight], "collision": collision, "coll_coef": 0.5,
              "collision_pairing": pairing, "collision_distance_scale": 0.05, "collision_names": ["head", "conv"]}],
            lr=1e-3)
        opt.guard_window = None  # the guard rail reads the device on purpose (test_guard_reads_the_device_...)
        for _ in range(2):
            opt.step()
        return opt


@pytest.mark.parametrize("collision,pairing", [("soft", "all"), ("hard", "dsmc")])
@pytest.mark.parametrize("base", [torch.optim.AdamW, torch.optim.SGD])
def test_optimizer_step_needs_no_host_synchronisation(collision, pairing, base):
    """FakeTensorMode has no data: .item(), bool(tensor), nonzero() and value-dependent shapes fail under it. A whole
    KO step (collision, statistics, the base update) runs there, so it adds no host sync to the base optimizer's."""
    opt = _fake_step(collision, pairing, base)
    stats = opt.collision_stats["head"]
    assert stats["steps"] == 2
    for key in ("grad_change_ratio", "grad_cosine", "grad_cosine_min") + (("accepted_pairs",) if collision == "hard"
                                                                         else ()):
        assert isinstance(stats[key], torch.Tensor), f"{key} left the device"


def test_all_pairing_step_synchronises_where_its_docstring_says():
    from torch._subclasses.fake_tensor import DynamicOutputShapeException

    with pytest.raises(DynamicOutputShapeException):
        _fake_step("hard", "all", torch.optim.SGD)


@pytest.mark.parametrize("collision,pairing", [("soft", "all"), ("hard", "dsmc")])
def test_apply_collisions_never_reads_a_tensor_on_the_host(monkeypatch, collision, pairing):
    model, x, y = model_and_batch()
    opt = KOAdamW(groups(model, collision, coef=0.9, collision_pairing=pairing), lr=1e-3)

    def forbidden(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} during the collision step")
        return read

    for _ in range(3):
        backward(model, x, y)
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy"):
                patch.setattr(torch.Tensor, name, forbidden(name))
            opt.apply_collisions()
    stats = opt.pop_collision_stats()["head"]  # read here, at a logging step
    assert stats["grad_change_ratio"] > 0 and -1 <= stats["grad_cosine_min"] <= stats["grad_cosine"] <= 1


@pytest.mark.parametrize("base", [KOSGD, KOAdamW])
@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_a_step_on_the_meta_device_gives_meta_results(base, collision):
    """Meta parameters (shape-only dry runs) have no generator and no values: the step runs, nothing is read."""
    weight = torch.nn.Parameter(torch.empty(5, 4, device="meta"))
    weight.grad = torch.empty(5, 4, device="meta")
    base([{"params": [weight], "collision": collision, "coll_coef": 0.5, "collision_pairing": "dsmc"}], lr=0.1).step()
    assert weight.is_meta
    with pytest.raises(ValueError, match="pairing='all'.*meta device.*use pairing='dsmc'"):
        base([{"params": [weight], "collision": "hard", "coll_coef": 0.5, "collision_pairing": "all"}], lr=0.1).step()
