"""Checkpoints: everything needed to continue a run to bit-identical weights.

Model, optimizer and schedule states, the shuffling generator, torch's global RNG (dropout),
the history so far and the early-stopping state — tensors and plain data only, so the file
loads with weights_only=True.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nnopt.config import TrainSpec
from nnopt.data import feature_scaling_of
from nnopt.errors import CheckpointError, param
from nnopt.models import atomic_torch_save

FORMAT = "nnopt.checkpoint/1"
# Settings a resumed run must share with its checkpoint (out, device, threads, early stopping may change).
SAME_ON_RESUME = ("data", "target", "task", "model", "optimizer", "optimizer_params", "lr", "batch_size", "schedule",
                  "schedule_params", "clip_grad", "seed", "val_fraction", "test_fraction", "scale")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: Path, fingerprint: dict[str, Any], epochs: int | None = None) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to the run described by `fingerprint` (and, given `epochs`,
    that it has not trained more epochs than that: the loop would train none and report the checkpoint's)."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume at {path}; run without {param('resume', True)} to start "
                              "fresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, garbage, or not a torch file
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({type(exc).__name__}); delete it and run without {param('resume', True)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nnopt checkpoint; delete it and run without "
                              f"{param('resume', True)}")
    theirs = state.get("fingerprint", {})
    for key in sorted(set(fingerprint) | set(theirs)):
        if fingerprint.get(key) != theirs.get(key):
            raise CheckpointError(
                f"checkpoint {path} was made with {key}={theirs.get(key)!r}, not {fingerprint.get(key)!r}; "
                f"resume with the same settings or use another {param('out')}"
            )
    done = state.get("epoch", 0)
    if epochs is not None and done > epochs:
        raise CheckpointError(f"checkpoint {path} has trained {done} epochs, more than {param('epochs', epochs)}; "
                              f"give {param('epochs')} of {done} or more to train on, or another {param('out')}")
    return state


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """More epochs may be asked for on resume, unless the schedule's shape depends on the total step count."""
    keys = list(SAME_ON_RESUME)
    if config["schedule"] not in (None, "constant", "reduce-on-plateau"):
        keys.append("epochs")
    return {k: config[k] for k in keys}


def saved_scaling(run_dir: Path) -> dict[str, Any] | None:
    """The feature scaling of the run's model.pt (a finished run continued for more epochs), for a checkpoint
    written before checkpoints recorded theirs; None without a readable model file."""
    try:
        payload = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - absent or unreadable: the checkpoint alone decides
        return None
    return feature_scaling_of(payload.get("preprocessing")) if isinstance(payload, dict) else None


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"shuffle": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_settings(run_dir: Path) -> dict[str, Any]:
    """The settings of the run to continue, from its config.json, so `--out DIR --resume` is enough."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        saved = {}
    if not (run_dir / "checkpoint.pt").is_file():
        why = (f": a {param('strategy', 'hogwild')} run writes none, as each worker's optimizer state is its own"
               if isinstance(saved, dict) and saved.get("strategy") == "hogwild" else "")
        raise CheckpointError(f"no checkpoint to resume at {run_dir / 'checkpoint.pt'}{why}; "
                              f"run without {param('resume', True)} to start fresh")
    if not isinstance(saved, dict):
        return {}
    return {k: v for k, v in saved.items() if k in TrainSpec.__dataclass_fields__}
