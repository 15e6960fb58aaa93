"""Models: build networks from spec strings ("mlp:128,64"), count their size and cost, save and load them."""

from nnopt.models._build import CNN, MLP, DenseBlock, Shaped, build_model, factory_signature, module_takes_flat_rows, \
    on_flat_rows, takes_flat_rows
from nnopt.models._cost import measure_latency_ms, model_costs, serialized_bytes
from nnopt.models._count import count_params, flops_per_sample, sample_dims
from nnopt.models._io import atomic_torch_save, load_model, needs_class, save_model
from nnopt.models._record import PROGRAM, ProgramModule, class_path, copy_module, load_program_bytes, \
    module_recipe, program_bytes
from nnopt.models._spec import ACTIVATIONS, KINDS, POOLS, ArchSpec

__all__ = [
    "ACTIVATIONS", "KINDS", "POOLS", "ArchSpec", "CNN", "MLP", "DenseBlock", "build_model", "factory_signature",
    "module_takes_flat_rows", "takes_flat_rows", "Shaped", "on_flat_rows", "count_params", "flops_per_sample", "sample_dims", "measure_latency_ms", "model_costs",
    "serialized_bytes", "load_model", "save_model", "atomic_torch_save", "needs_class", "PROGRAM", "ProgramModule",
    "class_path", "copy_module", "module_recipe", "program_bytes", "load_program_bytes",
]
