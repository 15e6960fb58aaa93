"""Checkpoints: everything needed to continue a run to bit-identical weights.

Model, optimizer and schedule states, the shuffling generator, torch's global RNG (dropout),
the history so far and the early-stopping state — tensors and plain data only, so the file
loads with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nnopt.errors import CheckpointError
from nnopt.models import atomic_torch_save

FORMAT = "nnopt.checkpoint/1"
# Spec keys that may differ between the killed run and its resume.
RESUMABLE_CHANGES = ("epochs", "out", "device", "threads", "early_stopping")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to the run described by `fingerprint`."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume at {path}; run without --resume to start fresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, garbage, or not a torch file
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({type(exc).__name__}); delete it and run without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nnopt checkpoint; delete it and run without --resume")
    theirs = state.get("fingerprint", {})
    for key in sorted(set(fingerprint) | set(theirs)):
        if fingerprint.get(key) != theirs.get(key):
            raise CheckpointError(
                f"checkpoint {path} was made with {key}={theirs.get(key)!r}, not {fingerprint.get(key)!r}; "
                "resume with the same settings or use another --out"
            )
    return state


def fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in RESUMABLE_CHANGES}


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
