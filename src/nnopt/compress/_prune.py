"""Pruning: zero weights with torch.nn.utils.prune masks, or remove whole units for a smaller, faster model.

Mask methods ("magnitude", "global", "2:4") keep the layer shapes: `weight` becomes `weight_orig * weight_mask`
(torch's reparametrization), the mask survives fine-tuning, and `make_permanent` bakes it in. Only "structured"
makes the network itself smaller: it returns a new dense MLP / CNN with fewer hidden units, whose spec string
`structured_spec` gives, so `nnopt.models.build_model` rebuilds it; any other module is pruned through
torch-pruning's dependency graph (`_prune_graph.py`), and `pruned_shapes` records what rebuilding it needs.

`amount` is always the fraction of weights (or units) that are gone afterwards, counted as torch does:
`round(amount * n)` of `n`. Pruning a masked model again raises its sparsity to `amount`; it never stacks.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from nnopt.errors import UsageError, param, unknown_name
from nnopt.models import CNN, MLP, ArchSpec, DenseBlock
from nnopt.train import Callback, fit

from nnopt.compress._prune_graph import prune_graph

PRUNE_METHODS = ("magnitude", "global", "structured", "2:4")
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_NOTE = "_nnopt_prune_note"  # why a layer was left dense; shown in sparsity_table


# -- mask methods ---------------------------------------------------------------------------------------------------
class NMPruning(torch_prune.BasePruningMethod):
    """N:M semi-structured sparsity: in every group of `m` consecutive weights along the input dimension (for a
    conv, the flattened in_channels * kernel dimension) keep the `n` largest |w|.

    PRUNING_TYPE is "global" rather than "unstructured": for an "unstructured" method a PruningContainer (a module
    pruned before) hands compute_mask only the flat surviving entries, which loses the groups. As "global" it gets
    the whole tensor and its previous mask; weights already pruned rank lowest in their group.
    """

    PRUNING_TYPE = "global"

    def __init__(self, n: int = 2, m: int = 4):
        self.n, self.m = n, m

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        scores = (t * default_mask).abs().reshape(t.shape[0], -1, self.m)
        keep = scores.topk(self.n, dim=-1).indices
        mask = torch.zeros_like(scores).scatter_(-1, keep, 1.0).reshape(t.shape)
        return mask * default_mask

    @classmethod
    def apply(cls, module: nn.Module, name: str, n: int = 2, m: int = 4,  # type: ignore[override]
              importance_scores: torch.Tensor | None = None) -> NMPruning:
        return super().apply(module, name, n=n, m=m, importance_scores=importance_scores)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv1d / Conv2d modules whose `.weight` pruning acts on, output layer included."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _PRUNABLE)]


def prune(model: nn.Module, amount: float, method: str = "magnitude", *,
          example_inputs: torch.Tensor | tuple | None = None) -> nn.Module:
    """Prune `model`; `amount` in [0, 1) is the fraction removed (ignored by "2:4", which is always 50 %).

    "magnitude": the smallest |w| of each layer (L1 unstructured). "global": the smallest |w| over all layers.
    "2:4": 2 of every 4 consecutive input weights (layers whose input size is not a multiple of 4 stay dense).
    These three add torch masks to every Linear / Conv1d / Conv2d of any module, in place, and return it.
    "structured" leaves `model` alone and returns a new, smaller module (see `prune_structured`); any module
    other than nnopt's own MLP / CNN needs `example_inputs`, a batch in the shape it takes.
    """
    _check(amount, method)
    if method == "structured":
        return prune_structured(model, amount, example_inputs=example_inputs)
    layers = prunable_layers(model)
    if not layers:
        raise UsageError(f"{param('prune')} found no Linear or Conv layer in {type(model).__name__}; nothing to prune")
    if method == "magnitude":
        for _, module in layers:
            extra = round(amount * module.weight.numel()) - _masked(module)
            torch_prune.l1_unstructured(module, "weight", amount=max(extra, 0), importance_scores=_effective(module))
    elif method == "global":
        total = sum(m.weight.numel() for _, m in layers)
        extra = round(amount * total) - sum(_masked(m) for _, m in layers)
        torch_prune.global_unstructured(
            [(m, "weight") for _, m in layers], torch_prune.L1Unstructured, amount=max(extra, 0),
            importance_scores={(m, "weight"): _effective(m) for _, m in layers})
    else:  # 2:4
        for _, module in layers:
            width = module.weight[0].numel()
            if width % 4:
                setattr(module, _NOTE, f"2:4 skipped: input size {width} is not a multiple of 4")
            else:
                NMPruning.apply(module, "weight", importance_scores=_effective(module))
    _detach_weights(model)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Bake every mask into its weight (torch prune.remove): no weight_orig, no mask, no hook. In place."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def sparsity_table(model: nn.Module) -> list[dict[str, Any]]:
    """One row per prunable layer (exact zeros of the effective weight, masked or permanent), then a total row.

    Rows: layer, kind, shape, params, zeros, sparsity, note (why a layer was left dense, else None).
    """
    rows = []
    for name, module in prunable_layers(model):
        weight = _effective(module)
        params, zeros = weight.numel(), int((weight == 0).sum())
        rows.append({"layer": name, "kind": type(module).__name__, "shape": list(weight.shape), "params": params,
                     "zeros": zeros, "sparsity": zeros / params if params else 0.0,
                     "note": getattr(module, _NOTE, None)})
    params, zeros = sum(r["params"] for r in rows), sum(r["zeros"] for r in rows)
    rows.append({"layer": "total", "kind": "all", "shape": None, "params": params, "zeros": zeros,
                 "sparsity": zeros / params if params else 0.0, "note": None})
    return rows


def _check(amount: Any, method: Any) -> None:
    if method not in PRUNE_METHODS:
        raise unknown_name("prune method", method, PRUNE_METHODS)
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or not 0 <= amount < 1:
        raise UsageError(f"{param('prune')} must be in [0, 1); got {amount!r}")


def _effective(module: nn.Module) -> torch.Tensor:
    """The weight the layer computes with now (module.weight of a masked layer is only refreshed on forward)."""
    if hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def _masked(module: nn.Module) -> int:
    return int((module.weight_mask == 0).sum()) if hasattr(module, "weight_mask") else 0


def _detach_weights(model: nn.Module) -> None:
    """Store each masked weight as a plain tensor until the next forward recomputes it, so that
    copy.deepcopy works on a pruned model (it refuses the non-leaf tensor torch's hook leaves behind)."""
    for module in model.modules():
        if hasattr(module, "weight_mask") and isinstance(getattr(module, "weight_orig", None), nn.Parameter):
            module.weight = _effective(module)


# -- structured: a smaller dense model --------------------------------------------------------------------------------
@dataclasses.dataclass
class _Layer:
    name: str
    parent: nn.Module
    key: str  # attribute of `parent` holding the layer
    norm_key: str | None  # the BatchNorm right after it, in the same parent
    residual: bool  # its block adds the block's input to its output
    spread: int = 1  # input columns per unit of the previous layer (flattened conv features)

    @property
    def module(self) -> nn.Module:
        return getattr(self.parent, self.key)


def prune_structured(model: nn.Module, amount: float, *,
                     example_inputs: torch.Tensor | tuple | None = None) -> nn.Module:
    """A new, smaller module without `amount` of the hidden units (neurons / channels) of each layer.

    Any module but nnopt's own MLP / CNN goes through torch-pruning's dependency graph (`prune_graph`), traced on
    `example_inputs`; `pruned_shapes(model, new)` is what reloading it needs.

    nnopt's MLP / CNN: a new MLP / CNN without the `round(amount * width)` hidden units of each layer whose
    incoming weights have the smallest L2 norm; input and output widths never change, BatchNorm rows follow.

    Residual MLP blocks (x + body(x)) tie widths together: all layers joined by shortcuts keep ONE shared set of
    units, ranked by the sum of their norms. A width joined to the network's input stays whole (its layers say so
    in `sparsity_table`'s note). So that the spec string rebuilds the same network, a block without a shortcut
    whose two widths would become equal (build_model would add one) keeps one unit more.
    """
    _check(amount, "structured")
    _detach_weights(model)
    if not isinstance(model, (MLP, CNN)):
        if example_inputs is None:
            raise UsageError(f"structured pruning of {type(model).__name__} traces it on a batch: give "
                             f"{param('example_inputs')} (e.g. torch.randn(2, *sample_shape))")
        return prune_graph(make_permanent(copy.deepcopy(model)), amount, example_inputs)
    new = copy.deepcopy(model)
    layers = _mlp_layers(new) if isinstance(new, MLP) else _cnn_layers(new)
    if len(layers) < 2:
        raise UsageError(f"structured pruning removes hidden units; {type(model).__name__} has none; "
                         "use magnitude, global or 2:4")
    # slot k: the width between layers k-1 and k; slot 0 is the input; a shortcut joins slot k and k+1
    group = [0]
    for k, layer in enumerate(layers[:-1]):
        group.append(group[k] if layer.residual else k + 1)
    keep: dict[int, int] = {}
    for g in sorted(set(group) - {0}):
        width = layers[g - 1].module.weight.shape[0]
        keep[g] = width - round(amount * width)
        if keep[g] == 0:
            raise UsageError(f"{param('prune', float(f'{amount:g}'))} would remove every unit of layer "
                             f"{layers[g - 1].name}; "
                             "use a smaller amount")
    if any(layer.residual for layer in layers):
        _avoid_new_shortcuts(layers, group, keep)
    kept: dict[int, torch.Tensor] = {}
    for g, n in keep.items():
        score = sum(_unit_norms(layers[s - 1].module) for s in range(len(group)) if group[s] == g)
        kept[g] = torch.topk(score, n).indices.sort().values
    for k, layer in enumerate(layers):
        rows = kept.get(group[k + 1]) if k + 1 < len(group) else None
        cols = kept.get(group[k])
        if cols is not None and layer.spread > 1:
            cols = (cols[:, None] * layer.spread + torch.arange(layer.spread, device=cols.device)).flatten()
        setattr(layer.parent, layer.key, _slice(layer.module, rows, cols))
        if layer.norm_key is not None:
            setattr(layer.parent, layer.norm_key, _slice_norm(getattr(layer.parent, layer.norm_key), rows))
        if k + 1 < len(group) and group[k + 1] == 0:
            setattr(layer.module, _NOTE, "not pruned: residual shortcuts tie this width to the network input")
    return new.train(model.training)


@torch.no_grad()
def drop_dead_units(model: nn.Module) -> tuple[nn.Module, int, dict[str, tuple[torch.Tensor | None, ...]]]:
    """(an exactly equivalent MLP without the hidden units that unstructured pruning left dead, units removed,
    {weight name: (rows kept, columns kept)} of the original weights, None = all, for slicing quantized codes).

    A unit whose outgoing weights are all zero feeds nothing: it goes. A unit whose incoming weights are all zero
    outputs a constant (its block on any input, bias through BatchNorm and activation): that constant times its
    outgoing weights moves into the next layer's bias, and it goes. Repeated until nothing changes (a removal
    can leave another unit dead); every layer keeps at least one unit. Unmasked weights only (after
    make_permanent); CNNs and residual MLPs (shortcuts tie widths) come back unchanged, with 0 and {}."""
    if not isinstance(model, MLP):
        return model, 0, {}
    layers = _mlp_layers(model)
    if any(layer.residual for layer in layers) or any(torch_prune.is_pruned(layer.module) for layer in layers):
        return model, 0, {}
    new, removed = copy.deepcopy(model).eval(), 0
    layers = _mlp_layers(new)
    units = [torch.arange(layer.module.weight.shape[0]) for layer in layers[:-1]]  # original index of each unit
    changed = True
    while changed:
        changed = False
        for k, layer in enumerate(layers[:-1]):
            module, after = layer.module, layers[k + 1].module
            zero_in, zero_out = (module.weight == 0).all(dim=1), (after.weight == 0).all(dim=0)
            drop = zero_in | zero_out
            if drop.all():  # keep one unit, one that still feeds the next layer if any does
                drop[int(torch.nonzero(~zero_out)[0, 0]) if (~zero_out).any() else 0] = False
            if not drop.any():
                continue
            fold = drop & zero_in & ~zero_out
            if fold.any():
                constant = layer.parent(torch.zeros(1, module.in_features, dtype=module.weight.dtype,
                                                    device=module.weight.device))[0]
                after.bias += after.weight[:, fold] @ constant[fold]
            keep = torch.nonzero(~drop).flatten()
            setattr(layer.parent, layer.key, _slice(module, keep, None))
            if layer.norm_key is not None:
                setattr(layer.parent, layer.norm_key, _slice_norm(getattr(layer.parent, layer.norm_key), keep))
            setattr(layers[k + 1].parent, layers[k + 1].key, _slice(after, None, keep))
            units[k] = units[k][keep]
            removed += int(drop.sum())
            changed = True
    kept = {}
    if removed:
        for k, layer in enumerate(layers):
            rows = units[k] if k < len(units) else None
            cols = units[k - 1] if k > 0 else None
            kept[f"{layer.name}.weight"] = (rows, cols)
    return new.train(model.training), removed, kept


def structured_spec(spec: str | dict | ArchSpec, model: nn.Module) -> ArchSpec:
    """The ArchSpec of a structurally pruned `model` built from `spec` (mlp:128,64 at 0.5 -> mlp:64,32), so that
    `build_model(structured_spec(spec, model), ...)` loads `model.state_dict()` with strict=True."""
    arch = ArchSpec.parse(spec)
    if arch.kind == "mlp" and isinstance(model, MLP):
        layers = _mlp_layers(model)
        widths = [layers[0].module.in_features, *(layer.module.out_features for layer in layers[:-1])]
        shortcuts = [layer.residual for layer in layers[:-1]]
        residual = arch.residual and any(shortcuts)  # no block has one: the same network without the flag
        rebuilt = [residual and a == b for a, b in zip(widths, widths[1:])]
        if rebuilt != shortcuts:
            raise UsageError(f"model {type(model).__name__} does not match spec '{arch}': shortcuts {shortcuts} "
                             f"would be rebuilt as {rebuilt}; pass the spec the model was built from")
        return dataclasses.replace(arch, hidden=tuple(widths[1:]), residual=residual)
    if arch.kind == "cnn" and isinstance(model, CNN):
        layers = _cnn_layers(model)
        convs = [layer.module.out_channels for layer in layers if not isinstance(layer.module, nn.Linear)]
        linears = [layer.module.out_features for layer in layers if isinstance(layer.module, nn.Linear)]
        if (len(linears) > 1) != bool(arch.head):
            raise UsageError(f"model {type(model).__name__} does not match spec '{arch}'; "
                             "pass the spec the model was built from")
        return dataclasses.replace(arch, hidden=tuple(convs), head=linears[0] if arch.head else 0)
    raise UsageError(f"structured_spec needs the mlp or cnn spec of the model; got '{arch}' for {type(model).__name__}")


def _mlp_layers(model: MLP) -> list[_Layer]:
    layers = []
    for i, block in enumerate(model.blocks):
        residual = isinstance(block, DenseBlock) and block.residual
        body = block.body if isinstance(block, DenseBlock) else block
        if not (isinstance(body, nn.Sequential) and isinstance(body[0], nn.Linear)):
            raise UsageError(f"structured pruning expects blocks of Linear layers; blocks.{i} is {type(body).__name__}")
        prefix = f"blocks.{i}.body" if isinstance(block, DenseBlock) else f"blocks.{i}"
        norm = "1" if len(body) > 1 and isinstance(body[1], _NORMS) else None
        layers.append(_Layer(f"{prefix}.0", body, "0", norm, residual))
    return [*layers, _Layer("head", model, "head", None, False)]


def _cnn_layers(model: CNN) -> list[_Layer]:
    layers, parts = [], list(model.features)
    for i, part in enumerate(parts):
        if isinstance(part, (nn.Conv1d, nn.Conv2d)):
            norm = str(i + 1) if i + 1 < len(parts) and isinstance(parts[i + 1], _NORMS) else None
            layers.append(_Layer(f"features.{i}", model.features, str(i), norm, False))
    for i, part in enumerate(model.head):
        if isinstance(part, nn.Linear):
            layers.append(_Layer(f"head.{i}", model.head, str(i), None, False))
    first_linear = next(k for k, layer in enumerate(layers) if isinstance(layer.module, nn.Linear))
    channels = layers[first_linear - 1].module.out_channels
    layers[first_linear].spread = layers[first_linear].module.in_features // channels  # map cells per channel
    return layers


def _avoid_new_shortcuts(layers: list[_Layer], group: list[int], keep: dict[int, int]) -> None:
    """Keep one unit more where a block without a shortcut would get equal widths (build_model adds one there)."""
    def width(slot: int) -> int:
        g = group[slot]
        return keep[g] if g else layers[0].module.weight.shape[1]

    full = {g: layers[g - 1].module.weight.shape[0] for g in keep}
    changed = True
    while changed:
        changed = False
        for k, layer in enumerate(layers[:-1]):
            if not layer.residual and width(k) == width(k + 1):
                g = next(g for g in (group[k + 1], group[k]) if g and keep[g] < full[g])
                keep[g] += 1
                changed = True


def _unit_norms(module: nn.Module) -> torch.Tensor:
    return _effective(module).flatten(1).norm(dim=1)


def _slice(module: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Module:
    """A fresh dense copy of a Linear / Conv with only output units `rows` and input units `cols` (None = all)."""
    weight, bias = _effective(module), module.bias
    if rows is not None:
        weight, bias = weight[rows], bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    kw = {"bias": bias is not None, "device": weight.device, "dtype": weight.dtype}
    if isinstance(module, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], **kw)
    else:
        if module.groups != 1:
            raise UsageError("structured pruning does not support grouped convolutions")
        new = type(module)(weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
                           padding=module.padding, dilation=module.dilation, padding_mode=module.padding_mode, **kw)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _slice_norm(norm: nn.Module, rows: torch.Tensor | None) -> nn.Module:
    if rows is None:
        return norm
    new = type(norm)(len(rows), eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                     track_running_stats=norm.track_running_stats, device=rows.device)
    new.load_state_dict({k: v if v.dim() == 0 else v[rows] for k, v in norm.state_dict().items()})  # 0-dim: count
    return new


# -- gradual pruning and fine-tuning ----------------------------------------------------------------------------------
def cubic_schedule(final: float, steps: int, initial: float = 0.0) -> list[float]:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) * (1 - t/n)^3 for t = 1..n; fast early, gentle late."""
    _check(final, "magnitude")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise UsageError(f"{param('epochs')} must be an integer >= 1; got {steps}")
    if not 0 <= initial <= final:
        raise UsageError(f"the initial sparsity must be in [0, {final}]; got {initial}")
    return [final + (initial - final) * (1 - t / steps) ** 3 for t in range(1, steps + 1)]


class _PruneEachEpoch(Callback):
    """Records each epoch's sparsity and val metrics, then raises the sparsity to the next scheduled value.

    Pruning between epochs inside ONE fit() call keeps the optimizer state, the LR schedule and the shuffling
    running across epochs; torch's masks keep `weight_orig` the same Parameter, so the optimizer still holds it.
    """

    def __init__(self, model: nn.Module, method: str, schedule: list[float] | None):
        self.model, self.method, self.schedule = model, method, schedule
        self.history: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        metrics = {k: v for k, v in logs.items() if k == "train_loss" or k.startswith("val_")}
        self.history.append({"epoch": epoch, "sparsity": sparsity_table(self.model)[-1]["sparsity"], **metrics})
        if self.schedule and epoch < len(self.schedule):
            prune(self.model, self.schedule[epoch], self.method)


def prune_gradually(model: nn.Module, data: Any, amount: float, method: str = "magnitude", epochs: int = 5,
                    **fit_options: Any) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Raise the sparsity along `cubic_schedule(amount, ...)` over the first two thirds of the epochs while
    fine-tuning (one step per epoch), then train the last third at the final sparsity.

    `data`: what fit() takes; pass the Data object the model was trained on to keep its split. "2:4" prunes once,
    then fine-tunes. Returns the (masked, in place) model and one row per epoch: epoch, sparsity, train_loss,
    val metrics.
    """
    _check(amount, method)
    if method == "structured":
        raise UsageError(f"{param('schedule', 'gradual')} works with magnitude, global and 2:4; "
                         "structured pruning is one-shot (then fine-tune)")
    # Zhu & Gupta stop raising the sparsity before training ends: the last third of the epochs recovers at it
    ramp = max(1, -(-2 * epochs // 3)) if epochs > 2 else epochs
    schedule = cubic_schedule(amount, ramp) + [amount] * (epochs - ramp)
    prune(model, schedule[0], method)
    steps = None if method == "2:4" else schedule  # 2:4 is one fixed pattern: prune once, then fine-tune
    model, history = _fit_masked(model, data, epochs, _PruneEachEpoch(model, method, steps), fit_options)
    prune(model, amount, method)  # early stopping may have restored an epoch before the last step
    return model, history


def finetune(model: nn.Module, data: Any, epochs: int, **fit_options: Any) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train a pruned model for `epochs` with nnopt.train.fit; masked weights stay exactly zero. In place.
    The lr follows `finetune_schedule(epochs)` unless fit_options give a `schedule`."""
    return _fit_masked(model, data, epochs, _PruneEachEpoch(model, "magnitude", None), fit_options)


def finetune_schedule(epochs: int, optimizer: Any = "adam") -> dict[str, Any]:
    """The lr schedule of fine-tuning after pruning and of QAT, as fit() options: the given lr for the first two
    thirds of the epochs, a tenth of it for the last third ("step" with gamma 0.1). A constant lr ends where
    pruning left the weights, in a noisy spot: on a ResNet-shaped CNN, 50 % structured + 5 epochs lost 4.6
    points at a constant lr, and none in 3 seeds of 3 with the drop (benchmarks/RESULTS.md, "Compressing user
    models"). {} (constant) for
    fewer than 2 epochs and for schedule-free optimizers, which need no schedule."""
    if not isinstance(epochs, numbers.Integral) or epochs < 2 or str(optimizer).lower() == "schedulefree":
        return {}
    return {"schedule": "step", "schedule_params": {"step_size": max(1, round(2 * epochs / 3)), "gamma": 0.1}}


def _fit_masked(model: nn.Module, data: Any, epochs: int, recorder: _PruneEachEpoch,
                fit_options: dict[str, Any]) -> tuple[nn.Module, list[dict[str, Any]]]:
    callbacks = [*(fit_options.pop("callbacks", None) or []), recorder]
    if fit_options.get("schedule") is None:  # a schedule the caller gives wins
        fit_options.pop("schedule", None)
        fit_options = {**finetune_schedule(epochs, fit_options.get("optimizer", "adam")), **fit_options}
    fit(model, data, epochs=epochs, callbacks=callbacks, **fit_options)
    _detach_weights(model)
    return model, recorder.history
