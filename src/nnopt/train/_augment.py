"""Augmentation of training batches of images, on tensors with torch ops (torchvision is not used: its wheels are
built against another torch).

Applied per batch in training only; evaluation, predict and export never see it. Each epoch draws from a
generator seeded by (run seed, epoch), so a run is reproducible and a resumed run augments exactly as the
uninterrupted one would have.

- flip: each image mirrored left-right with probability 1/2.
- crop: each image padded with zeros by PAD (4 pixels, or a tenth of the side for images under 40 pixels) and
  cropped back to its size at a random offset: a random shift of up to PAD pixels.
- jitter: brightness (+- 0.1) and contrast (x 0.8 - 1.2, about the image's mean) per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnopt.errors import UsageError, param

SEED_STRIDE = 1_000_003  # epochs of one run never share a stream with another seed's


def crop_padding(height: int, width: int) -> int:
    side = min(height, width)
    return 4 if side >= 40 else max(1, side // 10)


class Augment:
    """Batches of a training epoch, augmented. `shape`: one sample's (C, H, W); batches may be flat rows."""

    def __init__(self, names: list[str], shape: tuple[int, ...] | None, seed: int):
        if shape is None or len(shape) != 3:
            got = "flat table rows" if shape is None else f"samples of shape {tuple(shape)}"
            raise UsageError(f"{param('augment')} applies to images, samples of shape (C, H, W); this data has {got}; "
                             f"drop {param('augment')}")
        self.names, self.shape, self.seed = list(names), tuple(int(d) for d in shape), int(seed)
        self.pad = crop_padding(*self.shape[1:])
        self._epoch, self._generator = 0, None

    def begin(self, epoch: int) -> None:
        """Start an epoch: its draws come from a generator seeded by (run seed, epoch)."""
        self._epoch, self._generator = epoch, None

    def __call__(self, xb: torch.Tensor, span: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The batch augmented. span (lo, hi, n): xb holds rows lo..hi of a global batch of n rows (a DDP rank's
        part); the random values are drawn for all n rows, as one process draws them, and rows lo..hi of them are
        applied, so a rank that reads only its rows augments them as one process would."""
        if self._generator is None or self._generator.device != xb.device:
            self._generator = torch.Generator(device=xb.device).manual_seed(self.seed * SEED_STRIDE + self._epoch)
        images = xb.reshape(len(xb), *self.shape)
        lo, hi, n = span if span is not None else (0, len(xb), len(xb))
        part = slice(lo, hi) if hi > lo else slice(0, len(xb))  # a weight-0 stand-in row: any of the values
        draws = _Draws(self._generator, n, part, images)
        if "flip" in self.names:
            images = flip(images, draws)
        if "crop" in self.names:
            images = crop(images, self.pad, draws)
        if "jitter" in self.names:
            images = jitter(images, draws)
        return images.reshape(xb.shape)


class _Draws:
    """Random values for the n rows of a global batch, each draw returning the rows of `part`."""

    def __init__(self, generator: torch.Generator, n: int, part: slice, like: torch.Tensor):
        self.generator, self.n, self.part, self.like = generator, n, part, like

    def uniform(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        values = torch.rand(self.n, device=self.like.device, generator=self.generator, dtype=self.like.dtype)
        return (values * (high - low) + low)[self.part]

    def integers(self, high: int) -> torch.Tensor:
        return torch.randint(0, high, (self.n,), device=self.like.device, generator=self.generator)[self.part]


def _whole(generator: torch.Generator | _Draws, images: torch.Tensor) -> _Draws:
    """The draws for a batch of these images alone (the ops called with a plain generator)."""
    return generator if isinstance(generator, _Draws) else _Draws(generator, len(images), slice(None), images)


def flip(images: torch.Tensor, generator: torch.Generator | _Draws) -> torch.Tensor:
    mirrored = _whole(generator, images).uniform() < 0.5
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


def crop(images: torch.Tensor, pad: int, generator: torch.Generator | _Draws) -> torch.Tensor:
    n, channels, height, width = images.shape
    draws = _whole(generator, images)
    padded = F.pad(images, (pad, pad, pad, pad))
    top, left = draws.integers(2 * pad + 1), draws.integers(2 * pad + 1)
    rows = (top[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    index = torch.arange(n, device=images.device)[:, None, None, None]
    return padded[index, torch.arange(channels, device=images.device)[None, :, None, None], rows, cols]


def jitter(images: torch.Tensor, generator: torch.Generator | _Draws) -> torch.Tensor:
    draws = _whole(generator, images)
    contrast = draws.uniform(0.8, 1.2)[:, None, None, None]
    brightness = draws.uniform(-0.1, 0.1)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast + mean + brightness
