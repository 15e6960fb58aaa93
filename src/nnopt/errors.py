"""The error contract: user mistakes are UsageError (exit 2), divergence is DivergedError (exit 3).

Messages are one line that names the problem and the fix, e.g. ``lr= must be > 0; got -0.1``. A parameter is
named through `param()`, and spelled when the message is shown, for whoever called: ``lr=`` from Python,
``--lr`` from the command line (the CLI runs inside `cli_spelling()`). The CLI prints ``error: <message>``
without a traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# The spelling travels in the environment so that processes a command starts (--nproc ranks, tune and
# compare workers, Hogwild) spell the parameters of the messages they send back as the command does.
SPELLING_ENV = "NNOPT_SPELLING"
# A parameter inside a message: both spellings, chosen when the message is turned into text.
_MARK = re.compile("\x02([^\x1f\x03]*)\x1f([^\x03]*)\x03")
_UNSET = object()
# Python keyword arguments whose flag is not the same word with dashes
CLI_FLAGS = {"optimizer_params": "--opt", "schedule_params": "--schedule-opt"}


class NnoptError(Exception):
    """Base class of every error nnopt raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:
        return spell(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


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

    def __init__(self, epoch: int, step: int, loss: float, hint: str | None = None):
        self.epoch, self.step, self.loss = epoch, step, loss
        hint = f"try a lower {param('lr')}" if hint is None else hint
        super().__init__(f"diverged at epoch {epoch} step {step} (loss={loss}); {hint}")


def param(name: str, value: object = _UNSET, *, metavar: str | None = None) -> str:
    """A parameter named in a message, spelled when the message is shown: ``lr=`` / ``--lr``.

    With a value: ``device='cuda'`` / ``--device cuda`` (True: ``resume=True`` / ``--resume``). With a
    metavar, the same placeholder in both: ``out=DIR`` / ``--out DIR``."""
    flag = CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    if metavar is not None:
        python, cli = f"{name}={metavar}", f"{flag} {metavar}"
    elif value is _UNSET:
        python, cli = f"{name}=", flag
    elif value is True:
        python, cli = f"{name}=True", flag
    else:
        python, cli = f"{name}={value!r}", f"{flag} {value}"
    return f"\x02{python}\x1f{cli}\x03"


def spelled(python: str, cli: str) -> str:
    """A part of a message said one way to a Python caller and another on the command line (where the fix itself
    differs, not only a parameter's spelling); `python` and `cli` may hold param() marks of their own."""
    return f"\x02{_plain(python, 1)}\x1f{_plain(cli, 2)}\x03"


def _plain(text: str, group: int) -> str:
    return _MARK.sub(lambda m: m.group(group), text)


def spell(message: str) -> str:
    """`message` with its parameters spelled for the caller: Python keywords, or flags inside cli_spelling()."""
    group = 2 if os.environ.get(SPELLING_ENV) == "cli" else 1
    return _MARK.sub(lambda m: m.group(group), message)


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Inside the block (and in the processes started in it) messages name parameters as flags: ``--lr``."""
    before = os.environ.get(SPELLING_ENV)
    os.environ[SPELLING_ENV] = "cli"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SPELLING_ENV, None)
        else:
            os.environ[SPELLING_ENV] = before


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``";"`` — followed by a list of the choices."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ";"


def keyword_names(fn: Callable[..., Any], skip: Iterable[str] = ()) -> list[str]:
    """The keyword arguments `fn` takes by name (not *args / **kwargs), less `skip`."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    skipped = set(skip)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds and p.name not in skipped]


def check_keywords(where: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """A UsageError for the first keyword of `given` that `where` (a public function's name) does not take:
    ``unknown keyword argument 'budgett' in automl(); did you mean 'budget'? keywords: ...``."""
    names = list(accepted)
    for key in given:
        if key not in names:
            raise UsageError(f"unknown keyword argument '{key}' in {where}(){did_you_mean(str(key), names)} "
                             f"keywords: {', '.join(names)}")


def keywords_checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A public function whose wrong call (an unknown keyword, a missing argument, too many positional ones) is a
    UsageError naming the function, not Python's TypeError."""
    signature = inspect.signature(fn)
    accepted = keyword_names(fn)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not open_ended:
            check_keywords(fn.__name__, kwargs, accepted)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UsageError(f"{fn.__name__}(): {exc}; see help(nnopt.{fn.__name__})") from None
        return fn(*args, **kwargs)

    return call


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


def describe(value: object) -> str:
    """What a wrong value is, for a message: ``an int``, ``'abc'``, ``an nn.Module (MyNet)``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return repr(value)
    kind = type(value)
    if any(c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in kind.__mro__):
        return f"an nn.Module ({kind.__name__})"
    name = kind.__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def require_int(name: str, value: object, minimum: int, extra: str = "") -> None:
    """``epochs= must be an integer >= 1; got 'ten'`` unless `value` is an int (not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{param(name)} must be an integer >= {minimum}{extra}; got {value!r}")


def require_path(name: str, value: object, expected: str) -> None:
    """A path parameter given something else (a number, a list) is a UsageError naming what it takes."""
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"{param(name)} must be {expected}; got {describe(value)}")


def require_model_path(name: str, value: object) -> None:
    """`name` must name a trained model on disk; an nn.Module (not taken here yet) gets the way to make one."""
    if not isinstance(value, (str, os.PathLike)):
        hint = ("; train it from a model spec with nnopt.fit('mlp:128,64', data, out=DIR) first and give DIR"
                if describe(value).startswith("an nn.Module") else "")
        raise UsageError(f"{param(name)} must be a run directory or a model file (model.pt, compressed.nnz); "
                         f"got {describe(value)}{hint}")
