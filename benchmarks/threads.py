"""Steps/s of one training step at 1 vs 2 (vs all) CPU threads for models of growing cost.

Sets the threshold in nnopt.train._threads (PARALLEL_FLOPS_PER_STEP): below it one thread wins.

    .venv/bin/python benchmarks/threads.py [--steps 200] [--repeats 5] [--busy-core] [--cases "mlp:128;mlp:512,512"]

--busy-core keeps one core busy with a second process (a spinning loop) while it measures: what a second thread
costs when it has to wait for a core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nnopt.models import build_model, flops_per_sample
from nnopt.train import choose_threads
from nnopt.train._threads import available_cores

CASES = [  # (model spec, in_features, input_shape, batch)
    ("mlp:128", 64, None, 64),
    ("mlp:128,64", 64, None, 256),
    ("cnn", 64, (1, 8, 8), 64),
    ("mlp:512,512", 784, None, 128),
    ("cnn", 784, (1, 28, 28), 64),
    ("mlp:1024,1024", 784, None, 256),
]


def steps_per_s(spec, n_in, shape, batch, threads, steps, repeats) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(spec, in_features=n_in, n_outputs=10, input_shape=shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    X, y = torch.randn(batch, n_in), torch.randint(0, 10, (batch,))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = F.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy-core", action="store_true", help="a second process keeps one core busy meanwhile")
    parser.add_argument("--cases", help="only these model specs, separated by semicolons (default: all)")
    args = parser.parse_args()
    if args.busy_core:
        import multiprocessing

        spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        spinner.start()
    cores = available_cores()
    counts = sorted({1, 2, cores})
    print(f"{'model':<16}{'batch':>6}{'MFLOP/step':>12}" + "".join(f"{f'{t} thr':>10}" for t in counts)
          + f"{'2 vs 1':>8}{'chosen':>8}")
    for spec, n_in, shape, batch in CASES:
        if args.cases and spec not in args.cases.split(";"):
            continue
        flops = flops_per_sample(build_model(spec, in_features=n_in, n_outputs=10, input_shape=shape), n_in)
        rates = {t: steps_per_s(spec, n_in, shape, batch, t, args.steps, args.repeats) for t in counts}
        print(f"{spec:<16}{batch:>6}{3 * flops * batch / 1e6:>12.1f}" + "".join(f"{rates[t]:>10.0f}" for t in counts)
              + f"{rates[2] / rates[1]:>7.2f}x{choose_threads(flops, batch):>8}")


if __name__ == "__main__":
    main()
