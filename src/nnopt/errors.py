"""The error contract: user mistakes are UsageError (exit 2), divergence is DivergedError (exit 3).

Messages are one line that names the problem and the fix, e.g. ``--lr must be > 0; got -0.1``.
The CLI prints them as ``error: <message>`` without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NnoptError(Exception):
    """Base class of every error nnopt raises on purpose."""

    exit_code = 1


class UsageError(NnoptError):
    """Bad input from the user: a flag, a name, a file, a value. Exit code 2."""

    exit_code = 2


class DataError(UsageError):
    """The data cannot be used as given (missing file, NaN, wrong labels, empty)."""


class ConfigError(UsageError):
    """A spec, YAML file or model string is malformed or names something unknown."""


class CheckpointError(UsageError):
    """A checkpoint to resume from is missing, corrupt, or belongs to another run."""


class DivergedError(NnoptError):
    """Training produced a non-finite loss. Exit code 3."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, loss: float, hint: str = "try a lower --lr"):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"diverged at epoch {epoch} step {step} (loss={loss}); {hint}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``";"`` — followed by a list of the choices."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ";"


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> ConfigError:
    """``unknown optimizer 'adm'; did you mean 'adam'? choices: adam, sgd, ...``"""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} '{name}'{did_you_mean(str(name), choices)} choices: {', '.join(choices)}"
    )


def require(condition: bool, message: str, error: type[UsageError] = UsageError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds (validation at the boundary)."""
    if not condition:
        raise error(message)
