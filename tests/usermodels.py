"""Models as a user writes them in their own module: plain nn.Modules and a factory, none of them nnopt specs.

The tests import this file as `usermodels` (tests/ is on sys.path through its conftest.py), and name its factory
in model specs: `usermodels:make_net`.
"""

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


class RefusingCounter:
    """Stands in for torch's FlopCounterMode on an op it cannot handle: entering it raises."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise RuntimeError("cannot count this op")

    def __exit__(self, *exc):
        return False
