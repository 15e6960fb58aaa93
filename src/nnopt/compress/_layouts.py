"""Where the stored entries of a sparse tensor are, and how integer codes are packed: the layouts of the
compressed file (dense, bitmap, CSR, delta) and bit packing. Pure numpy, shared by the writer and the reader."""

from __future__ import annotations

import math

import numpy as np
import torch

LAYOUTS = ("dense", "bitmap", "csr", "delta")
GAP_MAX = 255  # delta gaps are uint8; a longer run of zeros takes a filler entry
Parts = list[tuple[str, torch.Tensor]]


def _positions(layout: str, mask: np.ndarray, rows: int, cols: int) -> tuple[Parts, np.ndarray]:
    """The arrays that say where the stored entries are, and those entries' flat positions (ascending)."""
    nonzero = np.flatnonzero(mask)
    if layout == "bitmap":
        return [("mask", torch.from_numpy(np.packbits(mask)))], nonzero
    if layout == "csr":
        indptr = np.concatenate([[0], np.cumsum(np.bincount(nonzero // cols, minlength=rows))])
        indices = nonzero % cols
        indptr, indices = indptr.astype(_uint_for(nonzero.size)), indices.astype(_uint_for(cols - 1))
        return [("indptr", torch.from_numpy(indptr)), ("indices", torch.from_numpy(indices))], nonzero
    skips = np.diff(nonzero, prepend=-1) - 1  # zeros since the previous non-zero
    fillers = skips // (GAP_MAX + 1)  # each filler covers GAP_MAX zeros and lands on one more
    counts = fillers + 1
    gaps = np.full(int(counts.sum()), GAP_MAX, dtype=np.uint8)
    gaps[np.cumsum(counts) - 1] = skips - fillers * (GAP_MAX + 1)
    return [("gaps", torch.from_numpy(gaps))], _delta_positions(gaps)


def _delta_positions(gaps: np.ndarray) -> np.ndarray:
    return np.cumsum(gaps.astype(np.int64) + 1) - 1


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes (< 2**bits) -> uint8 bytes, 8 // bits codes per byte, first code in the low bits."""
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return codes.copy()
    per = 8 // bits
    padded = np.zeros(math.ceil(codes.size / per) * per, dtype=np.uint8)
    padded[:codes.size] = codes
    groups = padded.reshape(-1, per)
    out = np.zeros(groups.shape[0], dtype=np.uint8)
    for i in range(per):
        out |= (groups[:, i] << (i * bits)).astype(np.uint8)
    return out


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of pack_codes: the first `count` codes."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return packed[:count].copy()
    per = 8 // bits
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    return ((packed[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:count].astype(np.uint8)


def _stored_positions(layout: str, arrays: dict[str, torch.Tensor], numel: int, rows: int, cols: int) -> np.ndarray:
    """The flat positions of the stored values (codes), whichever sparse layout says where they are."""
    if layout == "bitmap":
        positions = np.flatnonzero(np.unpackbits(arrays["mask"].numpy(), count=numel))
    elif layout == "csr":
        indptr, indices = arrays["indptr"].numpy().astype(np.int64), arrays["indices"].numpy().astype(np.int64)
        if indptr.size != rows + 1 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size \
                or np.any(indices >= max(cols, 1)):
            raise ValueError("CSR row pointers and column indices do not fit the tensor's shape")
        positions = np.repeat(np.arange(rows), np.diff(indptr)) * cols + indices
    else:
        positions = _delta_positions(arrays["gaps"].numpy())
    if positions.size and int(positions.max()) >= numel:
        raise ValueError(f"a stored position {int(positions.max())} is past the tensor's {numel} entries")
    return positions


def _uint_for(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding 0..max_value."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)
