"""Lion and schedule-free AdamW against their published update rules, computed here with plain floats."""

import math

import pytest
import torch

from nnopt.optim import Lion, create_optimizer, set_optimizer_mode

CURVATURE = (1.0, 4.0)  # f(w) = sum(a_i * w_i^2) / 2, so g_i = a_i * w_i
START = (0.5, -0.3)


def _grad(w):
    return [a * wi for a, wi in zip(CURVATURE, w)]


def _set_grad(param):
    param.grad = param.detach() * torch.tensor(CURVATURE, dtype=torch.float64)


def _sign(v):
    return (v > 0) - (v < 0)


def test_lion_follows_chen_et_al_2023():
    lr, b1, b2, wd = 0.1, 0.9, 0.99, 0.1
    param = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
    optimizer = create_optimizer("lion", [param], lr=lr, betas=(b1, b2), weight_decay=wd)
    assert isinstance(optimizer, Lion)
    w, m = list(START), [0.0, 0.0]
    for _ in range(3):
        g = _grad(w)
        c = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        w = [wi - lr * (_sign(ci) + wd * wi) for wi, ci in zip(w, c)]
        m = [b2 * mi + (1 - b2) * gi for mi, gi in zip(m, g)]
        _set_grad(param)
        optimizer.step()
        assert param.tolist() == pytest.approx(w, rel=1e-12, abs=1e-15)
        assert optimizer.state[param]["exp_avg"].tolist() == pytest.approx(m, rel=1e-12, abs=1e-15)


def test_lion_moves_every_coordinate_by_lr_without_weight_decay():
    param = torch.nn.Parameter(torch.tensor([3.0, -2.0, 1e-6]))
    optimizer = Lion([param], lr=0.01)
    param.grad = torch.tensor([1e-8, -5.0, 100.0])
    optimizer.step()
    assert torch.allclose(param.detach(), torch.tensor([2.99, -1.99, 1e-6 - 0.01]))


def test_schedulefree_follows_defazio_et_al_2024():
    """Algorithm 1 of "The Road Less Scheduled" with the package's conventions: bias correction on v
    (sqrt(v / (1 - b2^t)) + eps), linear warmup lr_t = lr * min(1, t / warmup_steps), average weights
    c_t = w_t / sum(w_i) with w_t = max(lr_1..lr_t)^2 (weight_lr_power=2, r=0), decay lr_t * wd * y."""
    lr, b1, b2, eps, wd, warmup = 0.1, 0.9, 0.999, 1e-8, 0.1, 2
    param = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
    optimizer = create_optimizer(
        "schedulefree", [param], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, warmup_steps=warmup
    )
    x, z, v = list(START), list(START), [0.0, 0.0]
    lr_max, weight_sum = 0.0, 0.0
    for t in range(1, 4):
        y = [(1 - b1) * zi + b1 * xi for zi, xi in zip(z, x)]
        g = _grad(y)
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        lr_t = lr * min(1.0, t / warmup)
        step = [gi / (math.sqrt(vi / (1 - b2**t)) + eps) + wd * yi for gi, vi, yi in zip(g, v, y)]
        z = [zi - lr_t * si for zi, si in zip(z, step)]
        lr_max = max(lr_max, lr_t)
        weight_sum += lr_max**2
        c = lr_max**2 / weight_sum
        x = [(1 - c) * xi + c * zi for xi, zi in zip(x, z)]

        set_optimizer_mode(optimizer, True)
        assert param.tolist() == pytest.approx(y, rel=1e-12)  # training happens at y
        _set_grad(param)
        optimizer.step()
        y_next = [(1 - b1) * zi + b1 * xi for zi, xi in zip(z, x)]
        assert param.tolist() == pytest.approx(y_next, rel=1e-12)
        assert optimizer.state[param]["z"].tolist() == pytest.approx(z, rel=1e-12)
        set_optimizer_mode(optimizer, False)
        assert param.tolist() == pytest.approx(x, rel=1e-12)  # evaluation happens at x
