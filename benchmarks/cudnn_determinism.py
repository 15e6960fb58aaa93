"""What deterministic cuDNN kernels cost a training step on a GPU, and what they buy (needs CUDA).

nnopt's training loop asks cuDNN for deterministic convolution kernels and switches its timing-based kernel choice
off while it trains on CUDA (train._prepare.deterministic_kernels), so that the same seed gives the same weights
and a resumed run ends bit-identical to an uninterrupted one. This measures, on the same GPU in the same process,
plain training steps (forward, cross-entropy, backward, Adam) of two networks at one batch size with
    deterministic: cudnn.deterministic=True,  benchmark=False   (what nnopt trains with)
    default:       cudnn.deterministic=False, benchmark=False   (torch's defaults)
    benchmark:     cudnn.deterministic=False, benchmark=True    (fastest kernel found by timing)
and, for each setting, whether two runs from the same seed end with identical weights.

    python benchmarks/cudnn_determinism.py --steps 200 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from nnopt.models import build_model

SETTINGS = {"deterministic": (True, False), "default": (False, False), "benchmark": (False, True)}


def resnet_shape(channels: int = 3, classes: int = 10, width: int = 32) -> nn.Module:
    """A small residual CNN of the shape users bring (conv, BatchNorm, residual add, global pooling)."""

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                      nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
            self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    return nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         Block(width, width, 1), Block(width, 2 * width, 2), Block(2 * width, 4 * width, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))


NETS = {
    "cnn:32,64": lambda: build_model("cnn:32,64", in_features=3 * 32 * 32, n_outputs=10, input_shape=(3, 32, 32)),
    "resnet-shape": resnet_shape,
}


def train(name: str, setting: str, steps: int, batch: int, seed: int = 0) -> tuple[float, torch.Tensor]:
    """Steps per second of `steps` training steps after 20 warm-up steps, and the final weights."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = SETTINGS[setting]
    torch.manual_seed(seed)
    net = NETS[name]().cuda()
    flat = name.startswith("cnn")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(steps + 20, batch, 3, 32, 32, device="cuda", generator=generator)
    y = torch.randint(0, 10, (steps + 20, batch), device="cuda", generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    start = 0.0
    for step in range(steps + 20):
        if step == 20:
            torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        xb = x[step].flatten(1) if flat else x[step]  # nnopt's own cnn takes flat rows and unflattens them
        loss_fn(net(xb), y[step]).backward()
        opt.step()
    torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - start)
    return rate, torch.cat([p.detach().flatten() for p in net.parameters()]).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"batch {args.batch}, 3x32x32, {args.steps} steps a round, {args.rounds} rounds (settings rotated)")
    print("| network | setting | steps/s (median) | vs deterministic | same seed, same weights |")
    print("|---|---|---:|---:|---|")
    for name in NETS:
        rates: dict[str, list[float]] = {s: [] for s in SETTINGS}
        weights: dict[str, list[torch.Tensor]] = {s: [] for s in SETTINGS}
        order = list(SETTINGS)
        for r in range(args.rounds):
            for setting in order[r % len(order):] + order[:r % len(order)]:
                rate, final = train(name, setting, args.steps, args.batch)
                rates[setting].append(rate)
                weights[setting].append(final)
        base = statistics.median(rates["deterministic"])
        for setting in SETTINGS:
            median = statistics.median(rates[setting])
            same = all(torch.equal(weights[setting][0], w) for w in weights[setting][1:])
            print(f"| {name} | {setting} | {median:,.0f} | {median / base:.2f}x | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
