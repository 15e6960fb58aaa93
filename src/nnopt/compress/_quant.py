"""Weight quantization: round-to-nearest PTQ (8 / 4 / 2 bits) and quantization-aware training (LSQ).

Every quantized weight is a `QTensor` of real integer codes plus per-channel scales; the file format
(`_format.py`) bit-packs those codes (4 bits: two per byte, 2 bits: four per byte), so an int4 weight takes
half the bytes of an int8 one on disk. Scales are float16 numbers (kept in float32 tensors) and a quantized
layer's bias is rounded to float16 too, so the file stores both in 2 bytes each without loss: next to 4- or
8-bit codes, 11 significant bits of a step or a bias are far below the rounding the codes already make (the
accuracy tables in benchmarks/RESULTS.md are measured with them).

In memory, a quantized model is evaluated the simple way: `apply_dequantized` writes `code * scale` back
into the fp32 weights, so torch computes in fp32 on weights that take exactly the quantized values (no
integer kernels; the accuracy is the quantized model's, the speed is fp32's).

QAT follows LSQ (Esser et al. 2020, "Learned Step Size Quantization"): each Linear / Conv weight is
parametrized (torch.nn.utils.parametrize) by a fake-quantizer with a learnable per-output-channel step, so
the modules stay Linear / Conv and `nnopt.fit` trains weights and steps together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnopt.errors import UsageError, unknown_name

BITS = (8, 4, 2)
SCHEMES = ("symmetric", "asymmetric")
QAT_BITS = (8, 4, 2, 1)  # 1 bit: binary weights, sign(w) * mean|w| per channel (XNOR-Net), QAT only
QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class QTensor:
    """A quantized tensor: integer codes and per-channel (or per-tensor) scale and zero point.

    q: int8 codes for "symmetric" (-qmax..qmax, qmax = 2**(bits-1) - 1) and "binary" (-1 / +1);
       uint8 codes for "asymmetric" (0..2**bits - 1). 4- and 2-bit codes sit one per byte in memory;
       the file packs them.
    scale: float32, shape [C] along `axis` (per channel) or [1] (per tensor).
    zero_point: int32, same shape as scale; 0 for symmetric and binary.
    Value of an element: (q - zero_point) * scale.
    """

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    bits: int
    scheme: str
    shape: tuple[int, ...]
    axis: int = 0

    def select(self, rows: torch.Tensor | None, cols: torch.Tensor | None) -> QTensor:
        """The codes of output channels `rows` and input columns `cols` only (None = all; axis 0 per channel)."""
        q, scale, zero_point = self.q, self.scale, self.zero_point
        if rows is not None:
            q = q[rows]
            if scale.numel() > 1:
                scale, zero_point = scale[rows], zero_point[rows]
        if cols is not None:
            q = q[:, cols]
        return replace(self, q=q, scale=scale, zero_point=zero_point, shape=tuple(q.shape))

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """A per-channel vector reshaped to broadcast against the codes."""
        if t.numel() == 1:
            return t.reshape([1] * len(self.shape))
        view = [1] * len(self.shape)
        view[self.axis] = -1
        return t.reshape(view)


def check_bits(bits: object, allowed: tuple[int, ...] = BITS) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        choices = ", ".join(str(b) for b in allowed[:-1]) + f" or {allowed[-1]}"
        raise UsageError(f"unsupported bit width {bits}; choose {choices}")
    return bits


def check_scheme(scheme: object) -> str:
    if scheme not in SCHEMES:
        raise unknown_name("quantization scheme", scheme, SCHEMES)
    return str(scheme)


def qrange(bits: int, scheme: str) -> tuple[int, int]:
    """The integer code range (inclusive) of a bit width and scheme."""
    if scheme == "binary":
        return -1, 1
    if scheme == "asymmetric":
        return 0, 2 ** bits - 1
    qmax = 2 ** (bits - 1) - 1
    return -qmax, qmax


def quantize_tensor(w: torch.Tensor, bits: int, scheme: str = "symmetric", per_channel: bool = True,
                    axis: int = 0) -> QTensor:
    """Round-to-nearest quantization of `w`; the error per element is at most scale / 2.

    symmetric: scale = max|w| / qmax, codes in [-qmax, qmax], zero is exactly 0.
    asymmetric: the range [min(w, 0), max(w, 0)] over 2**bits - 1 steps, integer zero point, so 0 stays exact.
    An all-zero channel gets scale 1 and codes equal to its zero point.
    """
    check_bits(bits)
    scheme = check_scheme(scheme)
    w = w.detach().to(torch.float32)
    if w.dim() == 0:
        w = w.reshape(1)
    axis = axis % w.dim()
    shape = tuple(w.shape)
    if per_channel:
        rows = w.movedim(axis, 0).reshape(shape[axis], -1)
    else:
        rows = w.reshape(1, -1)
    qmin, qmax = qrange(bits, scheme)
    if scheme == "symmetric":
        scale = rows.abs().amax(dim=1) / qmax
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo = rows.amin(dim=1).clamp(max=0.0)
        hi = rows.amax(dim=1).clamp(min=0.0)
        scale = (hi - lo) / (qmax - qmin)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero_point = torch.round(-lo / safe).clamp(qmin, qmax).to(torch.int32)
    scale = half_step(torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32), up=True)
    qt = QTensor(q=torch.empty(0), scale=scale, zero_point=zero_point, bits=bits, scheme=scheme, shape=shape,
                 axis=axis if per_channel else 0)
    s, zp = qt.broadcast(scale), qt.broadcast(zero_point)
    codes = torch.clamp(torch.round(w / s) + zp, qmin, qmax)
    qt.q = codes.to(torch.uint8 if scheme == "asymmetric" else torch.int8)
    return qt


FP16_NORMAL = (2.0 ** -14, 65504.0)  # the float16 normal range: a relative error of at most 2**-11 inside it


def half_step(scale: torch.Tensor, up: bool = False) -> torch.Tensor:
    """float32 steps rounded to float16 numbers (to the nearest, or up: never below the step, so no code has to
    clamp); a tensor with any step outside float16's normal range is returned unchanged (stored as float32)."""
    low, high = FP16_NORMAL
    if scale.numel() == 0 or not bool(((scale >= low) & (scale <= high)).all()):
        return scale
    half = scale.to(torch.float16)
    if up:
        below = half.to(torch.float32) < scale
        half = torch.where(below, torch.nextafter(half, torch.full_like(half, math.inf)), half)
    return half.to(torch.float32)


def half_bias(bias: torch.Tensor) -> torch.Tensor:
    """A bias rounded to the nearest float16 numbers (unchanged if any value would overflow float16)."""
    half = bias.detach().to(torch.float16).to(torch.float32)
    return half if bool(torch.isfinite(half).eq(torch.isfinite(bias)).all()) else bias.detach()


def dequantize(qt: QTensor) -> torch.Tensor:
    """The float32 tensor the codes stand for: (q - zero_point) * scale."""
    q = qt.q.to(torch.float32)
    if qt.scheme == "asymmetric":
        q = q - qt.broadcast(qt.zero_point).to(torch.float32)
    return (q * qt.broadcast(qt.scale)).reshape(qt.shape)


def quantizable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(state-dict name of the weight, module) for every Linear / Conv1d / Conv2d; in a torch.export program
    (a network loaded without its class), the `.weight` of every linear / conv1d / conv2d call of its graph."""
    found = [(f"{name}.weight" if name else "weight", module) for name, module in model.named_modules()
             if isinstance(module, QUANTIZABLE) and getattr(module, "weight", None) is not None]
    for prefix, graph in model.named_modules():
        if not isinstance(graph, torch.fx.GraphModule):
            continue
        for node in graph.graph.nodes:
            weight = node.args[1] if node.op == "call_function" and node.target in _GRAPH_LAYERS else None
            if isinstance(weight, torch.fx.Node) and weight.op == "get_attr" and weight.target.endswith(".weight"):
                name = f"{prefix}.{weight.target}" if prefix else weight.target
                if name not in dict(found):  # a weight two calls share is quantized once
                    found.append((name, model.get_submodule(name.rpartition(".")[0])))
    return found


_GRAPH_LAYERS = (torch.ops.aten.linear.default, torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default)


def _require_plain(model: nn.Module) -> None:
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise UsageError("the model is still prepared for QAT; call finish_qat(model) first")


def quantize_model(model: nn.Module, bits: int, scheme: str = "symmetric",
                   per_channel: bool = True) -> dict[str, QTensor]:
    """Weight-only RTN PTQ of every Linear / Conv1d / Conv2d weight (per output channel by default).

    Biases and BatchNorm stay fp32. The model is not changed; see apply_dequantized.
    """
    check_bits(bits)
    check_scheme(scheme)
    _require_plain(model)
    return {name: quantize_tensor(module.weight, bits, scheme, per_channel, axis=0)
            for name, module in quantizable_weights(model)}


def apply_dequantized(model: nn.Module, qweights: dict[str, QTensor]) -> nn.Module:
    """Copy each dequantized weight into `model` and round the bias of its layer to float16, in place; return it.

    This is how a quantized model is evaluated in torch: compute stays fp32, on weights that take exactly
    the quantized values (and biases that are float16 numbers), so its predictions are those of the file.
    """
    _require_plain(model)
    with torch.no_grad():
        for name, qt in qweights.items():
            param = model.get_parameter(name)
            if tuple(param.shape) != tuple(qt.shape):
                raise UsageError(f"quantized weight {name} has shape {list(qt.shape)}, the model's "
                                 f"{list(param.shape)}; quantize this model")
            param.copy_(dequantize(qt).to(param.device, param.dtype))
            bias = getattr(model.get_submodule(name.rpartition(".")[0]), "bias", None)
            if isinstance(bias, torch.Tensor) and bias.is_floating_point():
                bias.copy_(half_bias(bias))
    return model


# ---- quantization-aware training -------------------------------------------------------------------------

def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward (straight-through estimator)."""
    return (x.round() - x).detach() + x


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, gradient multiplied by g backward (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


SPARSE_FRACTION = 0.1


class LSQWeight(nn.Module):
    """Fake-quantizer of one weight: w_q = round_ste(clamp(w / s, -qmax, qmax)) * s, s learned per channel.

    A pruned weight (at least SPARSE_FRACTION exact zeros) keeps its zeros: a fixed mask multiplies w_q, so the
    pruned positions get no gradient and stay code 0 — quantization-aware training does not undo pruning."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.qmin, self.qmax = qrange(bits, "symmetric")
        w = weight.detach()
        nonzero = w != 0
        sparse = bool((~nonzero).float().mean() >= SPARSE_FRACTION)
        self.register_buffer("mask", nonzero.to(w.dtype) if sparse else None)
        per_channel = w.reshape(w.shape[0], -1)
        counts = nonzero.reshape(w.shape[0], -1).sum(dim=1).clamp(min=1) if sparse else per_channel.shape[1]
        init = 2 * (per_channel.abs().sum(dim=1) / counts) / math.sqrt(self.qmax)
        init = torch.where(init > 0, init, torch.ones_like(init))
        self.step = nn.Parameter(init.reshape([-1] + [1] * (w.dim() - 1)).to(w.dtype))
        self.grad_factor = 1.0 / math.sqrt(per_channel.shape[1] * self.qmax)

    def positive_step(self) -> torch.Tensor:
        return self.step.clamp(min=1e-8)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = _grad_scale(self.positive_step(), self.grad_factor)
        s = s + (self._half(s.detach()) - s.detach())  # trains on the float16 step the file stores
        quantized = _round_ste(torch.clamp(w / s, self.qmin, self.qmax)) * s
        return quantized if self.mask is None else quantized * self.mask

    def _half(self, s: torch.Tensor) -> torch.Tensor:
        return half_step(s.reshape(-1)).reshape(s.shape)

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self._half(self.positive_step().detach())
        codes = torch.clamp(torch.round(w.detach() / s), self.qmin, self.qmax)
        return (codes if self.mask is None else codes * self.mask), s.reshape(-1)


class BinaryWeight(nn.Module):
    """Binary weights (XNOR-Net): sign(w) * mean|w| per output channel, clipped straight-through gradient."""

    bits = 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = w.abs().reshape(w.shape[0], -1).mean(dim=1).reshape([-1] + [1] * (w.dim() - 1))
        clipped = w.clamp(-1.0, 1.0)
        sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        return ((sign - clipped).detach() + clipped) * alpha

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = w.detach()
        return torch.where(w >= 0, 1.0, -1.0), half_step(w.abs().reshape(w.shape[0], -1).mean(dim=1))


def prepare_qat(model: nn.Module, bits: int, scheme: str = "symmetric") -> nn.Module:
    """Parametrize every Linear / Conv weight with a fake-quantizer, in place; return the model.

    bits 8 / 4 / 2: LSQ with a learnable per-output-channel step (a parameter the optimizer sees).
    bits 1: binary weights (sign * mean|w|). Train with nnopt.fit(model, data, ...), then call finish_qat.
    """
    check_bits(bits, QAT_BITS)
    if check_scheme(scheme) != "symmetric":
        raise UsageError(f"QAT learns symmetric steps; got scheme '{scheme}'; use scheme='symmetric'")
    _require_plain(model)
    for _, module in quantizable_weights(model):
        quantizer = BinaryWeight() if bits == 1 else LSQWeight(module.weight, bits)
        parametrize.register_parametrization(module, "weight", quantizer.to(module.weight.device))
    return model


def finish_qat(model: nn.Module) -> dict[str, QTensor]:
    """The learned integer codes and scales of a QAT model; removes the fake-quantizers, in place.

    The model keeps plain Linear / Conv weights equal to the dequantized codes, so it predicts as trained.
    """
    qweights: dict[str, QTensor] = {}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        quantizer = module.parametrizations.weight[0]
        if not isinstance(quantizer, (LSQWeight, BinaryWeight)):
            continue
        latent = module.parametrizations.weight.original
        codes, scale = quantizer.codes(latent)
        bits = quantizer.bits
        key = f"{name}.weight" if name else "weight"
        qweights[key] = QTensor(q=codes.to(torch.int8).cpu(), scale=scale.to(torch.float32).cpu(),
                                zero_point=torch.zeros(scale.numel(), dtype=torch.int32), bits=bits,
                                scheme="binary" if bits == 1 else "symmetric", shape=tuple(latent.shape), axis=0)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    if not qweights:
        raise UsageError("the model has no QAT quantizers; call prepare_qat(model, bits) before training")
    apply_dequantized(model, qweights)  # exactly code * scale, as a file round trip gives
    return qweights
