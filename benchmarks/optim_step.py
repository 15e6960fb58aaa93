"""Optimizer step speed on a small CPU MLP: fused vs foreach vs for-loop (torch's CPU default).

Usage: python benchmarks/optim_step.py [--repeats 5] [--steps 2000] [--mode step|train|both|scope]
Prints steps/s (median of repeats) for optimizer.step() alone and for a full train step
(forward + backward + step) on a 64-128-10 MLP, batch 64, one thread.
--mode scope: what torch's profiler scope around optimizer.step() costs (the wrapped step against the unwrapped one
nnopt's loop calls, nnopt.train._setup.step_function), in microseconds a step and as a share of a train step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from nnopt.optim import create_optimizer, set_optimizer_mode
from nnopt.train._setup import step_function

CASES = {
    "sgd": (torch.optim.SGD, {"lr": 0.01}),
    "momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.01}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3}),
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
    "nadam": (torch.optim.NAdam, {"lr": 2e-3}),
    "radam": (torch.optim.RAdam, {"lr": 1e-3}),
    "adamax": (torch.optim.Adamax, {"lr": 2e-3}),
    "adadelta": (torch.optim.Adadelta, {"lr": 1.0}),
    "adafactor": (torch.optim.Adafactor, {"lr": 1e-2}),
}
FUSED = {"sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"}
SHIPPED = ["muon", "lion", "schedulefree"]  # no torch fused/foreach choice: measured as nnopt builds them


def _shipped(model, name):
    return create_optimizer(name, model)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _rate(cls, kwargs, impl, steps, full):
    model = _model()
    opt = cls(model, **kwargs) if cls is _shipped else cls(model.parameters(), **kwargs, **impl)
    set_optimizer_mode(opt, True)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    loss_fn = nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    loss_fn(model(x), y).backward()
    for _ in range(50):
        train_step() if full else opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        train_step() if full else opt.step()
    return steps / (time.perf_counter() - start)


def _scope(name: str, repeats: int, steps: int) -> None:
    """Microseconds a step of opt.step() (torch's record_function wrapper) and of the unwrapped step, round-robin,
    medians; the difference against a whole train step's time."""
    cls, kwargs = CASES[name]
    impl = {"fused": True} if name in FUSED else {"foreach": True}
    model = _model()
    opt = cls(model.parameters(), **kwargs, **impl)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    nn.CrossEntropyLoss()(model(x), y).backward()
    raw = step_function(opt)
    times: dict[str, list[float]] = {"wrapped": [], "unwrapped": []}
    for _ in range(repeats):
        for label, call in (("wrapped", opt.step), ("unwrapped", raw)):
            for _ in range(50):
                call()
            start = time.perf_counter()
            for _ in range(steps):
                call()
            times[label].append(1e6 * (time.perf_counter() - start) / steps)
    train_us = 1e6 / statistics.median(_rate(cls, kwargs, impl, steps, True) for _ in range(repeats))
    wrapped, unwrapped = (statistics.median(times[k]) for k in ("wrapped", "unwrapped"))
    print(f"{name:10} step {wrapped:7.1f} us wrapped, {unwrapped:7.1f} us unwrapped: the scope costs "
          f"{wrapped - unwrapped:5.1f} us, {100 * (wrapped - unwrapped) / train_us:4.1f} % of a {train_us:.0f}-us "
          "train step")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--mode", choices=["step", "train", "both", "scope"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "scope":
        for name in ("sgd", "momentum", "adam", "adamw"):
            _scope(name, args.repeats, args.steps)
        return
    print(f"torch {torch.__version__}; steps/s, median of {args.repeats}")
    print(f"{'optimizer':10} {'mode':7} {'for-loop':>9} {'foreach':>9} {'fused':>9}")
    modes = {"step": (False,), "train": (True,), "both": (False, True)}[args.mode]
    for name, (cls, kwargs) in CASES.items():
        for full in modes:
            impls = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}}
            if name in FUSED:
                impls["fused"] = {"fused": True}
            samples: dict[str, list[float]] = {label: [] for label in impls}
            for _ in range(args.repeats):  # round robin, so machine drift hits every variant alike
                for label, impl in impls.items():
                    samples[label].append(_rate(cls, kwargs, impl, args.steps, full))
            rates = {label: statistics.median(values) for label, values in samples.items()}
            labels = ("for-loop", "foreach", "fused")
            cells = " ".join(f"{rates[k]:9.0f}" if k in rates else f"{'-':>9}" for k in labels)
            print(f"{name:10} {'train' if full else 'step':7} {cells}")

    for name in SHIPPED:
        for full in modes:
            runs = [_rate(_shipped, {"name": name}, {}, args.steps, full) for _ in range(args.repeats)]
            rate = statistics.median(runs)
            print(f"{name:10} {'train' if full else 'step':7} {'as built by create_optimizer:':>29} {rate:.0f}")


if __name__ == "__main__":
    main()
