"""Structured pruning of any module through torch-pruning's dependency graph, and the record that reloads it.

torch-pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) traces the module on an example
batch and groups every layer whose channels must go together: a conv and the BatchNorm after it, the inputs of
the next layer, every branch joined by a residual add, the slices of a concatenation. Each group loses the
`amount` of its channels with the smallest L2 norm over the whole group (`MagnitudeImportance(p=2)`). Layers
whose output is the network's output (class logits, regression targets) are never pruned.

A pruned module no longer matches its constructor: `pruned_shapes` records, per submodule, the size attributes
that changed (out_channels, in_features, num_features, ...), JSON-able; `apply_shapes` gives a freshly built
instance those attributes and tensors of the saved shapes, so that `load_state_dict(strict=True)` fills it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nnopt.errors import UsageError, param

# size attributes torch-pruning's layer pruners change; a module's forward reads some (Conv groups), repr the rest
SHAPE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
               "normalized_shape", "num_channels", "num_groups", "num_parameters", "embedding_dim",
               "num_embeddings", "embed_dim", "kdim", "vdim", "head_dim", "num_heads", "hidden_size", "input_size")
_ROOTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def example_batch(sample_shape: Any, model: nn.Module | None = None) -> torch.Tensor:
    """Two random samples of `sample_shape` (an int: flat rows), on the model's device: what tracing runs on."""
    shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(int(s) for s in sample_shape)
    device = next((p.device for p in model.parameters()), None) if model is not None else None
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(device)


def prune_graph(model: nn.Module, amount: float, example_inputs: torch.Tensor | tuple) -> nn.Module:
    """A pruned copy of `model`: `amount` of the channels (neurons) of every prunable group removed, the layers
    that produce the network's output kept whole. `example_inputs`: a batch the module takes (the data's shape).
    `model` is left unchanged; the copy is in `model`'s train / eval mode."""
    import torch_pruning as tp  # imported on use: a second or so that loading a model never needs

    new = copy.deepcopy(model)
    training = new.training
    new.eval()  # tracing runs a forward: BatchNorm must not learn from random inputs, and takes batches of any size
    try:
        graph = tp.DependencyGraph().build_dependency(new, example_inputs=example_inputs)
        outputs = output_layers(graph, new)
        if not any(isinstance(m, _ROOTS) and m not in outputs for m in new.modules()):
            raise UsageError(f"{type(model).__name__} has no hidden channels or units to prune (its only layers "
                             f"give the output); use {param('prune_method', 'magnitude')} or global")
        pruner = tp.pruner.MetaPruner(new, example_inputs, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=amount, ignored_layers=outputs, global_pruning=False)
        pruner.step()
        with torch.no_grad():  # a graph torch-pruning mis-indexes (a concatenation of flattened branches) fails here
            out = new(*example_inputs) if isinstance(example_inputs, tuple) else new(example_inputs)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch-pruning could not trace or prune this graph: say so, in one line
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"structured pruning (torch-pruning's dependency graph) could not prune "
                         f"{type(model).__name__} ({detail}); use {param('prune_method', 'magnitude')} or global, "
                         "which prune any graph") from None
    if torch.is_tensor(out) and any(p.numel() == 0 for p in new.parameters()):
        raise UsageError(f"{param('prune', float(f'{amount:g}'))} would remove every channel of a layer; "
                         "use a smaller amount")
    return new.train(training)


def output_layers(graph: Any, model: nn.Module) -> list[nn.Module]:
    """The Linear / Conv layers whose output channels reach a network output (removing one drops a class)."""
    import torch_pruning as tp

    found = []
    for module in model.modules():
        if not isinstance(module, _ROOTS) or module not in graph.module2node:
            continue
        group = graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels, [0])
        if any(_reaches_output(graph, dep, tp) for dep, _ in group):
            found.append(module)
    return found


def _reaches_output(graph: Any, dep: Any, tp: Any) -> bool:
    """Whether a group member is the network's output: torch-pruning's output op, or a node nothing consumes
    (the last layer's own module) whose output channels, not input ones, this member prunes."""
    node = dep.target
    if isinstance(node.module, tp.ops._OutputOp):
        return True
    return not node.outputs and (not isinstance(node.module, _ROOTS) or graph.is_out_channel_pruning_fn(dep.handler))


def pruned_shapes(original: nn.Module, pruned: nn.Module) -> dict[str, dict[str, Any]]:
    """{submodule name: {size attribute: new value}} for every attribute in SHAPE_ATTRS that pruning changed."""
    before = dict(original.named_modules())
    record: dict[str, dict[str, Any]] = {}
    for name, module in pruned.named_modules():
        old = before.get(name)
        changed = {a: _plain(getattr(module, a)) for a in SHAPE_ATTRS
                   if old is not None and hasattr(module, a) and getattr(module, a) != getattr(old, a)}
        if changed:
            record[name] = changed
    return record


def apply_shapes(model: nn.Module, shapes: dict[str, dict[str, Any]], state: dict[str, torch.Tensor]) -> nn.Module:
    """Give a freshly built `model` the recorded size attributes and, for every tensor of `state` whose shape
    differs from the model's, an empty tensor of the saved shape (to be filled by load_state_dict). In place."""
    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        if name not in modules:
            raise UsageError(f"the pruned layer '{name}' is not in {type(model).__name__}; rebuild it from the class "
                             "it was trained with")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        current = getattr(module, leaf, None) if module is not None else None
        if not isinstance(current, torch.Tensor) or current.shape == tensor.shape:
            continue
        empty = torch.empty(tensor.shape, dtype=current.dtype, device=current.device)
        if isinstance(current, nn.Parameter):
            setattr(module, leaf, nn.Parameter(empty, requires_grad=current.requires_grad))
        else:
            module._buffers[leaf] = empty
    return model


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, torch.Size)) else value
