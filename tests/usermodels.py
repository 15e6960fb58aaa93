"""Models as a user writes them in their own module: plain nn.Modules and a factory, none of them nnopt specs.

The tests import this file as `usermodels` (tests/ is on sys.path through its conftest.py), and name its factory
in model specs: `usermodels:make_net`.
"""

import numpy as np
import torch
from torch import nn

CALLS: list[dict] = []  # every make_net call's arguments, so tests can check what a spec passed


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(x + self.body(x))


class ResidualCNN(nn.Module):
    """A stem conv, `depth` residual blocks with BatchNorm, global average pooling, a linear head.
    Takes (N, C, H, W) images."""

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 16, depth: int = 1):
        super().__init__()
        self.hparams = {"in_channels": in_channels, "n_classes": n_classes, "width": width, "depth": depth}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(depth)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


class SignalNet(nn.Module):
    """1-D convolutions over (N, C, L) signals, global max pooling, a linear head."""

    def __init__(self, in_channels: int = 2, n_classes: int = 2, width: int = 8):
        super().__init__()
        self.hparams = {"in_channels": in_channels, "n_classes": n_classes, "width": width}  # the recipe nnopt records
        self.features = nn.Sequential(nn.Conv1d(in_channels, width, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(width, width, 5, padding=2), nn.ReLU(), nn.AdaptiveMaxPool1d(1))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TinyConv(nn.Module):
    """Conv2d(1 -> 2, 3x3, no padding) on 1x4x4 images, flattened, Linear(8 -> 3): FLOPs countable by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


def make_net(input_shape, n_outputs, width: int = 8, depth: int = 1):
    """The factory: a ResidualCNN for the data's image shape, `width` channels, `depth` residual blocks."""
    CALLS.append({"input_shape": input_shape, "n_outputs": n_outputs, "width": width, "depth": depth})
    return ResidualCNN(in_channels=input_shape[0], n_classes=n_outputs, width=width, depth=depth)


def make_fixed_head(input_shape, n_outputs, outputs: int = 7):
    """A factory that ignores n_outputs (a common mistake): `outputs` logits whatever the classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(input_shape).numel()), outputs))


class RefusingCounter:
    """Stands in for torch's FlopCounterMode on an op it cannot handle: entering it raises."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise RuntimeError("cannot count this op")

    def __exit__(self, *exc):
        return False


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with BatchNorm; a 1x1 strided conv + BatchNorm on the shortcut when the
    block halves the map or changes the width."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18's shape for small images (a 3x3 stem, no max pool, as for CIFAR): four stages of two BasicBlocks,
    widths width x (1, 2, 4, 8), stages 2-4 halving the map, global average pooling, a linear head."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 64):
        super().__init__()
        self.hparams = {"in_channels": in_channels, "n_classes": n_classes, "width": width}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        blocks, c_in = [], width
        for stage, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            blocks += [BasicBlock(c_in, c_out, stride=1 if stage == 0 else 2), BasicBlock(c_out, c_out)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class Swish(nn.Module):
    """A custom activation with a learnable slope: x * sigmoid(beta * x)."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class SwishMLP(nn.Module):
    """An MLP on table rows with the custom Swish activation."""

    def __init__(self, in_features: int, n_classes: int, width: int = 64):
        super().__init__()
        self.hparams = {"in_features": in_features, "n_classes": n_classes, "width": width}
        self.net = nn.Sequential(nn.Linear(in_features, width), Swish(), nn.Linear(width, width), Swish(),
                                 nn.Linear(width, n_classes))

    def forward(self, x):
        return self.net(x)


class TwoBranchNet(nn.Module):
    """Two inputs in one row: the first `split` columns and the rest each go through their own layer, the two
    are concatenated inside forward, then a hidden layer and a head."""

    def __init__(self, in_features: int, n_classes: int, split: int = 32, width: int = 32):
        super().__init__()
        self.hparams = {"in_features": in_features, "n_classes": n_classes, "split": split, "width": width}
        self.split = split
        self.left = nn.Sequential(nn.Linear(split, width), nn.ReLU())
        self.right = nn.Sequential(nn.Linear(in_features - split, width), nn.ReLU())
        self.hidden = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        a, b = x[:, :self.split], x[:, self.split:]
        return self.head(self.hidden(torch.cat([self.left(a), self.right(b)], dim=1)))


# ---- learnable data for them -------------------------------------------------------------------------

def stripes(n, channels=3, size=16, seed=0):
    """(n, channels, size, size) noise with one bright stripe; class = the stripe's channel and orientation."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2 * channels, n)
    X = rng.normal(0.0, 0.5, (n, channels, size, size)).astype(np.float32)
    for i in range(n):
        k = rng.integers(2, size - 2)
        if y[i] // channels:
            X[i, y[i] % channels, :, k] += 2.0
        else:
            X[i, y[i] % channels, k, :] += 2.0
    return X, y


def bumps(n, seed=0, length=40):
    """(n, 2, length) noisy signals with a bump at a random place: in channel 0 (class 0), channel 1 (class 1) or
    both (class 2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0.0, 0.3, (n, 2, length)).astype(np.float32)
    for i in range(n):
        p = rng.integers(length // 10, length - length // 10)
        for c in ((0,), (1,), (0, 1))[y[i]]:
            X[i, c, p - 2:p + 3] += 2.0
    return X, y


def rows(n, seed=0):
    """(n, 48) table rows; the class is which of columns 0, 12, 24, 36 (two in each half) is largest: a rule
    few weights carry, as pruning to 90 % expects."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 48)).astype(np.float32)
    y = X[:, [0, 12, 24, 36]].argmax(axis=1)
    return X, y
