"""Feature and target scaling, fitted on the train split only, recorded as plain JSON-able numbers."""

from __future__ import annotations

import numpy as np
import torch

from nnopt.errors import DataError, param


def eight_bit_images(X: np.ndarray) -> bool:
    """Whether an array holds 8-bit images (uint8, one sample of rank 2 or more: arrays, .npy/.npz, IDX files,
    memory-mapped): images whatever their rank, so scale="auto" standardizes them per channel as it does an image
    folder (pixels divided by 255 alone left a BatchNorm CNN at chance on low-contrast images)."""
    return X.ndim >= 3 and X.dtype == np.uint8


def resolve_scale(scale: str, pixel_max: float | None, channels: int | None = None, images: bool = False) -> str:
    """auto -> "pixel" for pixel data (divide by the pixel max), "channel" for other images (`images`: samples
    of shape (C, H, W)), else "standard"; an explicit "channel" needs rows with `channels`."""
    if scale == "auto":
        return "pixel" if pixel_max else "channel" if images and channels else "standard"
    if scale == "channel" and not channels:
        raise DataError(f"{param('scale', 'channel')} standardizes each channel of images; these rows have no "
                        "channels (give (n, C, H, W) images, or (n, H, W) as one channel, or use "
                        f"{param('scale', 'standard')})")
    return scale


def _safe(spread: np.ndarray) -> np.ndarray:
    return np.where(spread > 0, spread, 1.0)  # a constant column stays put instead of dividing by zero


def fit_features(X: np.ndarray, kind: str, pixel_max: float | None, channels: int = 1) -> dict:
    """The fitted transform of `kind` as JSON-able numbers; "channel": one mean and std per channel of rows laid
    out channel by channel (a (C, H, W) sample flattened), as image pipelines normalize (C numbers, not one per
    pixel: a 3x32x32 model file keeps 6 statistics instead of 6,144)."""
    if kind == "pixel":
        return {"x_scale": "pixel", "x_divisor": float(pixel_max or 1.0)}
    if kind == "standard":
        mean = X.mean(axis=0, dtype=np.float64) if len(X) else np.zeros(X.shape[1])
        std = X.std(axis=0, dtype=np.float64) if len(X) else np.ones(X.shape[1])
        return {"x_scale": "standard", "x_mean": mean.tolist(), "x_std": _safe(std).tolist()}
    if kind == "channel":
        by_channel = X.reshape(len(X), channels, -1)
        mean = by_channel.mean(axis=(0, 2), dtype=np.float64) if len(X) else np.zeros(channels)
        std = by_channel.std(axis=(0, 2), dtype=np.float64) if len(X) else np.ones(channels)
        return {"x_scale": "channel", "x_mean": mean.tolist(), "x_std": _safe(std).tolist()}
    if kind == "minmax":
        low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        return {"x_scale": "minmax", "x_min": low.tolist(), "x_max": (low + _safe(high - low)).tolist()}
    return {"x_scale": "none"}


def apply_features(X: np.ndarray, params: dict) -> np.ndarray:
    """Scale rows with fitted params; float64 input is computed in float64 (precision), the rest in float32."""
    work = np.float64 if X.dtype == np.float64 else np.float32
    out = X.astype(work)  # always a copy: the caller's array is never changed
    kind = params["x_scale"]
    if kind == "pixel":
        out /= work(params["x_divisor"])
    elif kind in ("standard", "channel"):
        out -= feature_stat(params, "x_mean", out.shape[1]).astype(work)
        out /= feature_stat(params, "x_std", out.shape[1]).astype(work)
    elif kind == "minmax":
        low = np.asarray(params["x_min"], dtype=work)
        out -= low
        out /= np.asarray(params["x_max"], dtype=work) - low
    return np.ascontiguousarray(out, dtype=np.float32)


def feature_stat(params: dict, key: str, n_features: int) -> np.ndarray:
    """A recorded statistic per feature: as stored, or (x_scale "channel") each channel's value repeated over the
    channel's n_features / C positions."""
    values = np.asarray(params[key], dtype=np.float64)
    if params.get("x_scale") != "channel":
        return values
    if len(values) == 0 or n_features % len(values):
        raise DataError(f"rows have {n_features} features, which do not split into the {len(values)} channels the "
                        "data were prepared with")
    return np.repeat(values, n_features // len(values))


def fit_target(y: np.ndarray) -> tuple[list[float], list[float]]:
    y2 = y.reshape(len(y), -1).astype(np.float64)
    return y2.mean(axis=0).tolist(), _safe(y2.std(axis=0)).tolist()


def apply_target(y: np.ndarray, target_scale: tuple[list[float], list[float]] | None) -> np.ndarray:
    out = y.astype(np.float64)
    if target_scale is not None:
        mean, std = (np.asarray(v) for v in target_scale)
        out = (out - (mean if out.ndim == 2 else mean[0])) / (std if out.ndim == 2 else std[0])
    return np.ascontiguousarray(out, dtype=np.float32)


def apply_preprocessing(X, preprocessing: dict) -> torch.Tensor:
    """Apply a Data's recorded feature transform to new raw rows -> float32 (n, n_features) tensor."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"rows must be numeric; got dtype {X.dtype}")
    n_features = preprocessing["n_features"]
    if X.ndim == 1:  # one row, or a column of single-feature rows
        X = X.reshape(-1, 1) if n_features == 1 else X.reshape(1, -1)
    X = X.reshape(len(X), -1)
    if X.shape[1] != n_features:
        raise DataError(f"rows have {X.shape[1]} features but the data were prepared with {n_features}")
    return torch.from_numpy(apply_features(X, preprocessing))
