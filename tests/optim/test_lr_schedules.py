import io
import math
import warnings

import pytest
import torch
from conftest import make_mlp

from nnopt.errors import CheckpointError, ConfigError, UsageError
from nnopt.optim import SCHEDULES, Schedule, create_optimizer, create_schedule

LR, EPOCHS, SPE = 0.1, 4, 5
T = EPOCHS * SPE


def _optimizer(name="momentum"):
    return create_optimizer(name, make_mlp(), lr=LR)


def _trajectory(schedule, optimizer, steps=T):
    """The lr each optimizer step used."""
    lrs = []
    for _ in range(steps):
        lrs.append(schedule.last_lr())
        optimizer.step()  # no grads: nothing moves, but schedulers see a step
        schedule.step_batch()
    return lrs


def _cos(start, end, pct):  # OneCycleLR's cosine annealing
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


CLOSED_FORM = {
    "constant": ({}, lambda t: LR),
    "step": ({}, lambda t: LR * 0.1 ** (t // SPE)),  # step_size = max(1, epochs // 3) = 1 epoch
    "exponential": ({"gamma": 0.5}, lambda t: LR * 0.5 ** (t / SPE)),
    "cosine": ({}, lambda t: LR * 0.5 * (1 + math.cos(math.pi * t / T))),
    "warmup-cosine": (
        {"warmup": 0.2, "min_lr_ratio": 0.1},  # W = 4 steps
        lambda t: LR * (t + 1) / 5 if t < 4 else LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - 4) / 16))),
    ),
    "one-cycle": (
        {},  # peak at step 0.3 * 20 - 1 = 5, from LR / 25 up, then down to LR / 25 / 1e4 at step 19
        lambda t: _cos(LR / 25, LR, t / 5) if t <= 5 else _cos(LR, LR / 25 / 1e4, (t - 5) / 14),
    ),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_step_schedules_follow_their_closed_form(name):
    params, formula = CLOSED_FORM[name]
    optimizer = _optimizer()
    schedule = create_schedule(name, optimizer, epochs=EPOCHS, steps_per_epoch=SPE, **params)
    assert schedule.name == name
    got = _trajectory(schedule, optimizer)
    assert got == pytest.approx([formula(t) for t in range(T)], rel=1e-9, abs=1e-15)
    schedule.step_epoch(0.5)  # a no-op for step-based schedules
    assert schedule.last_lr() == pytest.approx(formula(T - 1))


def test_cosine_midpoint_is_half_the_lr_and_steps_past_the_end_hold():
    optimizer = _optimizer()
    schedule = create_schedule("cosine", optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    lrs = _trajectory(schedule, optimizer, steps=T + 5)
    assert lrs[T // 2] == pytest.approx(LR / 2)
    assert lrs[T - 1:] == [lrs[T - 1]] * 6
    optimizer = _optimizer()
    one_cycle = create_schedule("one-cycle", optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    _trajectory(one_cycle, optimizer, steps=T + 5)  # OneCycleLR alone raises past total_steps


def test_schedule_registry_lists_params():
    assert SCHEDULES.names() == [
        "constant", "step", "exponential", "cosine", "warmup-cosine", "one-cycle", "reduce-on-plateau"
    ]
    assert SCHEDULES.get("reduce-on-plateau").params["patience"] == 2
    assert all(entry.summary and isinstance(entry.params, dict) for entry in SCHEDULES)


def test_none_is_constant():
    optimizer = _optimizer()
    schedule = create_schedule(None, optimizer, epochs=1, steps_per_epoch=1)
    assert isinstance(schedule, Schedule) and schedule.name == "constant"
    assert _trajectory(schedule, optimizer, steps=3) == [LR] * 3
    assert schedule.state_dict() == {"name": "constant", "scheduler": None}


def test_reduce_on_plateau_halves_after_patience_epochs():
    optimizer = _optimizer()
    schedule = create_schedule("reduce-on-plateau", optimizer, epochs=10, steps_per_epoch=SPE)
    lrs = []
    for val_loss in [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]:
        _trajectory(schedule, optimizer, steps=SPE)  # step_batch is a no-op here
        schedule.step_epoch(val_loss)
        lrs.append(schedule.last_lr())
    # best 0.9 at epoch 2; epochs 3, 4, 5 do not improve: 3 > patience=2 -> halve; again after 6, 7, 8
    assert lrs == pytest.approx([LR] * 4 + [LR / 2] * 3 + [LR / 4])
    schedule.step_epoch(None)  # an epoch without validation is skipped
    assert schedule.last_lr() == pytest.approx(LR / 4)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_state_dict_round_trip_continues_the_same_trajectory(name):
    optimizer = _optimizer()
    schedule = create_schedule(name, optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    val_losses = [1.0, 0.9, 0.95, 0.97]

    def run(schedule, optimizer, epochs):
        lrs = []
        for epoch in epochs:
            lrs += _trajectory(schedule, optimizer, steps=SPE)
            schedule.step_epoch(val_losses[epoch])
        return lrs

    straight = run(schedule, optimizer, range(EPOCHS))
    optimizer = _optimizer()
    schedule = create_schedule(name, optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    first = run(schedule, optimizer, range(2))
    buffer = io.BytesIO()
    torch.save(schedule.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # what a checkpoint holds

    # Resume: fresh optimizer and schedule, only the schedule state loaded (lr is written back from it).
    optimizer = _optimizer()
    resumed = create_schedule(name, optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    resumed.load_state_dict(state)
    assert first + run(resumed, optimizer, range(2, EPOCHS)) == straight


def test_loading_another_schedules_state_is_a_checkpoint_error():
    optimizer = _optimizer()
    state = create_schedule("step", optimizer, epochs=EPOCHS, steps_per_epoch=SPE).state_dict()
    cosine = create_schedule("cosine", _optimizer(), epochs=EPOCHS, steps_per_epoch=SPE)
    with pytest.raises(CheckpointError, match="saved with schedule 'step', not 'cosine'"):
        cosine.load_state_dict(state)


def test_schedulefree_refuses_a_schedule():
    optimizer = _optimizer("schedulefree")
    with pytest.raises(UsageError, match="^optimizer 'schedulefree' needs no schedule; drop schedule=$"):
        create_schedule("cosine", optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    assert create_schedule("constant", optimizer, epochs=EPOCHS, steps_per_epoch=SPE).name == "constant"
    assert create_schedule(None, optimizer, epochs=EPOCHS, steps_per_epoch=SPE).name == "constant"


def test_bad_schedule_input_is_reported():
    optimizer = _optimizer()
    with pytest.raises(ConfigError, match="^schedule 'cosine' has no option 'gamma'; options: min_lr_ratio$"):
        create_schedule("cosine", optimizer, epochs=EPOCHS, steps_per_epoch=SPE, gamma=0.5)
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'; did you mean 'cosine'"):
        create_schedule("cosin", optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    with pytest.raises(ConfigError, match="schedule 'step': gamma must be in \\(0, 1\\]; got 2"):
        create_schedule({"name": "step", "gamma": 2}, optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    with pytest.raises(UsageError, match="^epochs= must be an integer >= 1; got 0$"):
        create_schedule("cosine", optimizer, epochs=0, steps_per_epoch=SPE)


def test_dict_spec_and_no_scheduler_warnings():
    optimizer = _optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule = create_schedule({"name": "step", "step_size": 2, "gamma": 0.5}, optimizer,
                                   epochs=EPOCHS, steps_per_epoch=SPE)
        lrs = _trajectory(schedule, optimizer)
    assert lrs == pytest.approx([LR * 0.5 ** (t // (2 * SPE)) for t in range(T)])


def test_schedule_on_muon_moves_both_halves():
    optimizer = create_optimizer("muon", make_mlp(sizes=(64, 32, 32, 10)), lr=LR)
    schedule = create_schedule("cosine", optimizer, epochs=EPOCHS, steps_per_epoch=SPE)
    _trajectory(schedule, optimizer, steps=T // 2)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([LR / 2, LR / 2])
