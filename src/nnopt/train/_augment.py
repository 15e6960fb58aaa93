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

from collections.abc import Iterable, Iterator

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

    def epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator: torch.Generator | None = None
        for xb, yb in batches:
            if generator is None or generator.device != xb.device:
                generator = torch.Generator(device=xb.device).manual_seed(self.seed * SEED_STRIDE + epoch)
            yield self(xb, generator), yb

    def __call__(self, xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = xb.reshape(len(xb), *self.shape)
        if "flip" in self.names:
            images = flip(images, generator)
        if "crop" in self.names:
            images = crop(images, self.pad, generator)
        if "jitter" in self.names:
            images = jitter(images, generator)
        return images.reshape(xb.shape)


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, device=like.device, generator=generator, dtype=like.dtype) * (high - low) + low


def flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mirrored = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


def crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    n, channels, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (n,), device=images.device, generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), device=images.device, generator=generator)
    rows = (top[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    index = torch.arange(n, device=images.device)[:, None, None, None]
    return padded[index, torch.arange(channels, device=images.device)[None, :, None, None], rows, cols]


def jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = len(images)
    contrast = _uniform(n, 0.8, 1.2, images, generator)[:, None, None, None]
    brightness = _uniform(n, -0.1, 0.1, images, generator)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast + mean + brightness
