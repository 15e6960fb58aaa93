"""The compressed model file, "nnopt.compressed/3" (conventionally `compressed.nnz`); "/1" and "/2" files are
still read.

A zip archive, written atomically:
  header.json   {"format": "nnopt.compressed/3", "meta": {model_spec, in_features, n_outputs, input_shape, task,
                ...}, "meta_arrays": {"preprocessing.x_mean": array, ...}, "tensors": [{name, encoding, layout,
                dtype, shape, quant, arrays}]}
  payload.bin   every array's bytes (ndarray.tobytes order), one after another; the header gives each array's
                offset, byte length, dtype and count
  program.pt2   only for a network that no spec rebuilds (a user's module whose class is not importable, e.g.
                defined in __main__ or a notebook; meta "model_spec" null, "module_class" its class): its
                torch.export program traced with every state-dict tensor zero, so the graph alone (a few kB
                deflated); load_compressed loads the decoded weights into it. Inference only: nothing can train it.
(/3) The data's per-feature statistics (preprocessing x_mean / x_std / x_min / x_max, when 8 or more) are
float32 arrays in the payload instead of JSON text (4 bytes a value instead of about 19 characters): float32 is
the precision the network computes in, and float32 inputs are scaled with float32 statistics anyway.
Each member is DEFLATE- (LZ77 + Huffman, the entropy-coding stage of Deep Compression) or LZMA-compressed
(LZ77 + a range coder), whichever is smaller; Python's zipfile reads both. No pickle anywhere: a reader needs
zipfile, json and numpy.

Each state-dict tensor takes the layout whose arrays compress smallest (real DEFLATE sizes, compared per tensor):
  dense    every value, or every integer code offset to unsigned and bit-packed (8 bits: 1 byte each, 4 bits:
           two per byte, 2 bits: four per byte, 1 bit: eight per byte);
  bitmap   np.packbits of the non-zero mask + the non-zero values (codes);
  csr      row pointers + column indices, each in the smallest unsigned dtype, + the non-zero values (codes);
  delta    (/2) Deep Compression's relative indices: for each non-zero, in row-major order, the number of zeros
           skipped since the previous one, as uint8; a run longer than 255 takes a filler entry (gap 255 landing
           on a zero, stored with value 0 / the zero code). Small gaps repeat, so they entropy-code far better
           than absolute column indices;
sparse layouts only for weights of 2+ dims (quantized: positions of the codes that are not the zero value).
Quantized weights add float scales (+ uint8 zero points for asymmetric). Biases, BatchNorm statistics and
counters are stored as they are. (/2) A float32 array whose every value is exactly a float16 (rounded scales and
biases, see _quant.py) is stored as float16, losslessly: its array dtype says so, the tensor's dtype stays float32.
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

from nnopt.compress._layouts import (
    LAYOUTS,
    Parts,
    _positions,
    _stored_positions,
    pack_codes,
    unpack_codes,
)
from nnopt.compress._prune_graph import apply_shapes
from nnopt.compress._quant import QAT_BITS, QTensor, check_bits, dequantize, qrange
from nnopt.errors import UsageError, require_model_path
from nnopt.fileio import atomic_write
from nnopt.models import build_model, load_model, load_program_bytes, program_bytes, takes_flat_rows

FORMAT = "nnopt.compressed/3"
# read; /1 has no delta layout and no float16-stored float32 arrays, /2 keeps the feature statistics in the JSON
FORMATS = ("nnopt.compressed/1", "nnopt.compressed/2", FORMAT)
HEADER = "header.json"
PAYLOAD = "payload.bin"
PROGRAM_MEMBER = "program.pt2"  # the graph of a network without a recipe (weights zero: they are in the payload)  # every array, packed, one after another (offsets in the header)
EXTENSION = ".nnz"
LZMA_MAX_BYTES = 16 << 20  # LZMA is tried up to this member size (beyond it, seconds per save for a few %)
_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
    "int64", "bool")}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same model gives the same bytes
_RESERVED_META = ("format", "state_dict", "quantization", "encodings", "loaded_program")
STAT_KEYS = ("x_mean", "x_std", "x_min", "x_max")  # per-feature statistics of meta["preprocessing"]
STAT_MIN_COUNT = 8  # shorter lists stay in the JSON


# ---- writing ---------------------------------------------------------------------------------------------

def save_compressed(path: str | Path, model: nn.Module, meta: dict[str, Any],
                    qweights: dict[str, QTensor] | None = None, *,
                    layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Any]:
    """Write `model` (its quantized weights from `qweights`, the rest from its state dict) to `path`.

    meta: model_spec, in_features, n_outputs, input_shape, task (as in the nnopt.model/1 file), plus any
    JSON-able extras. layouts: the sparse layouts a weight may take (dense always; fewer only to measure what
    one layout saves). Returns the size report: file_bytes, fp32_state_dict_bytes (torch.save of the model's
    state dict), ratio, payload_bytes (packed, before the zip's compression), header_bytes and payload_stored
    (compressed, as in the zip), and per tensor {name, encoding, bytes (packed), arrays (packed bytes of
    each), deflated (its arrays alone, DEFLATE-compressed), candidates (the same for every layout tried)};
    a tensor with one possible layout (dense) has deflated None and no candidates.
    """
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise UsageError("the model is still prepared for QAT; call finish_qat(model) before saving")
    missing = [k for k in ("in_features", "n_outputs") if meta.get(k) in (None, "")]
    if meta.get("model_spec") in (None, "") and not meta.get("module_class"):
        missing.insert(0, "model_spec")
    if missing:
        raise UsageError(f"save_compressed needs meta['{missing[0]}'] to rebuild the network; pass the meta of "
                         "the model file (nnopt.models.load_model) or of the run")
    unknown_layouts = [k for k in layouts if k not in LAYOUTS]
    if unknown_layouts:
        raise UsageError(f"unknown layout '{unknown_layouts[0]}'; choose from {', '.join(LAYOUTS)}")
    qweights = dict(qweights or {})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    unknown = sorted(set(qweights) - set(state))
    if unknown:
        raise UsageError(f"quantized weight '{unknown[0]}' is not in the model; quantize this model")
    tensors, report, arrays, offset = [], [], [], 0
    for name, tensor in state.items():
        if name in qweights:
            entry, options = _encode_quantized(name, tensor, qweights[name], layouts)
        else:
            entry, options = _encode_float(name, tensor, layouts)
        layout, candidates = _smallest(options)
        entry.update(encoding=f"{entry.pop('kind')}-{layout}", layout=layout, arrays={})
        for part, data in options[layout]:  # every array goes into one payload entry, at its offset
            raw = _to_bytes(data)
            arrays.append(raw)
            entry["arrays"][part] = {"offset": offset, "bytes": len(raw), "dtype": _dtype_name(data),
                                     "count": int(data.numel())}
            offset += len(raw)
        tensors.append(entry)
        report.append({"name": name, "encoding": entry["encoding"],
                       "bytes": sum(spec["bytes"] for spec in entry["arrays"].values()),
                       "arrays": {part: spec["bytes"] for part, spec in entry["arrays"].items()},
                       "deflated": candidates.get(layout), "candidates": candidates})
    header_meta = _jsonable({k: v for k, v in meta.items() if k not in _RESERVED_META})
    meta_arrays: dict[str, dict[str, Any]] = {}
    for key, values in _stat_arrays(header_meta).items():
        raw = values.tobytes()
        arrays.append(raw)
        meta_arrays[f"preprocessing.{key}"] = {"offset": offset, "bytes": len(raw), "dtype": "float32",
                                               "count": int(values.size)}
        offset += len(raw)
    header = {"format": FORMAT, "meta": header_meta, **({"meta_arrays": meta_arrays} if meta_arrays else {}),
              "tensors": tensors}
    members = [(HEADER, json.dumps(header, separators=(",", ":")).encode("utf-8")), (PAYLOAD, b"".join(arrays))]
    if not meta.get("model_spec"):
        members.append((PROGRAM_MEMBER, _graph(model, meta)))
    methods = {name: _smaller_method(name, data) for name, data in members}

    def write(fh: Any) -> None:
        with zipfile.ZipFile(fh, "w") as zf:
            for name, data in members:
                zf.writestr(zipfile.ZipInfo(name, _EPOCH), data, compress_type=methods[name], compresslevel=9)

    path = atomic_write(path, write)
    with zipfile.ZipFile(path) as zf:
        stored = {name: zf.getinfo(name).compress_size for name, _ in members}
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    file_bytes, fp32_bytes = path.stat().st_size, len(buffer.getvalue())
    return {"path": str(path), "file_bytes": file_bytes, "fp32_state_dict_bytes": fp32_bytes,
            "ratio": file_bytes / fp32_bytes, "payload_bytes": len(members[1][1]), "header_bytes": stored[HEADER],
            "payload_stored": stored[PAYLOAD], "program_stored": stored.get(PROGRAM_MEMBER), "tensors": report}


def _graph(model: nn.Module, meta: dict[str, Any]) -> bytes:
    """The torch.export program (graph only, weights zero) of a network that no spec rebuilds."""
    shape = tuple(meta.get("sample_shape") or (meta["in_features"],))
    blob, error = program_bytes(model, shape, weights=False)
    if blob is None:
        raise UsageError(f"the compressed {type(model).__name__} cannot be saved without its class: torch.export "
                         f"cannot trace it ({error}); make the class importable (a module file, not __main__) so "
                         "the file can rebuild it")
    return blob




def _stat_arrays(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Take the long per-feature statistics out of meta["preprocessing"] (in place) as float32 arrays."""
    prep = meta.get("preprocessing")
    if not isinstance(prep, dict):
        return {}
    out = {}
    for key in STAT_KEYS:
        values = prep.get(key)
        if isinstance(values, list) and len(values) >= STAT_MIN_COUNT and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = np.asarray(values, dtype=np.float32)
    if out:
        meta["preprocessing"] = {k: v for k, v in prep.items() if k not in out}
    return out


def _encode_float(name: str, t: torch.Tensor, layouts: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Parts]]:
    """Dense, or a sparse layout of the non-zeros (floating weights of 2+ dims with at least one zero)."""
    t = t.contiguous()
    flat = _half_if_exact(t.reshape(-1))
    entry = {"name": name, "dtype": _dtype_name(t), "shape": list(t.shape), "quant": None, "kind": _kind(flat.dtype)}
    options = {"dense": [("values", flat)]}
    if t.is_floating_point() and t.dim() >= 2 and t.numel() > 0:
        mask = (t.reshape(-1) != 0).numpy()
        if not mask.all():
            for layout in (k for k in layouts if k != "dense"):
                parts, positions = _positions(layout, mask, t.shape[0], t.numel() // t.shape[0])
                options[layout] = [*parts, ("values", flat[torch.from_numpy(positions)])]
    return entry, options


def _encode_quantized(name: str, t: torch.Tensor, qt: QTensor,
                      layouts: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Parts]]:
    """Bit-packed unsigned codes, dense or at the positions of the codes that are not the zero value, + scales."""
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
        unsigned, mask = (codes > 0).to(torch.int32), np.ones(codes.numel(), dtype=bool)
    else:
        unsigned, mask = codes - qmin, (codes != zero).reshape(-1).numpy()
    flat = unsigned.reshape(-1).numpy().astype(np.uint8)
    tail = [("scale", _half_if_exact(qt.scale.detach().cpu().to(torch.float32).reshape(-1)))]
    if qt.scheme == "asymmetric":
        tail.append(("zero_point", qt.zero_point.cpu().to(torch.uint8).reshape(-1)))
    options = {"dense": [("codes", torch.from_numpy(pack_codes(flat, bits))), *tail]}
    if t.dim() >= 2 and qt.scheme != "binary" and not mask.all():
        for layout in (k for k in layouts if k != "dense"):
            parts, positions = _positions(layout, mask, t.shape[0], flat.size // t.shape[0])
            options[layout] = [*parts, ("codes", torch.from_numpy(pack_codes(flat[positions], bits))), *tail]
    entry = {"name": name, "dtype": _dtype_name(t), "shape": list(t.shape),
             "quant": {"bits": bits, "scheme": qt.scheme, "axis": qt.axis}, "kind": f"int{bits}"}
    return entry, options


def _smallest(options: dict[str, Parts]) -> tuple[str, dict[str, int]]:
    """The layout whose arrays DEFLATE smallest (ties: the first in LAYOUTS), and every layout's size; with one
    layout to choose from, nothing is compressed twice (sizes is empty)."""
    if len(options) == 1:
        return next(iter(options)), {}
    sizes = {layout: len(zlib.compress(b"".join(_to_bytes(a) for _, a in parts), 9))
             for layout, parts in options.items()}
    return min(sizes, key=lambda k: (sizes[k], LAYOUTS.index(k))), sizes


def _smaller_method(name: str, data: bytes) -> int:
    """ZIP_DEFLATED or, where the lzma module exists and it compresses smaller, ZIP_LZMA."""
    methods = [zipfile.ZIP_DEFLATED]
    if len(data) <= LZMA_MAX_BYTES and _has_lzma():
        methods.append(zipfile.ZIP_LZMA)
    sizes = {}
    for method in methods:
        trial = io.BytesIO()
        with zipfile.ZipFile(trial, "w") as zf:
            zf.writestr(zipfile.ZipInfo(name, _EPOCH), data, compress_type=method, compresslevel=9)
            sizes[method] = zf.getinfo(name).compress_size
    return min(methods, key=lambda m: sizes[m])


def _has_lzma() -> bool:
    try:
        import lzma  # noqa: F401  (optional in Python builds; DEFLATE alone then)
        return True
    except ImportError:
        return False


def _half_if_exact(t: torch.Tensor) -> torch.Tensor:
    """float32 values that are all exactly float16 numbers as float16 (half the bytes, nothing lost)."""
    if t.dtype != torch.float32 or t.numel() == 0:
        return t
    half = t.to(torch.float16)
    return half if torch.equal(half.to(torch.float32), t) else t


# ---- reading ---------------------------------------------------------------------------------------------

def is_compressed_file(path: str | Path) -> bool:
    """True when `path` is a zip holding an nnopt.compressed/1, /2 or /3 header."""
    try:
        _read_header(Path(path))
        return True
    except (UsageError, OSError):
        return False


def load_compressed(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a compressed.nnz file with fp32 weights (codes dequantized), in eval mode.

    Returns (model, meta); meta adds "format" (the file's), "quantization" {name: {bits, scheme}} and
    "encodings" {name: encoding}.
    """
    path = Path(path)
    state, header = read_compressed(path)
    meta = dict(header["meta"])
    if not meta.get("model_spec"):
        return _load_graph(path, state, header, meta), meta
    try:
        shape = meta.get("input_shape")
        if meta.get("sample_shape") and not takes_flat_rows(meta["model_spec"]):
            shape = meta["sample_shape"]  # what a factory was given at training time, as load_model does
        model = build_model(meta["model_spec"], in_features=meta["in_features"], n_outputs=meta["n_outputs"],
                            input_shape=tuple(shape) if shape else None, task=meta.get("task"))
        if meta.get("pruned_shapes"):  # structurally pruned by torch-pruning: smaller than its constructor builds
            apply_shapes(model, meta["pruned_shapes"], state)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(f"{path.name} does not match its model spec ({reason}); "
                         "re-save it with save_compressed") from None
    model.eval()
    _file_meta(meta, header)
    return model, meta


def _load_graph(path: Path, state: dict[str, torch.Tensor], header: dict[str, Any],
                meta: dict[str, Any]) -> nn.Module:
    """The network of a file without a spec: its program, with the file's weights."""
    try:
        with zipfile.ZipFile(path) as zf:
            blob = zf.read(PROGRAM_MEMBER)
    except (KeyError, OSError, zipfile.BadZipFile):
        raise UsageError(f"{path.name} holds a network without a model spec and no {PROGRAM_MEMBER}; "
                         "compress the model again") from None
    try:
        model = load_program_bytes(blob, str(meta.get("module_class") or "an unknown class").replace(":", "."),
                                   state)
    except Exception as exc:  # noqa: BLE001 - a damaged program, or weights that do not fit it
        raise UsageError(f"{path.name}'s {PROGRAM_MEMBER} cannot be loaded ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); compress the model again") from None
    meta["loaded_program"] = f"the torch.export program inside {path.name}"
    _file_meta(meta, header)
    return model


def _file_meta(meta: dict[str, Any], header: dict[str, Any]) -> None:
    meta["format"] = header["format"]
    meta["quantization"] = {t["name"]: {"bits": t["quant"]["bits"], "scheme": t["quant"]["scheme"]}
                            for t in header["tensors"] if t.get("quant")}
    meta["encodings"] = {t["name"]: t["encoding"] for t in header["tensors"]}


def read_compressed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict with every tensor decoded to its dtype, header) of a compressed file."""
    return _read(path, quantized_only=False)


def read_qweights(path: str | Path) -> dict[str, QTensor]:
    """The quantized weights of a compressed file as their integer codes and steps ({state-dict name: QTensor},
    what quantize_model / finish_qat returned when it was written; {} for a file with no quantized weight), for
    writers that keep the codes (quantized_onnx)."""
    return _read(path, quantized_only=True)[0]


def _read(path: str | Path, quantized_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    header = _read_header(path)
    state: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            payload = zf.read(PAYLOAD)
            for entry in header["tensors"]:
                if quantized_only and not entry.get("quant"):
                    continue
                arrays = {part: _read_array(payload, spec) for part, spec in entry["arrays"].items()}
                state[entry["name"]] = _decode_codes(entry, arrays) if quantized_only else _decode(entry, arrays)
            for dotted, spec in (header.get("meta_arrays") or {}).items():  # /3: back into the meta, as lists
                section, key = dotted.split(".")
                header["meta"][section] = {**header["meta"][section], key: _read_array(payload, spec).tolist()}
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, IndexError, zipfile.BadZipFile,
            zlib.error, EOFError, NotImplementedError, OSError) as exc:
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
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, NotImplementedError, RuntimeError, OSError):
        raise not_ours from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        raise not_ours
    found = header.get("format")
    if isinstance(found, str) and found.startswith("nnopt.compressed/") and found not in FORMATS:
        raise UsageError(f"{path.name} is in format {found}, newer than this nnopt reads ({', '.join(FORMATS)}); "
                         "upgrade nnopt")
    if found not in FORMATS:
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
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' of {entry['name']}")
    if quant is None:
        values = arrays["values"].to(dtype)
        if layout == "dense":
            return values.reshape(shape).clone()
        flat = torch.zeros(numel, dtype=dtype)
        flat[torch.from_numpy(_stored_positions(layout, arrays, numel, rows, cols))] = values
        return flat.reshape(shape)
    return dequantize(_decode_codes(entry, arrays)).to(dtype)


def _decode_codes(entry: dict[str, Any], arrays: dict[str, torch.Tensor]) -> QTensor:
    """A quantized tensor's codes (every position, zeros included) and steps."""
    shape, layout, quant = tuple(entry["shape"]), entry["layout"], entry["quant"]
    numel = math.prod(shape)
    rows = shape[0] if shape and shape[0] else 1
    cols = numel // rows if rows else 0
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' of {entry['name']}")
    bits, scheme = int(quant["bits"]), quant["scheme"]
    qmin, _ = qrange(bits, scheme)
    scale = arrays["scale"].to(torch.float32).clone()
    zero_point = arrays["zero_point"].to(torch.int32) if "zero_point" in arrays else torch.zeros_like(
        scale, dtype=torch.int32)
    qt = QTensor(q=torch.empty(0), scale=scale, zero_point=zero_point, bits=bits, scheme=scheme, shape=shape,
                 axis=int(quant.get("axis", 0)))
    if layout == "dense":
        unsigned = torch.from_numpy(unpack_codes(arrays["codes"].numpy(), bits, numel)).to(torch.int32)
    else:
        positions = torch.from_numpy(_stored_positions(layout, arrays, numel, rows, cols))
        stored = torch.from_numpy(unpack_codes(arrays["codes"].numpy(), bits, len(positions))).to(torch.int32)
        unsigned = (qt.broadcast(zero_point).expand(shape).reshape(-1) - qmin).clone()  # every code: 0.0
        unsigned[positions] = stored
    unsigned = unsigned.reshape(shape)
    if scheme == "binary":
        qt.q = (unsigned * 2 - 1).to(torch.int8)
    else:
        qt.q = (unsigned + qmin).to(torch.uint8 if scheme == "asymmetric" else torch.int8)
    return qt


# ---- one loader for every model file ---------------------------------------------------------------------

def nnopt_load(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a compressed.nnz file, a model.pt (nnopt.model/1) or a run directory (its compressed.nnz, else
    its model.pt); return (model in eval mode, meta)."""
    require_model_path("path", path)
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
