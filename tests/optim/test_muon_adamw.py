import copy
import io
import math

import pytest
import torch
from conftest import make_mlp
from torch import nn

from nnopt.optim import MuonAdamW, create_optimizer, create_schedule

SIZES = (64, 32, 32, 10)


def _batches(digits, steps, batch=64):
    x, y = digits
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


def _run(model, optimizer, schedule, batches):
    for xb, yb in batches:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        schedule.step_batch()


def test_param_groups_are_the_inner_group_dicts():
    optimizer = create_optimizer("muon", make_mlp(sizes=SIZES))
    assert len(optimizer.param_groups) == 2
    assert optimizer.param_groups[0] is optimizer.muon.param_groups[0]
    assert optimizer.param_groups[1] is optimizer.adamw.param_groups[0]
    assert all(p.ndim == 2 for p in optimizer.muon.param_groups[0]["params"])


def test_state_dict_round_trip_resumes_bit_identically(digits):
    batches = _batches(digits, 8)
    straight = make_mlp(sizes=SIZES)
    optimizer = create_optimizer("muon", straight, lr=0.01)
    schedule = create_schedule("cosine", optimizer, epochs=2, steps_per_epoch=4)
    _run(straight, optimizer, schedule, batches)

    first = make_mlp(sizes=SIZES)
    optimizer = create_optimizer("muon", first, lr=0.01)
    schedule = create_schedule("cosine", optimizer, epochs=2, steps_per_epoch=4)
    _run(first, optimizer, schedule, batches[:3])
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = make_mlp(seed=1, sizes=SIZES)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(checkpoint["model"])
    optimizer = create_optimizer("muon", resumed, lr=0.01)
    schedule = create_schedule("cosine", optimizer, epochs=2, steps_per_epoch=4)
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    assert optimizer.param_groups[0] is optimizer.muon.param_groups[0]  # still live after the load
    _run(resumed, optimizer, schedule, batches[3:])

    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_load_state_dict_rejects_a_mismatched_split():
    with_muon = create_optimizer("muon", make_mlp(sizes=SIZES))
    without_muon = create_optimizer("muon", nn.Linear(4, 2))
    with pytest.raises(ValueError, match="'muon' part is missing"):
        with_muon.load_state_dict(without_muon.state_dict())


def test_lambda_lr_and_one_cycle_drive_both_halves():
    optimizer = create_optimizer("muon", make_mlp(sizes=SIZES), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.5**t)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.muon.param_groups + optimizer.adamw.param_groups] == [0.1 * 0.125] * 2

    optimizer = create_optimizer("muon", make_mlp(sizes=SIZES), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.1 / 25)
    for _ in range(2):  # the peak is at step pct_start * total_steps - 1 = 2
        optimizer.step()
        scheduler.step()
    assert optimizer.muon.param_groups[0]["lr"] == optimizer.adamw.param_groups[0]["lr"] == pytest.approx(0.1)


def test_zero_grad_closure_state_view_and_deepcopy():
    model = make_mlp(sizes=SIZES)
    optimizer = create_optimizer("muon", model)
    x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert math.isfinite(loss.item())
    assert "momentum_buffer" in optimizer.state[model[0].weight]
    assert "exp_avg" in optimizer.state[model[4].weight]
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    clone = copy.deepcopy(optimizer)
    assert isinstance(clone, MuonAdamW) and clone.param_groups[0] is clone.muon.param_groups[0]
    with pytest.raises(NotImplementedError):
        optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})


def test_step_hooks_run():
    optimizer = create_optimizer("muon", make_mlp(sizes=SIZES))
    calls = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(opt))
    optimizer.step()
    assert calls == [optimizer]
