"""How a user's nn.Module instance is recorded so that its run can be used without the user's code.

Two records, both next to model.pt:
  - a recipe, when one can be found: the class's import path and its constructor arguments as a factory spec
    (`mynets:ResidualCNN:depth=2:width=16`), so load_model rebuilds the very class, strictly, and every command
    (fine-tuning, QAT, compression) works as for a factory. The arguments come from `self.hparams` (a mapping,
    as Lightning's save_hyperparameters keeps them) or from attributes named like the constructor's parameters
    (scikit-learn's get_params convention), else the parameter's default. A recipe is kept only if the class
    it rebuilds takes the trained state dict strictly and gives the same outputs on a probe batch: a guess that
    builds another network is never recorded.
  - always, a torch.export program (`model.pt2`): the traced graph with its weights, batch dimension dynamic,
    which needs neither the class nor its source to run inference.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.errors import NnoptError
from nnopt.fileio import atomic_write
from nnopt.models._build import build_model
from nnopt.models._spec import FACTORY_DATA_ARGS, ArchSpec

PROGRAM = "model.pt2"  # the torch.export program, next to model.pt
PROBE_BATCH = 2  # torch.export specializes a dimension of size 0 or 1; 2 keeps the batch dimension dynamic
SAME_OUTPUTS = 1e-5  # largest |rebuilt - trained| output accepted for a recipe


class ProgramModule(nn.Module):
    """A loaded torch.export program as an ordinary module (eval mode only).

    torch.export's module refuses train() and eval(); nnopt puts every model it loads in eval mode (and
    export_onnx restores the mode it found), so the mode is kept on this wrapper: the program was traced in
    eval mode and always computes as such."""

    def __init__(self, program: nn.Module, class_name: str):
        super().__init__()
        self.program = program
        self.class_name = class_name  # the recorded class, "package.module.Class"
        self.training = False

    def train(self, mode: bool = True) -> ProgramModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> Any:  # nnopt traces every program on one batch (save_program)
        return self.program(x)


def class_path(module: nn.Module) -> str:
    """`package.module:Class` of a module's class, as a factory spec names it."""
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def dotted(path: str) -> str:
    return path.replace(":", ".")


def module_recipe(module: nn.Module, *, in_features: int, n_outputs: int, sample_shape: tuple[int, ...],
                  task: str | None) -> tuple[str | None, str | None]:
    """(the factory spec that rebuilds `module` exactly, None) or (None, why there is none)."""
    cls = type(module)
    where = class_path(module)
    if cls.__module__ == "__main__":
        return None, f"its class {dotted(where)} is defined in __main__, which no other process can import"
    if "." in cls.__qualname__:
        return None, f"its class {dotted(where)} is defined inside a function or class, not importable by name"
    try:
        found = getattr(importlib.import_module(cls.__module__), cls.__qualname__, None)
    except Exception as exc:  # noqa: BLE001 - any import failure means no recipe
        return None, f"its module {cls.__module__} cannot be imported again ({type(exc).__name__}: {exc})"
    if found is not cls:
        return None, f"{dotted(where)} does not name its class when imported again"
    args, why = constructor_args(module)
    if args is None:
        return None, why
    try:
        spec = ArchSpec.parse({"factory": where, "args": args}).to_string()
    except NnoptError as exc:
        return None, str(exc)
    try:
        with torch.random.fork_rng(devices=[]):  # building must not move the caller's random stream
            rebuilt = build_model(spec, in_features=in_features, n_outputs=n_outputs,
                                  input_shape=tuple(sample_shape), task=task)
        if type(rebuilt) is not cls:
            return None, f"{spec} builds a {type(rebuilt).__name__}, not a {cls.__name__}"
        try:
            rebuilt.load_state_dict(module.state_dict(), strict=True)
        except RuntimeError:
            return None, (f"its weights do not fit the {cls.__name__} that the arguments found build ({spec}); "
                          f"keep each constructor argument as self.NAME or in self.hparams")
        probe = _probe(sample_shape)
        with _eval_mode(module), _eval_mode(rebuilt), torch.no_grad():
            diff = (_first(rebuilt(probe)) - _first(module(probe))).abs().max().item()
    except Exception as exc:  # noqa: BLE001 - the user's class failed on the recorded arguments
        return None, f"{spec} does not rebuild it ({type(exc).__name__}: {_line(exc)})"
    if not diff <= SAME_OUTPUTS:
        return None, f"{spec} builds a network whose outputs differ from the trained one's (by {diff:.3g})"
    return spec, None


def constructor_args(module: nn.Module) -> tuple[dict[str, Any] | None, str | None]:
    """The keyword arguments that construct `module`'s class as it is: from self.hparams or same-named
    attributes; a parameter found in neither keeps its default. (None, why) when a required one is missing."""
    cls = type(module)
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return None, f"the signature of {cls.__name__}.__init__ cannot be read"
    hparams = getattr(module, "hparams", None)
    hparams = hparams if isinstance(hparams, Mapping) else {}
    args: dict[str, Any] = {}
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name in FACTORY_DATA_ARGS:
            continue  # nnopt passes these from the data; the rebuild check says whether they match
        if p.name in hparams:
            value = hparams[p.name]
        elif _plain(getattr(module, p.name, None)) and p.name in vars(module):
            value = vars(module)[p.name]
        elif p.default is not inspect.Parameter.empty:
            continue
        else:
            return None, (f"its constructor argument '{p.name}' was not found (keep it as self.{p.name} or in "
                          f"self.hparams, or give the model as a recipe: {{'factory': '{class_path(module)}', "
                          f"'args': {{...}}}})")
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            return None, f"its constructor argument '{p.name}' is positional-only"
        args[p.name] = list(value) if isinstance(value, tuple) else value
    return args, None


def save_program(path: str | Path, module: nn.Module, sample_shape: tuple[int, ...]) -> str | None:
    """Write `module` as a torch.export program to `path`, atomically, with a dynamic batch dimension.

    Returns None, or one line saying why it could not be traced (nothing is written then)."""
    blob, error = program_bytes(module, sample_shape)
    if blob is None:
        return error
    atomic_write(path, lambda fh: fh.write(blob))
    return None


def program_bytes(module: nn.Module, sample_shape: tuple[int, ...], *,
                  weights: bool = True) -> tuple[bytes | None, str | None]:
    """(`module` as a torch.export program, its batch dimension dynamic, None) or (None, one line saying why it
    could not be traced).

    weights=False traces a copy whose state-dict tensors are all zero: the graph alone, a few kB once deflated,
    for a file that stores the weights its own way and loads them into the program (load_program_bytes).
    Tensors outside the state dict (non-persistent buffers, constants) are kept: the graph holds them."""
    probe = _probe(sample_shape)
    if not weights:
        module = copy_module(module)
        with torch.no_grad():
            for tensor in module.state_dict().values():
                tensor.zero_()
    try:
        with _eval_mode(module), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (probe,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        program.example_inputs = None  # the probe batch is not worth keeping (6 kB for 2 16x16 RGB images)
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
    except Exception as exc:  # noqa: BLE001 - tracing raises many types; the caller says what is kept
        return None, f"{type(exc).__name__}: {_line(exc)}"
    return buffer.getvalue(), None


def copy_module(module: nn.Module) -> nn.Module:
    """copy.deepcopy of `module`. Copying a torch.export program (a ProgramModule, or a module holding one) pickles
    its tree specs, which torch answers with a FutureWarning about its own deprecated LeafSpec class, once per copy:
    nothing a caller can change, so that warning alone is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        return copy.deepcopy(module)


def load_program(path: str | Path, class_name: str) -> nn.Module:
    with open(path, "rb") as fh:
        return load_program_bytes(fh.read(), class_name)


def load_program_bytes(blob: bytes, class_name: str, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The program of program_bytes as a ProgramModule; `state` (a state dict) replaces its weights, strictly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(io.BytesIO(blob)).module()
    if state is not None:
        program.load_state_dict(dict(state), strict=True)
    return ProgramModule(program, class_name)


def _probe(sample_shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(PROBE_BATCH, *sample_shape, generator=torch.Generator().manual_seed(0))


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _plain(value: Any) -> bool:
    """A value a spec string can hold (the spec check refuses what it cannot write back)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


class _eval_mode:
    """The module in eval mode for the block, its own mode restored after."""

    def __init__(self, module: nn.Module):
        self.module, self.was = module, module.training

    def __enter__(self) -> nn.Module:
        return self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        self.module.train(self.was)
