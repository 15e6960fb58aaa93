"""The model file: state dict + everything needed to rebuild the network, loadable with weights_only=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.errors import UsageError, keywords_checked, require_path
from nnopt.fileio import atomic_write
from nnopt.models._build import build_model, takes_flat_rows
from nnopt.models._record import PROGRAM, class_path, dotted, load_program, module_recipe, save_program

FORMAT = "nnopt.model/1"


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Write `{"format", "state_dict", **meta}` atomically. meta holds model_spec, in_features, n_outputs, ...

    and sample_shape: the shape of one sample the network takes when it is not a flat row of in_features (a
    factory's or a user's module on images or signals), else None.

    A module without a model_spec (an instance given to fit) is recorded by its class and constructor arguments
    when they can be found (then model_spec is that factory spec) and always as a torch.export program, PROGRAM
    next to `path`. Returns what was recorded: {"model_spec", "module_class", "recipe_missing" (why there is no
    recipe, or None), "program" (the file name, or None), "program_error" (one line, or None)}."""
    meta = dict(meta)
    record: dict[str, Any] = {"model_spec": meta.get("model_spec")}
    if not meta.get("model_spec"):
        shape = tuple(meta.get("sample_shape") or (meta["in_features"],))
        spec, missing = module_recipe(model, in_features=meta["in_features"], n_outputs=meta["n_outputs"],
                                      sample_shape=shape, task=meta.get("task"))
        program = Path(path).with_name(PROGRAM)
        error = save_program(program, model, shape)
        if error is not None:
            program.unlink(missing_ok=True)  # a program of an earlier save would not match these weights
        record.update(model_spec=spec, module_class=class_path(model), recipe_missing=missing,
                      program=None if error else PROGRAM,
                      program_error=None if error is None else
                      f"{PROGRAM} not written: torch.export cannot trace {type(model).__name__} ({error}); "
                      "the state dict is kept, and the run needs its class to be used")
        meta.update(record)
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    atomic_torch_save(payload, path)
    return record


@keywords_checked
def load_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network saved by save_model; return (model in eval mode, meta)."""
    require_path("path", path, "a model file (model.pt) or the run directory that holds it")
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise UsageError(f"model file not found: {path}; give a run directory or its model.pt")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise UsageError(f"{path} is not a readable nnopt model ({type(exc).__name__}); re-run nnopt train") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not an nnopt model file (no '{FORMAT}' header)")
    meta = {k: v for k, v in payload.items() if k not in ("state_dict",)}
    if not payload.get("model_spec"):
        return _load_program(path, meta), meta
    shape = payload.get("input_shape")
    if "sample_shape" in payload and not takes_flat_rows(payload["model_spec"]):
        shape = payload["sample_shape"]  # what the factory was given at training time
    try:
        model = build_model(payload["model_spec"], in_features=payload["in_features"],
                            n_outputs=payload["n_outputs"], input_shape=tuple(shape) if shape else None,
                            task=payload.get("task"))
    except UsageError as exc:
        if not payload.get("module_class") or not (path.with_name(PROGRAM)).is_file():
            raise
        # an instance's recipe whose class cannot be imported here: its program serves inference
        meta.update(recipe=meta["model_spec"], model_spec=None, recipe_missing=str(exc))
        return _load_program(path, meta), meta
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, meta


def needs_class(meta: dict[str, Any], what: str) -> None:
    """Raise the one-line UsageError for `what` (a command that trains or rebuilds the network) when the model
    of `meta` was loaded from its torch.export program, without its class."""
    if not meta.get("loaded_program"):
        return
    reason = meta.get("recipe_missing") or "no recipe was recorded"
    source = meta["loaded_program"] if isinstance(meta["loaded_program"], str) else PROGRAM
    raise UsageError(f"{what} needs the class {dotted(meta['module_class'])} importable with its constructor "
                     f"arguments ({reason}); evaluate, predict and export work without it, from {source}")


def _load_program(path: Path, meta: dict[str, Any]) -> nn.Module:
    """The torch.export program saved next to an instance's model.pt (inference only)."""
    cls = dotted(meta.get("module_class") or "an unknown class")
    program = path.with_name(PROGRAM)
    if not program.is_file():
        why = meta.get("program_error") or f"{PROGRAM} is missing"
        raise UsageError(f"{path} holds a {cls} that cannot be rebuilt ({meta.get('recipe_missing') or 'no recipe'})"
                         f" and {why}; rebuild it in code and load its state_dict")
    try:
        model = load_program(program, cls)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign program file
        raise UsageError(f"{program} cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                         "train the model again") from None
    meta["loaded_program"] = PROGRAM
    return model


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through an atomic temp-file-and-rename write."""
    atomic_write(path, lambda fh: torch.save(obj, fh))
