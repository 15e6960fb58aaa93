"""Image folders of three learnable shapes, written with Pillow: a filled circle, a square and a cross at random
positions, sizes and colours on a noisy background; PNG and JPEG, RGB and grey, uneven sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "cross", "square")


def shape_image(kind: str, rng: np.random.Generator, size: tuple[int, int] = (24, 24), grey: bool = False
                ) -> Image.Image:
    width, height = size
    noise = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(img)
    side = int(rng.integers(min(size) // 2, min(size) * 3 // 4))
    x0, y0 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
    colour = tuple(int(c) for c in rng.integers(140, 256, 3))
    box = (x0, y0, x0 + side, y0 + side)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        bar = max(2, side // 4)
        mid_x, mid_y = x0 + side // 2, y0 + side // 2
        draw.rectangle((x0, mid_y - bar // 2, x0 + side, mid_y + bar // 2), fill=colour)
        draw.rectangle((mid_x - bar // 2, y0, mid_x + bar // 2, y0 + side), fill=colour)
    return img.convert("L") if grey else img


def write_folder(root: Path, per_class: int, seed: int = 0, *, sizes=((24, 24),), grey: float = 0.0,
                 jpeg: float = 0.0, shapes=SHAPES) -> list[Path]:
    """ROOT/SHAPE/NNN.(png|jpg); `grey` / `jpeg`: the share of grey images and of JPEG files."""
    rng = np.random.default_rng(seed)
    written = []
    for kind in shapes:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = sizes[int(rng.integers(len(sizes)))]
            img = shape_image(kind, rng, size, grey=bool(rng.random() < grey))
            path = root / kind / (f"{i:04d}.jpg" if rng.random() < jpeg else f"{i:04d}.png")
            img.save(path, quality=90) if path.suffix == ".jpg" else img.save(path)
            written.append(path)
    return written


FOUR_CLASSES = ("circle", "noise", "square", "stripes")


def four_class_image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A filled circle, a filled square or vertical stripes in a bright colour on a dark background near the
    centre, or uniform RGB noise."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    pen = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    radius = int(rng.integers(size // 4, size // 3))
    cx, cy = (int(v) for v in rng.integers(size // 2 - 3, size // 2 + 4, 2))
    if kind == "circle":
        pen.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif kind == "square":
        pen.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif kind == "stripes":
        for x in range(int(rng.integers(0, 4)), size, 6):
            pen.line([x, 0, x, size], fill=colour, width=2)
    else:
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    return img


def four_class_arrays(per_class: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images write_four_classes writes, in the same order, as a uint8 (n, 3, size, size) array and their
    class indices (FOUR_CLASSES order)."""
    rng = np.random.default_rng(seed)
    images = [np.asarray(four_class_image(kind, size, rng)).transpose(2, 0, 1)
              for kind in FOUR_CLASSES for _ in range(per_class)]
    return np.stack(images).astype(np.uint8), np.repeat(np.arange(len(FOUR_CLASSES)), per_class)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """One IDX file (MNIST's format) holding a uint8 array: 0, 0, 0x08, ndim, big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def write_four_class_idx(root: Path, per_class: int, size: int, seed: int = 0) -> Path:
    """ROOT/train-images-idx3-ubyte and ROOT/train-labels-idx1-ubyte of four_class_arrays' images, made grey (the
    mean of the three channels): IDX directories hold (n, H, W) images."""
    images, labels = four_class_arrays(per_class, size, seed)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", images.mean(axis=1).round().astype(np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", labels.astype(np.uint8))
    return root


def write_four_classes(root: Path, per_class: int, size: int, seed: int = 0) -> None:
    """ROOT/CLASS/NNNN.png for the FOUR_CLASSES, RGB, size x size."""
    rng = np.random.default_rng(seed)
    for kind in FOUR_CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            four_class_image(kind, size, rng).save(root / kind / f"{i:04d}.png")


def bn_residual_cnn(channels: int, classes: int, width: int = 16):
    """A small residual CNN with BatchNorm, as users write them: what tests/data/test_image_folder_scaling.py and
    benchmarks/folder_scaling.py train on the four-class folder."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.conv1, self.norm1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
            self.conv2, self.norm2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

        def forward(self, x):
            return (x + self.norm2(self.conv2(self.norm1(self.conv1(x)).relu()))).relu()

    return nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         Block(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))
