"""CapturedStep's bookkeeping, rehearsed on the CPU (tests/test_cuda.py captures real CUDA graphs).

RehearsalBackend runs what a CUDA graph would: the capture keeps the step, and every replay runs it again with the
host state frozen as captured (counters as they were, no reseeding inside the step). Each test holds a rehearsed
run to the plain eager run; under FakeTensorMode, which refuses host reads of tensor values as a capture does, the
whole captured path runs without one.
"""

import copy
import io

import pytest
import torch

from ko_hf import KOAdamW, KOSGD
from ko_hf.cuda_graphs import CapturedStep, RehearsalBackend, check_capturable_base, check_capturable_groups

HEAD_GROUPS = ({"collision": "hard", "collision_pairing": "dsmc"}, {"collision": "soft"})


def model_and_optimizer(kind, collision, seed=0, **optimizer_kwargs):
    """An MLP whose two hidden layers are each a flagged group (two generators under hard collision)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 10), torch.nn.Tanh(),
                                torch.nn.Linear(10, 5))
    flagged = {"collision": collision, "coll_coef": 0.9, "collision_distance_scale": 0.05,
               **({"collision_pairing": "dsmc"} if collision == "hard" else {})}
    groups = [{"params": [model[0].bias, model[2].bias, model[4].weight, model[4].bias]},
              {"params": [model[0].weight], **flagged, "collision_names": ["first"]},
              {"params": [model[2].weight], **flagged, "collision_seed": 7, "collision_names": ["second"]}]
    if kind == "adamw":
        return model, KOAdamW(groups, lr=0.05, weight_decay=0.01, fused=True, **optimizer_kwargs)
    return model, KOSGD(groups, lr=0.1, momentum=0.9, **optimizer_kwargs)


X, Y = torch.randn(24, 6, generator=torch.Generator().manual_seed(1)), torch.arange(24) % 5


def backward(model, optimizer):
    optimizer.zero_grad(set_to_none=False)
    torch.nn.functional.cross_entropy(model(X), Y).backward()


def assert_same_run(model, optimizer, other_model, other_optimizer):
    for a, b in zip(model.parameters(), other_model.parameters()):
        assert torch.equal(a, b)
    mine, theirs = optimizer.state_dict(), other_optimizer.state_dict()
    assert mine["param_groups"] == theirs["param_groups"]  # the step counters included
    for index, state in mine["state"].items():
        for key, value in state.items():
            assert torch.equal(value, theirs["state"][index][key]), key


def side_by_side(eager_model, eager, model, step, steps, after_each=None):
    """``steps`` training steps of the eager run and of the captured one, on the same batch."""
    for _ in range(steps):
        backward(eager_model, eager)
        backward(model, step.optimizer)
        eager.step()
        step()
        if after_each:
            after_each()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
@pytest.mark.parametrize("collision", ["hard", "soft"])
def test_rehearsed_capture_replays_what_eager_steps_compute(kind, collision):
    eager_model, eager = model_and_optimizer(kind, collision)
    model, optimizer = model_and_optimizer(kind, collision)
    step = CapturedStep(optimizer, warmup=2, backend=RehearsalBackend())
    side_by_side(eager_model, eager, model, step, 6,
                 after_each=lambda: assert_same_run(eager_model, eager, model, optimizer))
    assert step.captured and optimizer.param_groups[1]["collision_step"] == 6
    assert optimizer.pop_collision_stats() == eager.pop_collision_stats()  # captured steps are counted too


def test_a_frozen_seed_would_be_caught():
    """The rehearsal is sharp enough: with the generators left unseeded before a replay (the Python seed frozen at the
    capture), the hard-collision run drifts from the eager one."""
    eager_model, eager = model_and_optimizer("sgd", "hard")
    model, optimizer = model_and_optimizer("sgd", "hard")
    step = CapturedStep(optimizer, warmup=1, backend=RehearsalBackend())
    step.generators.reseed = lambda index=None: None
    side_by_side(eager_model, eager, model, step, 4)
    assert not torch.equal(eager_model[0].weight, model[0].weight)


def test_whole_training_step_with_dropout_is_rehearsed():
    def training_step(model, optimizer):
        def run():
            backward(model, optimizer)
            optimizer.step()
        return run

    eager_model, eager = model_and_optimizer("adamw", "hard")
    model, optimizer = model_and_optimizer("adamw", "hard")
    for net in (eager_model, model):
        net.insert(1, torch.nn.Dropout(0.3))
    eager_step, step = training_step(eager_model, eager), CapturedStep(optimizer, training_step(model, optimizer),
                                                                       warmup=2, backend=RehearsalBackend())
    for index in range(5):
        torch.manual_seed(100 + index)
        eager_step()
        torch.manual_seed(100 + index)
        step()
    assert_same_run(eager_model, eager, model, optimizer)


def test_captured_steps_resume_as_the_uninterrupted_run():
    eager_model, eager = model_and_optimizer("adamw", "hard")
    model, optimizer = model_and_optimizer("adamw", "hard")
    step = CapturedStep(optimizer, warmup=1, backend=RehearsalBackend())
    side_by_side(eager_model, eager, model, step, 4)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model, resumed = model_and_optimizer("adamw", "hard", seed=3)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optimizer"])
    for _ in range(2):
        backward(eager_model, eager)
        backward(resumed_model, resumed)
        eager.step()
        resumed.step()
    assert_same_run(eager_model, eager, resumed_model, resumed)


def test_statistics_false_leaves_captured_steps_out():
    model, optimizer = model_and_optimizer("sgd", "hard")
    step = CapturedStep(optimizer, warmup=2, statistics=False, backend=RehearsalBackend())
    for _ in range(5):
        backward(model, optimizer)
        step()
    stats = optimizer.pop_collision_stats()
    assert stats["first"]["pairs"] == 2 * (12 // 2)  # the two eager steps only
    assert optimizer.param_groups[1]["collision_step"] == 5


def _fake_captured_run(kind, collision, fn=None):
    """warm-up, capture and replays, all on fake tensors: a host read of a tensor value raises."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        model, optimizer = model_and_optimizer(kind, collision)
        optimizer.guard_window = None  # the guard rail reads the device on purpose, after the first eager step
        x, y = torch.randn(24, 6), torch.arange(24) % 5

        def training_step():
            optimizer.zero_grad(set_to_none=False)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return fn(loss) if fn else loss

        step = CapturedStep(optimizer, training_step, warmup=1, backend=RehearsalBackend())
        for _ in range(3):
            step()
    return optimizer


@pytest.mark.parametrize("kind,collision", [("adamw", "hard"), ("sgd", "hard"), ("adamw", "soft")])
def test_captured_step_needs_no_host_synchronisation(kind, collision):
    optimizer = _fake_captured_run(kind, collision)
    assert optimizer.param_groups[1]["collision_step"] == 3
    assert isinstance(optimizer.collision_stats["first"]["grad_cosine"], torch.Tensor)


def test_a_host_read_in_the_step_is_caught_under_fake_tensors():
    from torch._subclasses.fake_tensor import DataDependentOutputException

    with pytest.raises(DataDependentOutputException):
        _fake_captured_run("sgd", "soft", fn=lambda loss: float(loss.detach()))


def test_what_a_replay_cannot_follow_is_refused():
    model, optimizer = model_and_optimizer("sgd", "hard")
    step = CapturedStep(optimizer, warmup=1, backend=RehearsalBackend())
    for _ in range(2):
        backward(model, optimizer)
        step()
    optimizer.param_groups[0]["lr"] = 0.05  # what an LR scheduler does to a float lr
    with pytest.raises(RuntimeError, match=r"param group 0's 'lr' \(0.1 -> 0.05\) changed since the step was "
                                           r"captured.*tensor lr"):
        step()
    optimizer.param_groups[0]["lr"] = 0.1
    optimizer.zero_grad(set_to_none=True)
    backward(model, optimizer)
    with pytest.raises(RuntimeError, match=r"not the tensors the step was captured with.*set_to_none=False"):
        step()


def test_a_tensor_lr_schedule_reaches_the_replays():
    def with_schedule(model, optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))

    eager_model, eager = model_and_optimizer("sgd", "soft")
    model, optimizer = model_and_optimizer("sgd", "soft")
    for opt in (eager, optimizer):
        for group in opt.param_groups:
            group["lr"] = torch.tensor(0.1)
    schedules = [with_schedule(eager_model, eager), with_schedule(model, optimizer)]
    step = CapturedStep(optimizer, warmup=1, backend=RehearsalBackend())
    side_by_side(eager_model, eager, model, step, 4, after_each=lambda: [schedule.step() for schedule in schedules])
    assert_same_run(eager_model, eager, model, optimizer)


def test_uncapturable_steps_are_refused_up_front():
    model, optimizer = model_and_optimizer("sgd", "hard")
    optimizer.param_groups[2]["collision_pairing"] = "all"
    with pytest.raises(ValueError, match=r"param group 2 \(second\) has hard collision with "
                                         r"collision_pairing='all'.*use collision_pairing='dsmc'"):
        check_capturable_groups(optimizer)
    optimizer.param_groups[2]["collision_pairing"] = "dsmc"
    state = optimizer.state_dict()
    for key in ("collision_pairing", "ko_hf_defaults"):  # a group saved by ko-hf 0.1 pairs as "all"
        del state["param_groups"][2][key]
    optimizer.load_state_dict(state)
    with pytest.raises(ValueError, match="collision_pairing='all'"):
        CapturedStep(optimizer)
    _, adamw = model_and_optimizer("adamw", "soft")
    for group in adamw.param_groups:
        group["capturable"] = False
    with pytest.raises(ValueError, match=r"param groups \[0, 1, 2\] have capturable=False.*capturable=True"):
        check_capturable_base(adamw)
    with pytest.raises(ValueError, match="needs a KO optimizer"):
        CapturedStep(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="warmup must be an integer >= 1"):
        CapturedStep(optimizer, warmup=0)


def test_close_gives_back_fresh_generators_with_the_same_draws():
    eager_model, eager = model_and_optimizer("sgd", "hard")
    model, optimizer = model_and_optimizer("sgd", "hard")
    step = CapturedStep(optimizer, warmup=1, backend=RehearsalBackend())
    backward(model, optimizer)
    step()
    step.close()
    assert "collision_generator" not in vars(optimizer)
    backward(model, optimizer)
    optimizer.step()
    for _ in range(2):
        backward(eager_model, eager)
        eager.step()
    assert_same_run(eager_model, eager, model, optimizer)


class GraphLikeBackend(RehearsalBackend):
    """A rehearsal whose replays also leave the guard rail's host state as it was, as a CUDA graph's replay (which
    runs no Python) does: whatever the captured step's Python did to it is undone."""

    def __init__(self, optimizer):
        super().__init__()
        self.optimizer = optimizer

    def replay(self):
        keys = ("_guard_steps", "_guard_window_start", "_guard_sums", "collision_warnings")
        before = {key: copy.copy(getattr(self.optimizer, key)) for key in keys}
        output = super().replay()
        for key, value in before.items():
            setattr(self.optimizer, key, value)
        return output


def test_the_guard_rail_counts_and_checks_replayed_steps():
    """A target whose gradient turns around only after the capture is warned about at the same step as in eager
    steps: the replays count and check the steps, not the captured step's Python (which a graph never runs)."""
    from test_guards import condensed_layer

    def run(captured):
        param, grad = condensed_layer(n=64, d=32)
        optimizer = KOAdamW([{"params": [param], "collision": "soft", "coll_coef": 0.5, "collision_form": "paper",
                              "collision_names": ["w"]}], lr=1e-4)
        optimizer.guard_window = 4
        step = CapturedStep(optimizer, warmup=2, backend=GraphLikeBackend(optimizer)) if captured else optimizer.step
        param.grad = torch.zeros_like(grad)
        for call in range(9):
            param.grad.copy_(grad if call >= 2 else torch.zeros_like(grad))  # reversed from step 3 on
            step()
        return [(w.kind, w.target, w.step) for w in optimizer.collision_warnings], optimizer._guard_steps

    eager = run(captured=False)
    assert eager == ([("reversed", "w", 4)], 9)
    assert run(captured=True) == eager
