"""The model file: state dict + everything needed to rebuild the network, loadable with weights_only=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.errors import UsageError, require_path
from nnopt.fileio import atomic_write
from nnopt.models._build import build_model, takes_flat_rows

FORMAT = "nnopt.model/1"


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write `{"format", "state_dict", **meta}` atomically. meta holds model_spec, in_features, n_outputs, ...

    and sample_shape: the shape of one sample the network takes when it is not a flat row of in_features (a
    factory's or a user's module on images or signals), else None."""
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    atomic_torch_save(payload, path)


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
    if not payload.get("model_spec"):
        raise UsageError(f"{path} holds a custom nn.Module without a spec; rebuild it in code and load its state_dict")
    shape = payload.get("input_shape")
    if "sample_shape" in payload and not takes_flat_rows(payload["model_spec"]):
        shape = payload["sample_shape"]  # what the factory was given at training time
    model = build_model(payload["model_spec"], in_features=payload["in_features"], n_outputs=payload["n_outputs"],
                        input_shape=tuple(shape) if shape else None, task=payload.get("task"))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict",)}
    return model, meta


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through an atomic temp-file-and-rename write."""
    atomic_write(path, lambda fh: torch.save(obj, fh))
