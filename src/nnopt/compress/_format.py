"""The compressed model file, "nnopt.compressed/1" (conventionally `compressed.nnz`).

A zip archive, written atomically:
  header.json   (deflated) {"format": "nnopt.compressed/1", "meta": {model_spec, in_features, n_outputs,
                input_shape, task, ...}, "tensors": [{name, encoding, layout, dtype, shape, quant, arrays}]}
  payload.bin   (deflated: LZ77 + Huffman, the entropy-coding stage of Deep Compression) every array's bytes
                (ndarray.tobytes order), one after another; the header gives each array's offset and length
No pickle anywhere: a reader needs zipfile, json and numpy.

Each state-dict tensor takes the smallest honest encoding:
  quantized weight  integer codes offset to unsigned and bit-packed (8 bits: 1 byte each, 4 bits: two per
                    byte, 2 bits: four per byte, 1 bit: eight per byte) + float32 scales (+ uint8 zero points
                    for asymmetric); when many codes stand for 0, a bitmap of the non-zero positions or CSR
                    (row pointers + column indices) + packed non-zero codes, if smaller than dense;
  float weight      (2-D and up) dense, or, if smaller, bitmap (np.packbits of the non-zero mask + the non-zero
                    values) or CSR (row pointers + column indices in the smallest unsigned dtype + values);
  everything else   (biases, BatchNorm statistics, counters) as-is.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnopt.compress._quant import QAT_BITS, QTensor, check_bits, dequantize, qrange
from nnopt.errors import UsageError
from nnopt.fileio import atomic_write
from nnopt.models import build_model, load_model

FORMAT = "nnopt.compressed/1"
HEADER = "header.json"
PAYLOAD = "payload.bin"  # every array, packed, one after another (offsets in the header)
EXTENSION = ".nnz"
LAYOUTS = ("dense", "bitmap", "csr")
_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
    "int64", "bool")}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same model gives the same bytes
_RESERVED_META = ("format", "state_dict", "quantization", "encodings")


# ---- writing ---------------------------------------------------------------------------------------------

def save_compressed(path: str | Path, model: nn.Module, meta: dict[str, Any],
                    qweights: dict[str, QTensor] | None = None) -> dict[str, Any]:
    """Write `model` (its quantized weights from `qweights`, the rest from its state dict) to `path`.

    meta: model_spec, in_features, n_outputs, input_shape, task (as in the nnopt.model/1 file), plus any
    JSON-able extras. Returns the size report: file_bytes, fp32_state_dict_bytes (torch.save of the model's
    state dict), ratio, payload_bytes, header_bytes and per tensor {name, encoding, bytes, arrays, candidates}.
    """
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise UsageError("the model is still prepared for QAT; call finish_qat(model) before saving")
    missing = [k for k in ("model_spec", "in_features", "n_outputs") if meta.get(k) in (None, "")]
    if missing:
        raise UsageError(f"save_compressed needs meta['{missing[0]}'] to rebuild the network; pass the meta of "
                         "the model file (nnopt.models.load_model) or of the run")
    qweights = dict(qweights or {})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    unknown = sorted(set(qweights) - set(state))
    if unknown:
        raise UsageError(f"quantized weight '{unknown[0]}' is not in the model; quantize this model")
    tensors, arrays, offset = [], [], 0
    for name, tensor in state.items():
        if name in qweights:
            entry, parts = _encode_quantized(name, tensor, qweights[name])
        else:
            entry, parts = _encode_float(name, tensor)
        entry["arrays"] = {}
        for part, data in parts:  # every array goes into one payload entry, at its offset
            raw = _to_bytes(data)
            arrays.append(raw)
            entry["arrays"][part] = {"offset": offset, "bytes": len(raw), "dtype": _dtype_name(data),
                                     "count": int(data.numel())}
            offset += len(raw)
        tensors.append(entry)
    header = {"format": FORMAT, "meta": _jsonable({k: v for k, v in meta.items() if k not in _RESERVED_META}),
              "tensors": tensors}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")

    def write(fh: Any) -> None:
        with zipfile.ZipFile(fh, "w") as zf:
            zf.writestr(zipfile.ZipInfo(HEADER, _EPOCH), header_bytes, compress_type=zipfile.ZIP_DEFLATED)
            # DEFLATE (LZ77 + Huffman) over the packed arrays: the entropy-coding stage of Deep Compression
            zf.writestr(zipfile.ZipInfo(PAYLOAD, _EPOCH), b"".join(arrays), compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=9)

    path = atomic_write(path, write)
    with zipfile.ZipFile(path) as zf:
        header_stored = zf.getinfo(HEADER).compress_size
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    file_bytes, fp32_bytes = path.stat().st_size, len(buffer.getvalue())
    report_tensors = [{"name": t["name"], "encoding": t["encoding"], "bytes": t["bytes"],
                       "arrays": {part: _nbytes(a) for part, a in t["arrays"].items()},
                       "candidates": t["candidates"]} for t in tensors]
    return {"path": str(path), "file_bytes": file_bytes, "fp32_state_dict_bytes": fp32_bytes,
            "ratio": file_bytes / fp32_bytes, "payload_bytes": sum(t["bytes"] for t in tensors),
            "header_bytes": header_stored, "tensors": report_tensors}


def _encode_float(name: str, t: torch.Tensor) -> tuple[dict[str, Any], list[tuple[str, torch.Tensor]]]:
    """Dense, bitmap or CSR, whichever is smallest (sparse layouts only for floating weights of 2+ dims)."""
    t = t.contiguous()
    kind = _kind(t.dtype)
    entry = {"name": name, "dtype": _dtype_name(t), "shape": list(t.shape), "quant": None}
    dense = t.numel() * t.element_size()
    if not (t.is_floating_point() and t.dim() >= 2 and t.numel() > 0):
        return _finish(entry, kind, "dense", {"dense": dense}), [("values", t.reshape(-1))]
    flat = t.reshape(-1)
    mask = flat != 0
    nnz = int(mask.sum())
    rows, cols = t.shape[0], t.numel() // t.shape[0]
    values = nnz * t.element_size()
    sizes = {"dense": dense, "bitmap": math.ceil(t.numel() / 8) + values,
             "csr": (rows + 1) * _uint_for(nnz).itemsize + nnz * _uint_for(cols - 1).itemsize + values}
    layout = min(LAYOUTS, key=lambda k: sizes[k])
    if layout == "dense":
        return _finish(entry, kind, layout, sizes), [("values", flat)]
    return _finish(entry, kind, layout, sizes), [*_positions(layout, mask.numpy(), rows, cols),
                                                 ("values", flat[mask])]


def _encode_quantized(name: str, t: torch.Tensor, qt: QTensor) -> tuple[dict[str, Any], list]:
    """Bit-packed unsigned codes (dense, bitmap or CSR of the codes that are not the zero value) + scales."""
    if tuple(qt.shape) != tuple(t.shape):
        raise UsageError(f"quantized weight {name} has shape {list(qt.shape)}, the model's {list(t.shape)}; "
                         "quantize this model")
    bits = check_bits(qt.bits, QAT_BITS)
    codes = qt.q.to(torch.int32)
    qmin, qmax = qrange(bits, qt.scheme)
    if codes.numel() and (int(codes.min()) < qmin or int(codes.max()) > qmax):
        raise UsageError(f"quantized weight {name} has codes outside {qmin}..{qmax} for {bits}-bit {qt.scheme}; "
                         "quantize it with quantize_model or finish_qat")
    zero = qt.broadcast(qt.zero_point.to(torch.int32))  # the code of 0.0: the zero point (0 when symmetric)
    if qt.scheme == "binary":  # -1 -> 0, +1 -> 1; no code stands for 0
        unsigned, mask = (codes > 0).to(torch.int32), torch.ones(codes.numel(), dtype=torch.bool)
    else:
        unsigned, mask = codes - qmin, (codes != zero).reshape(-1)
    flat = unsigned.reshape(-1).numpy().astype(np.uint8)
    n, nnz = flat.size, int(mask.sum())
    rows, cols = (t.shape[0], n // t.shape[0]) if t.dim() >= 1 and t.shape[0] else (1, n)
    sizes = {"dense": math.ceil(n * bits / 8)}
    if t.dim() >= 2 and qt.scheme != "binary":
        packed_nnz = math.ceil(nnz * bits / 8)
        sizes["bitmap"] = math.ceil(n / 8) + packed_nnz
        sizes["csr"] = (rows + 1) * _uint_for(nnz).itemsize + nnz * _uint_for(cols - 1).itemsize + packed_nnz
    layout = min(sizes, key=lambda k: sizes[k])
    if layout == "dense":
        parts = [("codes", torch.from_numpy(pack_codes(flat, bits)))]
    else:
        mask_np = mask.numpy()
        parts = [*_positions(layout, mask_np, rows, cols), ("codes", torch.from_numpy(pack_codes(flat[mask_np], bits)))]
    parts.append(("scale", qt.scale.detach().cpu().to(torch.float32).reshape(-1)))
    if qt.scheme == "asymmetric":
        parts.append(("zero_point", qt.zero_point.cpu().to(torch.uint8).reshape(-1)))
    extra = sum(p.numel() * p.element_size() for key, p in parts if key in ("scale", "zero_point"))
    sizes = {k: v + extra for k, v in sizes.items()}
    entry = {"name": name, "dtype": _dtype_name(t), "shape": list(t.shape),
             "quant": {"bits": bits, "scheme": qt.scheme, "axis": qt.axis}}
    return _finish(entry, f"int{bits}", layout, sizes), parts


def _positions(layout: str, mask: np.ndarray, rows: int, cols: int) -> list[tuple[str, torch.Tensor]]:
    """Where the non-zeros are: a packed bitmap, or CSR row pointers + column indices."""
    if layout == "bitmap":
        return [("mask", torch.from_numpy(np.packbits(mask)))]
    grid = mask.reshape(rows, cols)
    nnz = int(mask.sum())
    indptr = np.concatenate([[0], np.cumsum(grid.sum(axis=1))]).astype(_uint_for(nnz))
    indices = np.nonzero(grid)[1].astype(_uint_for(cols - 1))
    return [("indptr", torch.from_numpy(indptr)), ("indices", torch.from_numpy(indices))]


def _finish(entry: dict[str, Any], kind: str, layout: str, sizes: dict[str, int]) -> dict[str, Any]:
    entry.update(encoding=f"{kind}-{layout}", layout=layout, bytes=sizes[layout], candidates=sizes)
    return entry


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


# ---- reading ---------------------------------------------------------------------------------------------

def is_compressed_file(path: str | Path) -> bool:
    """True when `path` is a zip holding an nnopt.compressed/1 header."""
    try:
        _read_header(Path(path))
        return True
    except (UsageError, OSError):
        return False


def load_compressed(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a compressed.nnz file with fp32 weights (codes dequantized), in eval mode.

    Returns (model, meta); meta adds "quantization" {name: {bits, scheme}} and "encodings" {name: encoding}.
    """
    path = Path(path)
    state, header = read_compressed(path)
    meta = dict(header["meta"])
    try:
        model = build_model(meta["model_spec"], in_features=meta["in_features"], n_outputs=meta["n_outputs"],
                            input_shape=tuple(meta["input_shape"]) if meta.get("input_shape") else None,
                            task=meta.get("task"))
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(f"{path.name} does not match its model spec ({reason}); "
                         "re-save it with save_compressed") from None
    model.eval()
    meta["format"] = FORMAT
    meta["quantization"] = {t["name"]: {"bits": t["quant"]["bits"], "scheme": t["quant"]["scheme"]}
                            for t in header["tensors"] if t.get("quant")}
    meta["encodings"] = {t["name"]: t["encoding"] for t in header["tensors"]}
    return model, meta


def read_compressed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict with every tensor decoded to its stored dtype, header) of a compressed file."""
    path = Path(path)
    header = _read_header(path)
    state: dict[str, torch.Tensor] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            payload = zf.read(PAYLOAD)
            for entry in header["tensors"]:
                arrays = {part: _read_array(payload, spec) for part, spec in entry["arrays"].items()}
                state[entry["name"]] = _decode(entry, arrays)
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, zipfile.BadZipFile, zlib.error,
            EOFError) as exc:
        raise UsageError(f"{path.name} is a corrupt nnopt compressed model ({type(exc).__name__}: {exc}); "
                         "write it again") from None
    return state, header


def _read_header(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"compressed model not found: {path}; give a compressed.nnz file")
    not_ours = UsageError(f"{path.name} is not an nnopt compressed model (no '{FORMAT}' header)")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read(HEADER).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, NotImplementedError, RuntimeError):
        raise not_ours from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("tensors"), list):
        raise not_ours
    return header


def _read_array(payload: bytes, spec: dict[str, Any]) -> torch.Tensor:
    dtype = _DTYPES[spec["dtype"]]
    start, size = int(spec["offset"]), int(spec["bytes"])
    if start < 0 or start + size > len(payload):
        raise ValueError(f"an array at offset {start} runs past the payload's {len(payload)} bytes")
    raw = bytearray(payload[start:start + size])
    count = int(spec["count"])
    if count == 0:
        return torch.empty(0, dtype=dtype)
    tensor = torch.frombuffer(raw, dtype=dtype)
    if tensor.numel() != count:
        raise ValueError(f"the array at offset {start} holds {tensor.numel()} values, the header says {count}")
    return tensor


def _decode(entry: dict[str, Any], arrays: dict[str, torch.Tensor]) -> torch.Tensor:
    shape, layout = tuple(entry["shape"]), entry["layout"]
    numel = math.prod(shape)
    dtype = _DTYPES[entry["dtype"]]
    quant = entry.get("quant")
    rows = shape[0] if shape and shape[0] else 1
    cols = numel // rows if rows else 0
    if quant is None:
        values = arrays["values"]
        if layout == "dense":
            return values.reshape(shape).clone()
        flat = torch.zeros(numel, dtype=dtype)
        flat[torch.from_numpy(_mask(layout, arrays, numel, rows, cols))] = values
        return flat.reshape(shape)
    bits, scheme = int(quant["bits"]), quant["scheme"]
    qmin, _ = qrange(bits, scheme)
    scale = arrays["scale"].clone()
    zero_point = arrays["zero_point"].to(torch.int32) if "zero_point" in arrays else torch.zeros_like(
        scale, dtype=torch.int32)
    qt = QTensor(q=torch.empty(0), scale=scale, zero_point=zero_point, bits=bits, scheme=scheme, shape=shape,
                 axis=int(quant.get("axis", 0)))
    if layout == "dense":
        unsigned = torch.from_numpy(unpack_codes(arrays["codes"].numpy(), bits, numel)).to(torch.int32)
    else:
        mask = torch.from_numpy(_mask(layout, arrays, numel, rows, cols))
        nonzero = torch.from_numpy(unpack_codes(arrays["codes"].numpy(), bits, int(mask.sum()))).to(torch.int32)
        unsigned = (qt.broadcast(zero_point).expand(shape).reshape(-1) - qmin).clone()  # every code: 0.0
        unsigned[mask] = nonzero
    unsigned = unsigned.reshape(shape)
    if scheme == "binary":
        qt.q = (unsigned * 2 - 1).to(torch.int8)
    else:
        qt.q = (unsigned + qmin).to(torch.uint8 if scheme == "asymmetric" else torch.int8)
    return dequantize(qt).to(dtype)


def _mask(layout: str, arrays: dict[str, torch.Tensor], numel: int, rows: int, cols: int) -> np.ndarray:
    if layout == "bitmap":
        return np.unpackbits(arrays["mask"].numpy(), count=numel).astype(bool)
    indptr, indices = arrays["indptr"].numpy().astype(np.int64), arrays["indices"].numpy().astype(np.int64)
    row_of = np.repeat(np.arange(rows), np.diff(indptr))
    grid = np.zeros((rows, cols), dtype=bool)
    grid[row_of, indices] = True
    return grid.reshape(-1)


# ---- one loader for every model file ---------------------------------------------------------------------

def nnopt_load(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a compressed.nnz file, a model.pt (nnopt.model/1) or a run directory (its compressed.nnz, else
    its model.pt); return (model in eval mode, meta)."""
    path = Path(path)
    if path.is_dir():
        for name in (f"compressed{EXTENSION}", "model.pt"):
            if (path / name).is_file():
                return nnopt_load(path / name)
        raise UsageError(f"{path} holds no compressed{EXTENSION} or model.pt; give a run directory or a model file")
    if not path.exists():
        raise UsageError(f"model file not found: {path}; give a run directory, a model.pt or a .nnz file")
    if is_compressed_file(path):
        return load_compressed(path)
    return load_model(path)


# ---- helpers ---------------------------------------------------------------------------------------------

def _uint_for(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding 0..max_value."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _kind(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.float64: "fp64", torch.bfloat16: "bf16"}.get(
        dtype, str(dtype).removeprefix("torch."))


def _dtype_name(t: torch.Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise UsageError(f"cannot store a {name} tensor in a compressed model; convert it to float32")
    return name


def _to_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


def _nbytes(spec: dict[str, Any]) -> int:
    return int(spec["count"]) * _DTYPES[spec["dtype"]].itemsize


def _jsonable(obj: Any) -> Any:
    """Meta as plain JSON (tuples -> lists, numpy / torch scalars -> numbers, paths -> strings)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
