"""Models: build networks from spec strings ("mlp:128,64"), count their size and cost, save and load them."""

from nnopt.models._build import CNN, MLP, DenseBlock, build_model
from nnopt.models._count import count_params, flops_per_sample
from nnopt.models._io import atomic_torch_save, load_model, save_model
from nnopt.models._spec import ACTIVATIONS, KINDS, ArchSpec

__all__ = [
    "ACTIVATIONS", "KINDS", "ArchSpec", "CNN", "MLP", "DenseBlock", "build_model",
    "count_params", "flops_per_sample", "load_model", "save_model", "atomic_torch_save",
]
