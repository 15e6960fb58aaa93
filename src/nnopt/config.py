"""Typed run specs: one dataclass per command, filled from YAML and `key=value` overrides.

Parameters are data, validated once here at the boundary with one message format
(`lr= must be > 0; got -0.1`, spelled `--lr` on the command line). Unknown keys are errors with a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnopt.errors import ConfigError, UsageError, describe, did_you_mean, param, require_int, unknown_name

TASKS = ("classification", "regression")
DEVICES = ("auto", "cpu", "cuda")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
# synchronous data parallel (DistributedDataParallel); asynchronous Hogwild SGD; local SGD (periodic averaging)
STRATEGIES = ("ddp", "hogwild", "local-sgd")
# how an epoch's train_* metrics are found: from the batches it trained on, or by scoring the training split again
TRAIN_METRICS = ("running", "exact")
DEFAULT_SYNC_EVERY = 8  # local SGD: optimizer steps between parameter averages
DEFAULT_EPOCHS = 10
# A full-batch optimizer (gd) takes one step per epoch, and 10 steps of gradient descent train little: on digits
# no lr halves the loss in 10 (benchmarks/RESULTS.md, "Default learning rates"). 100 full-batch epochs take about
# 3x the time of 10 mini-batch ones there, most of it the per-epoch evaluation.
FULL_BATCH_EPOCHS = 100
# Loggers besides metrics.jsonl (train/_loggers.py) -> the optional package each needs, checked before any work.
LOGGERS = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}


@dataclass
class TrainSpec:
    """Everything `nnopt train` needs; `config.json` in a run directory is this, resolved."""

    data: Any = None
    target: str | None = None
    task: str | None = None
    # a table's columns: left out, or typed against the detection (names; docs/data.md)
    drop: list[str] | None = None
    categorical: list[str] | None = None
    numeric: list[str] | None = None
    sep: str | None = None  # a CSV's field separator (default: sniffed from the header)
    image_size: Any = None  # an image folder's images are resized to N x N or "HxW" (default: their common size)
    strict: bool = False  # an image that does not decode is an error (default: skipped and counted)
    model: Any = "mlp:128,64"
    optimizer: str = "adam"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    batch_size: int | str | None = None  # None: the optimizer's default (64; "full" for gd)
    epochs: int | None = None  # None: DEFAULT_EPOCHS, or FULL_BATCH_EPOCHS for a full-batch optimizer (gd)
    schedule: str | None = None
    schedule_params: dict[str, Any] = field(default_factory=dict)
    early_stopping: int | None = None  # patience in epochs on `monitor`
    monitor: str | None = None  # the logged metric early stopping and the kept weights follow [val_loss]
    mode: str | None = None  # min | max: the better direction of `monitor` [inferred; a custom metric needs it]
    clip_grad: float | None = None
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    scale: str = "auto"
    device: str = "auto"
    threads: int | None = None
    out: str | None = None
    nproc: int = 1  # processes nnopt.distributed starts on this machine (1 under torchrun, which starts them)
    strategy: str = "ddp"
    sync_every: int | None = None  # local-sgd: steps between averages of the processes' parameters [8]
    max_restarts: int = 0  # restart the processes from the checkpoint this many times after a crash
    log: list[str] = field(default_factory=list)  # loggers besides metrics.jsonl: csv, tensorboard, mlflow
    augment: Any = None  # image augmentation of training batches: "flip,crop,jitter" (train/_augment.py)
    # a torch Dataset / IterableDataset / DataLoader (docs/data.md): the number of classes (with task=, no pass over
    # the samples reads labels), validation samples of its own, and the settings of the DataLoader nnopt builds
    n_classes: int | None = None
    val_data: Any = None
    num_workers: int = 0
    pin_memory: bool | None = None  # None: on when training on CUDA
    # the epoch progress bar on stderr: True, False, or "auto" (when stderr is a terminal). False here, so that the
    # commands that train many models (tune, search, compare, automl) stay quiet; nnopt.fit and `nnopt train` ask "auto"
    progress: Any = False
    # an epoch's train_* metrics: "running" (from the outputs of the batches trained on; no second pass) or "exact"
    # (the whole training split scored again after the epoch). The run's final train metrics are exact either way,
    # except for a streamed source (a torch Dataset, a memory-mapped array), which is not read a second time.
    train_metrics: str = "running"

    def validate(self) -> TrainSpec:
        if self.data is None or (isinstance(self.data, str) and not self.data.strip()):
            raise UsageError(f"no data given; pass {param('data', metavar='NAME_OR_PATH')} (see `nnopt datasets`)")
        if self.lr is not None:
            _check_number("lr", self.lr, lambda v: v > 0 and math.isfinite(v), "> 0")
        if self.epochs is not None:
            require_int("epochs", self.epochs, 1)
        if self.batch_size is not None and self.batch_size != "full":
            require_int("batch_size", self.batch_size, 1, extra=" or 'full'")
        if self.early_stopping is not None:
            require_int("early_stopping", self.early_stopping, 1)
        if self.monitor is not None and (not isinstance(self.monitor, str) or not self.monitor):
            raise UsageError(f"{param('monitor')} must be a logged metric's name, e.g. 'val_f1'; got {self.monitor!r}")
        if self.mode is not None and self.mode not in ("min", "max"):
            raise UsageError(f"{param('mode')} must be 'min' or 'max'; got {self.mode!r}")
        watches_val = not (self.monitor or "").startswith("train_")
        for name, on in (("early_stopping", self.early_stopping is not None and watches_val),
                         ("schedule", self.schedule == "reduce-on-plateau")):
            if on and self.val_fraction == 0:  # both watch the validation loss, which an empty split never has
                shown = param(name) if name == "early_stopping" else param(name, "reduce-on-plateau")
                raise UsageError(f"{shown} watches the validation loss, and {param('val_fraction', 0)} leaves no "
                                 f"validation rows; give {param('val_fraction')} > 0 or drop it")
        if self.clip_grad is not None:
            _check_number("clip_grad", self.clip_grad, lambda v: v > 0 and math.isfinite(v), "> 0")
        require_int("seed", self.seed, 0)
        if self.threads is not None:
            require_int("threads", self.threads, 1)
        if self.task is not None and self.task not in TASKS:
            raise UsageError(f"{param('task')} must be one of {', '.join(TASKS)}; got {self.task!r}")
        self.device = device_name(self.device)
        require_int("nproc", self.nproc, 1)
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown {param('strategy')} '{self.strategy}'"
                             f"{did_you_mean(str(self.strategy), STRATEGIES)} "
                             f"choices: {', '.join(STRATEGIES)}")
        if self.sync_every is not None:
            require_int("sync_every", self.sync_every, 1)
            if self.strategy != "local-sgd":
                raise UsageError(f"{param('sync_every')} is for {param('strategy', 'local-sgd')}; drop it or add "
                                 f"{param('strategy', 'local-sgd')}")
        elif self.strategy == "local-sgd":
            self.sync_every = DEFAULT_SYNC_EVERY  # resolved here, so config.json records the period used
        require_int("max_restarts", self.max_restarts, 0)
        if self.max_restarts and not self.out:
            raise UsageError(f"{param('max_restarts')} needs {param('out', metavar='DIR')}: a restart resumes from "
                             "the checkpoint there")
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise UsageError(f"{param('out')} must be a directory path; got {describe(self.out)}")
        for name in ("optimizer_params", "schedule_params"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"{param(name)} must be a mapping of option: value; got {getattr(self, name)!r}")
        self.log = logger_names(self.log)
        for name in TABLE_KEYS[:3]:
            setattr(self, name, column_names(name, getattr(self, name)))
        if self.target is not None and integer_name(self.target):  # a DataFrame's integer column name, read as text
            self.target = str(int(self.target))
        if self.sep is not None and (not isinstance(self.sep, str) or not self.sep):
            raise UsageError(f"{param('sep')} must be one character (e.g. ';' or 'tab'); got {self.sep!r}")
        self.image_size, self.strict = image_settings(self.image_size, self.strict)
        self.augment = augment_names(self.augment)
        if self.n_classes is not None:
            require_int("n_classes", self.n_classes, 2)
            if self.task == "regression":
                raise UsageError(f"{param('n_classes')} is for classification; drop it or {param('task', 'regression')}")
        require_int("num_workers", self.num_workers, 0)
        if self.pin_memory is not None and not isinstance(self.pin_memory, bool):
            raise UsageError(f"{param('pin_memory')} must be True, False or None (on for CUDA); got "
                             f"{describe(self.pin_memory)}")
        if self.train_metrics not in TRAIN_METRICS:
            raise UsageError(f"{param('train_metrics')} must be one of {', '.join(TRAIN_METRICS)}; got "
                             f"{describe(self.train_metrics)}")
        if self.progress is None:
            self.progress = "auto"
        if not isinstance(self.progress, bool) and self.progress != "auto":
            raise UsageError(f"{param('progress')} must be True, False or 'auto'; got {describe(self.progress)}")
        if self.augment and self.strategy == "hogwild":
            raise UsageError(f"{param('augment')} is applied by the training loop of one process, DDP and local SGD; "
                             f"{param('strategy', 'hogwild')} does not apply it: use another strategy")
        return self

    def to_dict(self) -> dict[str, Any]:
        # the data objects as given, not deep copies: a Dataset may be large and a memory-mapped array would be
        # read whole by copying
        sources = {"data": self.data, "val_data": self.val_data}
        return {**dataclasses.asdict(dataclasses.replace(self, data=None, val_data=None)), **sources}


# how a source is read, in every command's spec: a table's columns, then an image folder's decoding
TABLE_KEYS = ("drop", "categorical", "numeric", "sep", "image_size", "strict")
AUGMENTATIONS = ("flip", "crop", "jitter")  # train/_augment.py


def image_settings(image_size: Any, strict: Any) -> tuple[str | None, bool]:
    """image_size as "HxW" (from N, "N", "HxW" or [H, W]) and strict as a bool; None stays None."""
    if not isinstance(strict, bool):
        raise UsageError(f"{param('strict')} must be True or False; got {describe(strict)}")
    if image_size is None:
        return None, strict
    parts = [image_size] if isinstance(image_size, int) else image_size
    if isinstance(image_size, str):
        parts = image_size.lower().replace(" ", "").split("x")
    try:
        if isinstance(image_size, bool) or not isinstance(parts, (list, tuple)) or not 1 <= len(parts) <= 2 \
                or any(isinstance(p, (bool, float)) for p in parts):
            raise ValueError
        height, width = int(parts[0]), int(parts[-1])
    except (TypeError, ValueError):
        raise UsageError(f"{param('image_size')} must be a size in pixels, N or HxW (e.g. 32 or 32x48); got "
                         f"{describe(image_size)}") from None
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        raise UsageError(f"{param('image_size')} must be 1 to 4096 pixels a side; got {height}x{width}")
    return f"{height}x{width}", strict


def augment_names(value: Any) -> list[str] | None:
    """`augment` as a list of known names, from a list or "flip,crop"; None, "", "none" and [] are no augmentation."""
    items = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise UsageError(f"{param('augment')} must be names ({', '.join(AUGMENTATIONS)}) in a list or one "
                         f"comma-separated string; got {describe(value)}")
    names: list[str] = []
    for name in (part.strip().lower() for item in items for part in item.split(",")):
        if name and name != "none" and name not in names:
            if name not in AUGMENTATIONS:
                raise unknown_name("augment", name, AUGMENTATIONS)
            names.append(name)
    return names or None


def integer_name(value: Any) -> bool:
    """An integer (Python's or numpy's, not a bool): a DataFrame's column name that the columns' text names spell."""
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def column_names(name: str, value: Any) -> list[str] | None:
    """Column names from a list or one comma-separated string; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if integer_name(value):  # a DataFrame's integer column name: column names are read as text
        return [str(value)]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) or integer_name(item) for item in value):
        return [str(item) for item in value]
    raise UsageError(f"{param(name)} must be column names (a list, or one comma-separated string); got "
                     f"{describe(value)}")


def table_settings(source: Mapping[str, Any]) -> dict[str, Any]:
    """The table keys of a spec or settings mapping that are set, for load_data(**...)."""
    return {key: source[key] for key in TABLE_KEYS if source.get(key) is not None}


def device_name(device: Any) -> str:
    """auto, cpu, cuda or cuda:N, from a string or a torch.device (read by its text, so no torch import here)."""
    if type(device).__name__ == "device" and type(device).__module__.startswith("torch"):
        device = str(device)
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise UsageError(f"{param('device')} must be one of {', '.join(DEVICES)} or cuda:N; got {describe(device)}")
    return device


def _check_number(name: str, value: Any, ok: Any, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(float(value)):
        number = "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number "
        raise UsageError(f"{param(name)} must be {number}{rule}; got {value!r}")


def logger_names(value: Any) -> list[str]:
    """`log` as a list of known names, from a list or a comma-separated string ("csv,tensorboard");
    a logger whose package is missing is refused here, before data is loaded or anything is written."""
    items = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{param('log')} must be a list of logger names ({', '.join(LOGGERS)}); got {value!r}")
    names: list[str] = []
    for name in (part.strip().lower() for item in items for part in item.split(",")):
        if name and name not in names:
            if name not in LOGGERS:
                raise unknown_name("logger", name, LOGGERS)
            package = LOGGERS[name]
            if package and not _installed(package):
                raise UsageError(f"{param('log', name)} needs the {package} package; pip install {package}")
            names.append(name)
    return names


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as missing
        return False


def spec_from_mapping(cls: type, values: Mapping[str, Any], source: str = "config", coerce: bool = True) -> Any:
    """Build a spec dataclass from a mapping; unknown keys are a ConfigError with a did-you-mean. `coerce`: numbers
    that YAML 1.1 left as text (`1e-3`) become numbers; a Python caller's values are taken as given (coerce=False),
    so validate() refuses `epochs="3"` as it refuses `epochs=2.0`."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise ConfigError(
                f"unknown key '{key}' in {source}{did_you_mean(str(key), names)} keys: {', '.join(names)}"
            )
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    return cls(**{k: _coerce_number(v, types[k]) if coerce else v for k, v in values.items()})


def _coerce_number(value: Any, annotation: str) -> Any:
    """YAML 1.1 reads `1e-3` as a string; give numeric fields their number back."""
    if not isinstance(value, str) or not ("float" in annotation or "int" in annotation):
        return value
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def portable_paths(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` with its data files (`data`, `val_data`) as absolute paths, for a file written to be run again
    from anywhere (best.yaml says `nnopt train --config best.yaml`, which a user runs from the directory that holds
    it): a relative path names a file only from the directory the command ran in. Dataset names and values that
    name no existing file are kept as given."""
    out = dict(settings)
    for key in ("data", "val_data"):
        value = out.get(key)
        if isinstance(value, str) and value and os.path.exists(value) and not os.path.isabs(value):
            out[key] = os.path.abspath(value)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load; malformed files are a ConfigError naming the line."""
    import yaml  # PyYAML: the one third-party import of layer 0, kept lazy

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of key: value; got a {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (`lr=1e-3`, `batch_size=full`, `model=mlp:64`)."""
    import yaml

    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"malformed override '{text}'; expected key=value")
    for convert in (int, float):
        try:
            return key.strip().replace("-", "_"), convert(value)
        except ValueError:
            pass
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):
        parsed = value.strip()
    return key.strip().replace("-", "_"), parsed
