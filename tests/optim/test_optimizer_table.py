import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import make_mlp
from torch import nn

from nnopt.errors import ConfigError, UsageError
from nnopt.optim import OPTIMIZERS, SCHEDULES, MuonAdamW, create_optimizer, optimizer_table, set_optimizer_mode

# The documented torch.optim equivalent of every torch-backed entry (at the entry's default lr).
REFERENCE = {
    "gd": (torch.optim.SGD, {}),
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.01}),
    "nadam": (torch.optim.NAdam, {}),
    "radam": (torch.optim.RAdam, {}),
    "adamax": (torch.optim.Adamax, {}),
    "adadelta": (torch.optim.Adadelta, {}),
    "adafactor": (torch.optim.Adafactor, {}),
}
IMPL_KWARGS = {"fused": {"fused": True}, "fused-cpu": {"fused": True}, "foreach": {"foreach": True}}


def _train(model, optimizer, x, y, steps, batch=None):
    set_optimizer_mode(optimizer, True)
    for step in range(steps):
        if batch is None:
            xb, yb = x, y
        else:
            start = (step * batch) % (len(x) - batch)
            xb, yb = x[start:start + batch], y[start:start + batch]
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    set_optimizer_mode(optimizer, False)


def _loss(model, x, y) -> float:
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss_on_digits(name, digits):
    x, y = digits
    model = make_mlp()
    optimizer = create_optimizer(name, model)
    before = _loss(model, x, y)
    entry = OPTIMIZERS.get(name)
    _train(model, optimizer, x, y, steps=200, batch=None if entry.full_batch else 64)
    after = _loss(model, x, y)
    assert after < 0.9 * before, f"{name}: {before:.3f} -> {after:.3f}"


def test_table_entries_are_complete_data():
    assert OPTIMIZERS.names()[:16] == [
        "gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam",
        "adamax", "adadelta", "adafactor", "muon", "lion", "schedulefree",
    ]
    for entry in OPTIMIZERS:
        assert entry.summary and entry.rule and entry.source
        assert entry.default_lr > 0 and isinstance(entry.hyperparams, dict)
        assert entry.full_batch is (entry.name == "gd")
    rows = optimizer_table()
    assert [row["name"] for row in rows] == OPTIMIZERS.names()
    assert set(rows[0]) == {"name", "summary", "rule", "default_lr", "source", "full_batch"}


def test_every_single_torch_class_entry_has_a_reference():
    torch_backed = {e.name for e in OPTIMIZERS if e.source.startswith("torch.optim.") and "+" not in e.source}
    assert torch_backed == set(REFERENCE)
    for name, (cls, _) in REFERENCE.items():
        assert OPTIMIZERS.get(name).source == f"torch.optim.{cls.__name__}"


def _steps(model, optimizer, x, y, steps=5):
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_torch_entries_step_exactly_like_torch(name, digits):
    x, y = digits[0][:128], digits[1][:128]
    cls, kwargs = REFERENCE[name]
    entry = OPTIMIZERS.get(name)
    ours, theirs = make_mlp(), make_mlp()
    got = _steps(ours, create_optimizer(name, ours), x, y)
    want = _steps(theirs, cls(theirs.parameters(), lr=entry.default_lr, **kwargs, **IMPL_KWARGS[entry.impl]), x, y)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # The fused / foreach fast path agrees with torch's plain for-loop to float32 rounding.
    plain = make_mlp()
    slow = _steps(plain, cls(plain.parameters(), lr=entry.default_lr, **kwargs, foreach=False), x, y)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(got, slow))


def test_hyperparameters_reach_the_torch_optimizer(digits):
    x, y = digits[0][:128], digits[1][:128]
    ours, theirs = make_mlp(), make_mlp()
    got = _steps(ours, create_optimizer("adam", ours, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1), x, y)
    reference = torch.optim.Adam(theirs.parameters(), lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1, fused=True)
    assert all(torch.equal(a, b) for a, b in zip(got, _steps(theirs, reference, x, y)))


def test_muon_matches_a_manual_muon_adamw_split(digits):
    x, y = digits[0][:128], digits[1][:128]
    ours, theirs = make_mlp(sizes=(64, 32, 32, 10)), make_mlp(sizes=(64, 32, 32, 10))
    optimizer = create_optimizer("muon", ours)
    assert isinstance(optimizer, MuonAdamW)
    got = _steps(ours, optimizer, x, y)
    hidden = [theirs[0].weight, theirs[2].weight]
    rest = [theirs[0].bias, theirs[2].bias, theirs[4].weight, theirs[4].bias]
    muon = torch.optim.Muon(hidden, lr=5e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                            adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(rest, lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, fused=True)
    for _ in range(5):
        theirs.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(theirs(x), y).backward()
        muon.step()
        adamw.step()
    assert all(torch.equal(a, b) for a, b in zip(got, theirs.parameters()))


def test_muon_split_for_a_plain_parameter_list():
    model = make_mlp(sizes=(64, 32, 32, 10))
    optimizer = create_optimizer("muon", list(model.parameters()))
    assert [p.shape for p in optimizer.muon.param_groups[0]["params"]] == [(32, 64), (32, 32)]
    linear = nn.Linear(4, 2)  # no hidden layer: everything goes to AdamW
    only_adamw = create_optimizer("muon", linear)
    assert only_adamw.muon is None and len(only_adamw.param_groups) == 1


@pytest.mark.parametrize("lr", [-0.1, 0.0])
def test_non_positive_lr_is_a_usage_error(lr):
    with pytest.raises(UsageError, match=rf"^lr= must be > 0; got {lr}$"):
        create_optimizer("adam", make_mlp(), lr=lr)


@pytest.mark.parametrize("lr", [math.nan, math.inf, "fast"])
def test_non_finite_or_non_numeric_lr_is_a_usage_error(lr):
    with pytest.raises(UsageError, match="^lr= must be"):
        create_optimizer("sgd", make_mlp(), lr=lr)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown optimizer 'adm'; did you mean 'adam'\\? choices: adadelta"):
        create_optimizer("adm", make_mlp())


def test_unknown_hyperparameter_lists_the_options():
    message = "optimizer 'adam' has no option 'momentum'; options: betas, eps, weight_decay, amsgrad"
    with pytest.raises(ConfigError, match=f"^{message}$"):
        create_optimizer("adam", make_mlp(), momentum=0.9)


def test_invalid_hyperparameter_value_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer 'adam': Invalid beta parameter"):
        create_optimizer("adam", make_mlp(), betas=(1.5, 0.999))


def test_dict_spec_default_lr_and_instance_pass_through():
    model = make_mlp()
    optimizer = create_optimizer({"name": "momentum", "lr": 0.05, "momentum": 0.5}, model)
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["momentum"] == 0.5
    assert create_optimizer({"name": "sgd", "lr": 0.05}, model, lr=0.2).param_groups[0]["lr"] == 0.2
    assert create_optimizer("nadam", model).param_groups[0]["lr"] == 5e-3
    assert create_optimizer(optimizer, model) is optimizer
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        create_optimizer({"lr": 0.1}, model)


def test_frozen_parameters_are_left_out():
    model = make_mlp()
    model[0].requires_grad_(False)
    optimizer = create_optimizer("adam", model)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2


def test_set_optimizer_mode_switches_schedulefree_and_ignores_others():
    model = make_mlp()
    sgd = create_optimizer("sgd", model)
    set_optimizer_mode(sgd, True)
    set_optimizer_mode(sgd, False)
    free = create_optimizer("schedulefree", copy.deepcopy(model))
    set_optimizer_mode(free, True)
    assert free.param_groups[0]["train_mode"] is True
    set_optimizer_mode(free, False)
    assert free.param_groups[0]["train_mode"] is False


def test_docs_list_every_optimizer_and_schedule():
    text = (Path(__file__).parents[2] / "docs" / "optimizers.md").read_text()
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `")}
    assert {f"`{name}`" for name in OPTIMIZERS.names() + SCHEDULES.names()} <= rows
