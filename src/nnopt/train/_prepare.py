"""prepare(): data, network, loss, batch sources, batch size and threads for a TrainSpec —
shared by fit() and the LR finder so both train exactly the same thing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nnopt.config import DEFAULT_EPOCHS, FULL_BATCH_EPOCHS, TrainSpec, table_settings
from nnopt.data import Data, DatasetSplit, feature_scaling_of, load_data, with_scaling
from nnopt.errors import CheckpointError, UsageError, describe, param
from nnopt.models import ArchSpec, build_model, flops_per_sample, module_takes_flat_rows, takes_flat_rows
from nnopt.optim import OPTIMIZERS
from nnopt.train._batches import LoaderSource, MemmapSource, TensorSource, make_source
from nnopt.train._setup import make_loss, resolve_batch_size, resolve_device
from nnopt.train._threads import choose_threads


@dataclass
class Prepared:
    data: Data
    arch: ArchSpec | None  # None for a user nn.Module
    net: nn.Module
    loss_fn: Any
    sources: dict[str, TensorSource | LoaderSource | MemmapSource]
    batch: int
    device: torch.device
    threads: int
    flops: int | None  # None: the module cannot be counted by torch's FLOP counter
    sample_shape: tuple[int, ...]  # one sample as the network receives it: (n_features,) for flat rows


def data_shape(data: Data) -> tuple[int, ...] | None:
    """One sample's shape as the data has it ((C, H, W) images, (C, L) signals), or None for flat table rows."""
    shape = data.sample_shape or data.input_shape
    return tuple(shape) if shape else None


def model_input_shape(data: Data, spec: Any) -> tuple[int, ...]:
    """The shape of one sample the network of `spec` receives: a flat row (n_features,) for nnopt's own models,
    the data's own shape for a factory's module or a user's nn.Module (spec None); flattening is the MLP's."""
    return (data.n_features,) if takes_flat_rows(spec) else (data_shape(data) or (data.n_features,))


def recorded_shape(data: Data, shape: tuple[int, ...]) -> Data:
    """The data as a run records it when the network takes the samples' own shape: an (n, C, L) array's samples
    are (C, L) signals to a user's module or a factory's, so that is the input shape config.json, the model file
    and its preprocessing say, not the (1, C, L) nnopt's own cnn would read as a one-channel image. The caller's
    Data is left as it was."""
    if not data.sample_shape or tuple(shape) != tuple(data.sample_shape) or data.input_shape == data.sample_shape:
        return data
    sample = tuple(int(d) for d in data.sample_shape)
    return replace(data, input_shape=sample, preprocessing={**data.preprocessing, "input_shape": list(sample)})


def build_for(spec: Any, data: Data) -> nn.Module:
    """The network of a spec for this data: a factory is given the shape its batches will have."""
    shape = data.input_shape if takes_flat_rows(spec) else data_shape(data)
    return build_model(spec, in_features=data.n_features, n_outputs=data.n_outputs, input_shape=shape,
                       task=data.task)


def prepare(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None) -> Prepared:
    entry = OPTIMIZERS.get(spec.optimizer)
    if spec.epochs is None:  # resolved here, where the optimizer is known, so config.json records the count
        spec.epochs = FULL_BATCH_EPOCHS if entry.full_batch else DEFAULT_EPOCHS
    data = load_spec_data(spec, spec.scale)
    check_streamed(spec, data)
    device = resolve_device(spec.device)
    user_loader = getattr(data.train, "loader", None)
    requested = spec.batch_size if spec.batch_size is not None or user_loader is None else user_loader.batch_size
    batch = resolve_batch_size(requested, entry.full_batch, spec.optimizer, len(data.train))
    arch = None if module is not None else ArchSpec.parse(spec.model if spec.model is not None else "mlp:128,64")
    torch.manual_seed(spec.seed)  # weight init
    net = module if module is not None else build_for(arch, data)
    shape = model_input_shape(data, arch) if module is None or not module_takes_flat_rows(module) else \
        (data.n_features,)
    out = check_forward(net, shape, data)
    data = two_logit_binary(data, out)
    check_output(out, shape, data, factory=arch.factory if arch is not None else None)
    data = recorded_shape(data, shape)
    flops = flops_per_sample(net, shape)
    # a module the counter cannot measure is taken as small: one thread, the fastest for small models
    threads = spec.threads or (choose_threads(flops or 0, batch) if device.type == "cpu"
                               else torch.get_num_threads())
    net.to(device)
    loss_fn = make_loss(loss, data.task, data.n_outputs)
    pin = spec.pin_memory if spec.pin_memory is not None else device.type == "cuda"
    sources = {s: make_source(data, s, device, shape, spec.num_workers, pin) for s in ("train", "val", "test")}
    return Prepared(data, arch, net, loss_fn, sources, batch, device, threads, flops, shape)


def load_spec_data(spec: TrainSpec, scale: str) -> Data:
    return load_data(spec.data, target=spec.target, task=spec.task, val_fraction=spec.val_fraction,
                     test_fraction=spec.test_fraction, seed=spec.seed, scale=scale,
                     **table_settings(vars(spec)), **({"n_classes": spec.n_classes} if spec.n_classes else {}),
                     **({"val_data": spec.val_data} if spec.val_data is not None else {}))


def with_recorded_scaling(spec: TrainSpec, p: Prepared, recorded: dict | None, what: str) -> Prepared:
    """`p` with the feature scaling a checkpoint recorded (`recorded`, None for a checkpoint written before
    checkpoints recorded it), so that a resumed run goes on with the transform it was trained with even where
    load_data's rule for this data has changed since. An older checkpoint is taken to agree unless scale="auto" now
    standardizes the data per channel, the rule that changed (8-bit arrays and IDX files were divided by 255, image
    folders left in [0, 1]): that is a CheckpointError, as the transform it was trained with is not known."""
    fresh = feature_scaling_of(p.data.preprocessing)
    if recorded is None:
        if spec.scale == "auto" and (fresh or {}).get("x_scale") == "channel":
            raise CheckpointError(f"{what} records no feature scaling (written by an earlier nnopt), and "
                                  f"{param('scale', 'auto')} now standardizes these images per channel, where "
                                  "earlier versions divided 8-bit pixels by 255 (or left an image folder's in "
                                  f"[0, 1]); finish it with the nnopt that started it, or train again with another "
                                  f"{param('out')}")
        return p
    data = with_scaling(p.data, recorded, lambda: load_spec_data(spec, "none"), what)
    if data is p.data:
        return p
    pin = spec.pin_memory if spec.pin_memory is not None else p.device.type == "cuda"
    sources = {s: make_source(data, s, p.device, p.sample_shape, spec.num_workers, pin)
               for s in ("train", "val", "test")}
    return replace(p, data=data, sources=sources)


def check_streamed(spec: TrainSpec, data: Data) -> None:
    """The loader settings apply to a torch Dataset nnopt batches itself; early stopping needs validation rows,
    which an IterableDataset or a DataLoader has only through val_data."""
    torch_source = isinstance(data.train, DatasetSplit)
    if (spec.num_workers or spec.pin_memory is not None) and (not torch_source or data.train.loader is not None):
        key = "num_workers" if spec.num_workers else "pin_memory"
        where = "a DataLoader brings its own: set it there" if torch_source else \
            "in-memory rows are sliced without a DataLoader: drop it"
        raise UsageError(f"{param(key)} applies to a torch Dataset or IterableDataset nnopt batches; {where}")
    watches_val = not (spec.monitor or "").startswith("train_")
    if torch_source and len(data.val) == 0 and watches_val and (
            spec.early_stopping is not None or spec.schedule == "reduce-on-plateau"):
        shown = param("early_stopping") if spec.early_stopping is not None else param("schedule", "reduce-on-plateau")
        raise UsageError(f"{shown} watches the validation loss, and an IterableDataset or a DataLoader has no "
                         f"validation samples; give {param('val_data')} (a Dataset or DataLoader of them)")


def check_forward(net: nn.Module, shape: tuple[int, ...], data: Data | None = None) -> Any:
    """Run one zero sample through the network and return its output; a module that cannot take the data's
    shape is a usage error named here, before training, rather than a traceback from the first batch. On a
    table the usual cause is a first layer sized by the table's column count, which its encoding (one-hot
    levels, missing-value indicators) turns into more input features: the message gives both counts."""
    param = next(net.parameters(), None)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.zeros(1, *shape, device=param.device if param is not None else "cpu"))
    except Exception as exc:  # noqa: BLE001 - whatever the user's forward raises, say which input caused it
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        table = (data.preprocessing or {}).get("table") if data is not None else None
        if table and len(shape) == 1:
            columns = table.get("columns", [])
            used = [c for c in data.describe().get("columns", []) if c.get("treatment") != "dropped"]
            raise UsageError(f"the model fails on a batch of shape {(1, *shape)} ({detail}); the table's "
                             f"{len(columns)} feature columns ({len(used)} used) encode to {shape[0]} input "
                             f"features (one-hot levels, missing-value indicators): give the first layer "
                             f"in_features={shape[0]}, use nn.LazyLinear, or give a factory that takes "
                             "in_features") from exc
        channels = re.search(r"to have (\d+) channels, but got (\d+) channels", detail)
        if channels and len(shape) >= 2:  # a convolution built for other channels than the samples have
            fix = (f"the samples have {shape[0]} channel{'s' if shape[0] != 1 else ''} and the first convolution "
                   f"takes {channels.group(1)}: build it with in_channels={shape[0]} (a factory is given "
                   f"input_shape={tuple(shape)})")
        else:
            fix = ("a module receives batches in the shape the data has: add nn.Flatten() before dense layers, or "
                   "give the data in the shape the module takes")
        raise UsageError(f"the model fails on a batch of shape {(1, *shape)}, the data's shape ({detail}); "
                         f"{fix}") from exc
    finally:
        net.train(was_training)


def two_logit_binary(data: Data, out: Any) -> Data:
    """The data as a network returning (batch, 2) for two classes trains on them: two logits with cross-entropy,
    as heads written for num_classes=2 are, instead of one logit with BCE (the run records n_outputs 2, and
    predict, evaluate, export and compress read the softmax of the two)."""
    if data.task == "classification" and data.n_classes == 2 and isinstance(out, torch.Tensor) and out.dim() == 2 \
            and out.shape[1] == 2:
        return replace(data, binary_outputs=2)
    return data


def check_output(out: Any, shape: tuple[int, ...], data: Data, *, factory: str | None = None) -> None:
    """The output of check_forward's batch must be what the loss, the metrics, predict and export read: one tensor
    of shape (batch, k), k the classes (one logit for two classes) or the regression targets. A head of another
    width is the common mistake (a factory that ignores n_outputs, a hand-built last layer), which would otherwise
    train into an index error deep in a loss or in the epoch's metrics. `factory`: the model's factory path, if
    a factory built it."""
    batch = (1, *shape)
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"the model returns {describe(out)}, not a tensor, for a batch of shape {batch}; nnopt "
                         f"trains on one tensor of shape (batch, {data.n_outputs}): have forward return the "
                         f"{'logits' if data.task == 'classification' else 'predictions'} alone")
    k = data.n_outputs
    got = tuple(out.shape)
    source = f"the factory {factory} is given n_outputs={k}: build its last layer with it" if factory else \
        f"give the last layer {k} output{'s' if k != 1 else ''} (a factory is given n_outputs={k})"
    if data.task == "classification":
        what = ("two classes take 1 output (a logit, trained with binary cross-entropy) or 2 (two logits, "
                "cross-entropy)" if k == 1 else
                f"{data.n_classes} classes take {k} outputs (one logit per class)")
    else:
        what = f"{k} regression target{'s take' if k != 1 else ' takes'} {k} output{'s' if k != 1 else ''}"
    if len(got) != 2 or got[0] != 1:
        raise UsageError(f"the model returns shape {got} for a batch of shape {batch}; it must return "
                         f"(batch, outputs), here (1, {k}): {what}")
    if got[1] != k:
        raise UsageError(f"{what}; the model returns {got[1]} per sample (shape {got} for a batch of shape "
                         f"{batch}): {source}")


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """Use `threads` intra-op threads inside the block, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA, have cuDNN pick deterministic convolution kernels (and no timing-based choice between them) inside
    the block, so that the same seed trains the same weights and a resumed run ends bit-identical to an
    uninterrupted one; the previous settings are restored after. Nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    previous = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = previous
