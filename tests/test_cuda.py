"""On a CUDA device: the collision ops and KO steps against the CPU, mixed precision, the fused AdamW, determinism,
host synchronisation, peak memory, and CUDA-graph capture of whole KO steps.

Marked ``cuda``: collected everywhere (``pytest --collect-only -m cuda`` lists them), skipped without a GPU.
``python benchmarks/gpu_check.py --device cuda`` runs them first. The CPU comparisons draw from CPU generators on
both devices (hard collision draws on its generator's device), so both see the same random numbers; fp32 results
then agree to CPU_TOLERANCE (gradients of unit scale, TF32 off), bf16 ones to bf16's own tolerance.
"""

import os

# Deterministic cuBLAS for the determinism test (read whenever cuBLAS checks, so setting it before any test is enough).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from ko_hf import (  # noqa: E402
    KOAdamW,
    KOSGD,
    collision_generator_seed,
    collision_mask,
    hard_collision,
    hard_collision_with_count,
    row_cosines,
    soft_collision,
)
from ko_hf.cuda_graphs import CapturedStep  # noqa: E402
from ko_hf.optim import CollisionMixin  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from memory_trace import allocated_peak, collision_ops, traced_peak  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
#: How close a CUDA result is to the CPU's (float32, TF32 off, gradients of unit scale).
CPU_TOLERANCE = dict(rtol=1e-4, atol=1e-5)
HARD = dict(collision="hard", collision_pairing="dsmc", collision_distance_scale=0.05)


@pytest.fixture(autouse=True)
def full_fp32_matmuls():
    """TF32 would round the Gram matrices to 10 mantissa bits; the comparisons are with the CPU's float32."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def data(n, d, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (0.02 * torch.randn(n, d, generator=gen)).to(dtype), torch.randn(n, d, generator=gen).to(dtype)


def cpu_generator(seed=3):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ the ops against the CPU


@pytest.mark.parametrize("n,d", [(7, 384), (64, 48), (300, 768)])
def test_collision_ops_on_cuda_equal_the_cpu(n, d):
    w, g = data(n, d)
    wc, gc = w.to(CUDA), g.to(CUDA)
    torch.testing.assert_close(soft_collision(wc, gc, 0.5).cpu(), soft_collision(w, g, 0.5), **CPU_TOLERANCE)
    # coef 1 accepts every candidate whose ratio is > 0, so rounding cannot flip an acceptance between the devices
    for pairing in ("dsmc", "all") if n <= 64 else ("dsmc",):
        kwargs = dict(pairing=pairing, distance_scale=0.05)
        out, accepted = hard_collision_with_count(wc, gc, 1.0, generator=cpu_generator(), **kwargs)
        ref, ref_accepted = hard_collision_with_count(w, g, 1.0, generator=cpu_generator(), **kwargs)
        assert out.device == gc.device and int(accepted) == int(ref_accepted) > 0
        torch.testing.assert_close(out.cpu(), ref, **CPU_TOLERANCE)
        assert torch.equal(collision_mask(wc, gc, 1.0, generator=cpu_generator(), **kwargs).cpu(),
                           collision_mask(w, g, 1.0, generator=cpu_generator(), **kwargs))
    torch.testing.assert_close(row_cosines(gc, wc).cpu(), row_cosines(g, w), **CPU_TOLERANCE)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_ops_return_their_dtype_and_equal_the_cpu(dtype):
    w, g = data(64, 96, dtype=dtype)
    for op in (lambda w, g: soft_collision(w, g, 0.5),
               lambda w, g: hard_collision(w, g, 1.0, generator=cpu_generator(), pairing="dsmc")):
        out = op(w.to(CUDA), g.to(CUDA))
        assert out.dtype == dtype
        torch.testing.assert_close(out.cpu(), op(w, g))  # that dtype's own tolerance


# ------------------------------------------------------------------ KO steps


def mlp(seed=0, device=CUDA):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(24, 64), torch.nn.Tanh(), torch.nn.Linear(64, 48), torch.nn.Tanh(),
                                torch.nn.Linear(48, 7))
    return model.to(device)


def groups(model, collision, **extra):
    flagged = HARD if collision == "hard" else {"collision": "soft"}
    return [{"params": [model[0].bias, model[2].bias, model[4].weight, model[4].bias]},
            {"params": [model[0].weight], **flagged, "coll_coef": 0.9, "collision_names": ["first"], **extra},
            {"params": [model[2].weight], **flagged, "coll_coef": 0.9, "collision_names": ["second"], **extra}]


def batch(device=CUDA, seed=1, n=32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 24, generator=gen).to(device), (torch.arange(n) % 7).to(device)


def backward(model, inputs, set_to_none=True, autocast_dtype=None, scaler=None):
    model.zero_grad(set_to_none=set_to_none)
    x, y = inputs
    with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    (scaler.scale(loss) if scaler else loss).backward()
    return loss


def with_cpu_draws(optimizer):
    """The optimizer's hard collision draws from CPU generators with its usual seeds (what the CPU run draws)."""
    optimizer.collision_generator = lambda group, index, device: CollisionMixin.collision_generator(
        optimizer, group, index, torch.device("cpu"))
    return optimizer


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_ko_step_on_cuda_equals_the_cpu(collision):
    runs = []
    for device in (torch.device("cpu"), CUDA):
        model = mlp(device=device)
        optimizer = with_cpu_draws(KOSGD(groups(model, collision), lr=0.1, momentum=0.9))
        for _ in range(3):
            backward(model, batch(device))
            optimizer.step()
        runs.append(model)
    for cpu_param, cuda_param in zip(runs[0].parameters(), runs[1].parameters()):
        torch.testing.assert_close(cuda_param.cpu(), cpu_param, **CPU_TOLERANCE)


def expected_collided(optimizer, index, param, grad):
    """What the optimizer's step feeds its base optimizer for the flagged group ``index``."""
    group = optimizer.param_groups[index]
    if group["collision"] == "soft":
        return soft_collision(param.detach(), grad, group["coll_coef"])
    seed = collision_generator_seed(group["collision_seed"], group["collision_step"], index)
    return hard_collision(param.detach(), grad, group["coll_coef"], pairing="dsmc",
                          distance_scale=group["collision_distance_scale"],
                          generator=torch.Generator(device=param.device).manual_seed(seed))


@pytest.mark.parametrize("collision", ["soft", "hard"])
@pytest.mark.parametrize("precision", ["bf16 autocast", "fp16 autocast + GradScaler"])
def test_mixed_precision_step_collides_the_unscaled_gradient(collision, precision):
    """The base optimizer gets exactly the collision of the (unscaled) float32 gradient, drawn from the default
    CUDA generator path."""
    model = mlp()
    optimizer = KOSGD(groups(model, collision), lr=0.1)
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 12) if dtype == torch.float16 else None
    backward(model, batch(), autocast_dtype=dtype, scaler=scaler)
    targets = [(index, group["params"][0]) for index, group in enumerate(optimizer.param_groups) if index]
    scale = scaler.get_scale() if scaler else 1.0
    expected = [(p, p.detach() - 0.1 * expected_collided(optimizer, i, p, p.grad.float() / scale)) for i, p in targets]
    if scaler:
        scaler.step(optimizer)
        scaler.update()
        assert scaler.get_scale() == 2.0 ** 12  # no inf: the step was taken
    else:
        optimizer.step()
    for param, want in expected:
        assert param.grad.dtype == torch.float32
        torch.testing.assert_close(param.detach(), want)


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_fused_adamw_with_collisions_equals_the_foreach_one(collision):
    runs = []
    for fused in (True, False):
        model = mlp()
        optimizer = KOAdamW(groups(model, collision), lr=1e-2, weight_decay=0.01, fused=fused, foreach=not fused)
        for _ in range(3):
            backward(model, batch())
            optimizer.step()
        runs.append(model)
    for a, b in zip(*(model.parameters() for model in runs)):
        torch.testing.assert_close(a, b)


def test_trainer_with_adamw_torch_fused_and_bf16_collides_on_cuda(tmp_path):
    from tiny import tiny_bert, tiny_dataset

    from ko_hf import KOTrainer, KOTrainingArguments

    args = KOTrainingArguments(output_dir=str(tmp_path / "out"), optim="adamw_torch_fused", bf16=True,
                               collision="hard", coll_coef=1.0, per_device_train_batch_size=8, max_steps=4,
                               logging_steps=2, save_strategy="no", report_to="none", disable_tqdm=True, seed=7)
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset())
    trainer.train()
    optimizer = trainer.optimizer
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    assert isinstance(optimizer, CollisionMixin) and all(group["fused"] for group in optimizer.param_groups)
    assert next(trainer.model.parameters()).device.type == "cuda"
    logged = [entry for entry in trainer.state.log_history if "ko/classifier.weight/accepted_pair_fraction" in entry]
    assert len(logged) == 2 and all(entry["ko/classifier.weight/accepted_pair_fraction"] > 0 for entry in logged)


@pytest.mark.parametrize("collision,pairing", [("soft", "dsmc"), ("hard", "dsmc"), ("hard", "all")])
def test_two_identical_cuda_runs_are_bitwise_equal(collision, pairing):
    """DSMC writes each row once (index_copy_); Eq. 8's "all" sums with index_add_, deterministic only under
    torch.use_deterministic_algorithms, as the README says (here around the optimizer step: CUDA's NLLLoss has no
    deterministic kernel, so the loss is a mean squared error)."""
    x, y = batch()
    target = torch.nn.functional.one_hot(y, 7).float()
    runs = []
    for _ in range(2):
        model = mlp()
        optimizer = KOAdamW(groups(model, collision, collision_pairing=pairing), lr=1e-2)
        for _ in range(4):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), target).backward()
            previous = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(pairing == "all")
            try:
                optimizer.step()
            finally:
                torch.use_deterministic_algorithms(previous)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_apply_collisions_never_synchronises_with_the_host(collision):
    model = mlp()
    optimizer = KOAdamW(groups(model, collision), lr=1e-2)
    for _ in range(2):
        backward(model, batch())
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            optimizer.apply_collisions()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert optimizer.pop_collision_stats()["first"]["grad_change_ratio"] > 0  # read here, at a logging step


def test_sync_debug_mode_catches_the_all_pairing_sync():
    model = mlp()
    optimizer = KOSGD(groups(model, "hard", collision_pairing="all"), lr=0.1)
    backward(model, batch())
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            optimizer.apply_collisions()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ------------------------------------------------------------------ peak memory


def test_peak_memory_of_dsmc_and_soft_at_4096_is_what_their_allocations_predict():
    """At N = D = 4096 both stay a few N·D float32 (64 MiB each), as the allocations traced on the meta device say:
    no N x N x D tensor and no stray copy (soft needs two N x N cosine matrices, dsmc its Gram block)."""
    n = d = 4096
    nd = n * d * 4
    w, g = (t.to(CUDA) for t in data(n, d))
    for name, fn in collision_ops().items():
        predicted, peak = traced_peak(fn, n, d), allocated_peak(fn, w, g)
        assert peak <= 1.25 * predicted + 32 * 2**20, f"{name}: {peak / 2**20:.0f} MiB > {predicted / 2**20:.0f}"
        assert peak <= 8 * nd, f"{name}: {peak / nd:.1f} x N·D"


# ------------------------------------------------------------------ CUDA graphs


def test_a_replay_draws_with_the_seed_set_before_it():
    """The graph-safe RNG behaviour CapturedStep builds on: a registered generator, reseeded on the host, gives a
    replay the draws of a fresh generator with that seed."""
    from ko_hf.cuda_graphs import replays_follow_reseeding

    assert replays_follow_reseeding(CUDA)


def capturable_adamw(model, collision, fused, **extra):
    return KOAdamW(groups(model, collision, **extra), lr=torch.tensor(1e-2, device=CUDA), weight_decay=0.01,
                   capturable=True, fused=fused)


def static_backward(model, inputs):
    return lambda: backward(model, inputs, set_to_none=False)


def side_by_side(eager_model, eager, model, step, seeds, after_each=None):
    """A training step of the eager run and of the captured one per seed, on the same batch."""
    for seed in seeds:
        inputs = batch(seed=seed)
        static_backward(eager_model, inputs)()
        static_backward(model, inputs)()
        eager.step()
        step()
        if after_each:
            after_each()


@pytest.mark.filterwarnings("ignore:This instance was constructed with capturable=True")
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_captured_ko_step_replays_equal_the_eager_steps(collision, fused):
    """Capture once, replay: weights, AdamW state, step counters and statistics as the eager run's, the random
    draws included (a frozen seed would give other vectors after the first replay)."""
    eager_model, model = mlp(), mlp()
    eager, optimizer = capturable_adamw(eager_model, collision, fused), capturable_adamw(model, collision, fused)
    step = CapturedStep(optimizer, warmup=2)
    side_by_side(eager_model, eager, model, step, range(10, 16))
    assert step.captured
    for a, b in zip(eager_model.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [g["collision_step"] for g in optimizer.param_groups[1:]] == [6, 6]
    assert int(optimizer.state[model[0].weight]["step"]) == 6
    mine, theirs = optimizer.pop_collision_stats(), eager.pop_collision_stats()
    assert mine.keys() == theirs.keys()
    for name, values in theirs.items():
        assert mine[name] == pytest.approx(values, rel=1e-4, abs=1e-6), name


@pytest.mark.filterwarnings("ignore:This instance was constructed with capturable=True")
def test_captured_whole_training_step_with_dropout_equals_eager():
    def training_step(model, optimizer, inputs):
        def run():
            loss = backward(model, inputs, set_to_none=False)
            optimizer.step()
            return loss.detach()
        return run

    eager_model, model = mlp(), mlp()
    eager, optimizer = capturable_adamw(eager_model, "hard", True), capturable_adamw(model, "hard", True)
    for net in (eager_model, model):
        net.insert(1, torch.nn.Dropout(0.2))
    static = batch()
    eager_step = training_step(eager_model, eager, static)
    step = CapturedStep(optimizer, training_step(model, optimizer, static), warmup=2)
    losses = []
    for index in range(5):
        fresh = batch(seed=20 + index)
        for tensor, value in zip(static, fresh):
            tensor.copy_(value)
        torch.cuda.manual_seed(100 + index)
        eager_loss = eager_step()
        torch.cuda.manual_seed(100 + index)
        losses.append((eager_loss, step().clone()))
    for eager_loss, loss in losses:
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(eager_model.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:This instance was constructed with capturable=True")
def test_captured_steps_resume_as_the_uninterrupted_run_and_follow_a_tensor_lr_schedule():
    eager_model, model = mlp(), mlp()
    eager, optimizer = capturable_adamw(eager_model, "hard", True), capturable_adamw(model, "hard", True)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s)) for opt in (eager, optimizer)]
    step = CapturedStep(optimizer, warmup=1)
    side_by_side(eager_model, eager, model, step, range(30, 34),
                 after_each=lambda: [schedule.step() for schedule in schedules])
    resumed_model = mlp(seed=5)
    resumed_model.load_state_dict(model.state_dict())
    resumed = capturable_adamw(resumed_model, "hard", True)
    resumed.load_state_dict(optimizer.state_dict())
    for index in range(2):
        inputs = batch(seed=40 + index)
        static_backward(eager_model, inputs)()
        static_backward(resumed_model, inputs)()
        eager.step()
        resumed.step()
    for a, b in zip(eager_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_capture_of_an_uncapturable_optimizer_is_refused_before_any_kernel():
    model = mlp()
    optimizer = KOAdamW(groups(model, "hard"), lr=1e-2)
    step = CapturedStep(optimizer, warmup=1)
    backward(model, batch(), set_to_none=False)
    step()
    with pytest.raises(ValueError, match="capturable=False"):
        step()
