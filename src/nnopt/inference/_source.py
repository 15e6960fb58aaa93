"""Which model a path means, and the settings that split the data it was trained on.

Every command leaves its model in a known place; MODEL_CANDIDATES lists them in order of preference, so a
new kind of run directory is one more line. A compare run keeps no weights: its best run is trained again
from the recorded settings (same split, optimizer, learning rate and seed) into DIR/best/, once.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from nnopt.compress import nnopt_load
from nnopt.config import TABLE_KEYS
from nnopt.data import load_data
from nnopt.errors import UsageError
from nnopt.train import fit

# (path inside a run directory, what holds a model there), first match wins
MODEL_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("compressed.nnz", "compressed model"),  # a compress run; an automl run that compressed its model
    ("model.pt", "train run"),
    ("best/model.pt", "best of a tune / search / compare"),
    ("final/compressed.nnz", "compressed final model of an automl run"),
    ("final/model.pt", "final model of an automl run"),
)
SPLIT_KEYS = ("data", "target", "task", "val_fraction", "test_fraction", "scale", "seed", *TABLE_KEYS)
MAX_HOPS = 4  # config.json links followed (compress -> train, automl -> final/); a loop stops here


def locate(source: str | Path) -> tuple[nn.Module, dict[str, Any], Path, str]:
    """(model in eval mode, meta, the model file, a description) for a run directory or a model file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"model not found: {path}; give a run directory (train, tune, search, compare, compress, "
                         "automl) or a model file (model.pt, compressed.nnz)")
    if path.is_file():
        model, meta = nnopt_load(path)
        return model, meta, path, f"model file {path}"
    for name, what in MODEL_CANDIDATES:
        if (path / name).is_file():
            model, meta = nnopt_load(path / name)
            return model, meta, path / name, f"{what} {path / name}"
    config = read_config(path)
    if config is not None and config.get("command") == "compare":
        best = _train_compare_best(path, config)
        model, meta = nnopt_load(best)
        return model, meta, best, f"best run of compare {path}, trained again into {best.parent}"
    looked = ", ".join(name for name, _ in MODEL_CANDIDATES)
    raise UsageError(f"{path} holds no nnopt model (looked for {looked}); give the run directory of a finished "
                     "train, tune, search, compare, compress or automl run, or a model file")


def read_config(directory: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def training_settings(model_file: Path) -> dict[str, Any] | None:
    """data / target / task / fractions / scale / seed of the split the model was trained on, or None (data is
    None when training got its rows in memory: the split is then re-made from the rows given again).

    Looked up next to the model, then one level up (a tune's or compare's best/ was trained on data the
    parent loaded, so its own config.json names no data file)."""
    for directory in (model_file.parent, model_file.parent.parent):
        settings = _settings_in(directory, 0)
        if settings is not None:
            return settings
    return None


def _settings_in(directory: Path, hops: int) -> dict[str, Any] | None:
    config = read_config(directory)
    if config is None or hops > MAX_HOPS:
        return None
    command = config.get("command", "train")
    if command == "train":
        settings = {key: config.get(key) for key in SPLIT_KEYS}
    elif command in ("tune", "search"):
        train = config.get("train") or {}
        settings = {"data": config.get("data"), "target": config.get("target"), "task": config.get("task"),
                    "seed": config.get("seed") or 0, **{key: config.get(key) for key in TABLE_KEYS},
                    **{key: train.get(key) for key in ("val_fraction", "test_fraction", "scale")}}
    elif command == "compare":
        options = config.get("options") or {}
        # compare splits once with seed 0 for every run; the seeds vary the training only
        settings = {"data": config.get("data"), "task": config.get("task"), "seed": 0,
                    **{key: options.get(key, config.get(key)) for key in ("target", "val_fraction", "test_fraction",
                                                                          "scale", *TABLE_KEYS)}}
    elif command == "compress":
        if not config.get("source"):
            return None
        source = Path(str(config["source"]))
        for origin in (source, directory.parent / source.name):  # as given, or moved alongside the compress run
            if origin.exists():
                found = _settings_in(origin if origin.is_dir() else origin.parent, hops + 1)
                if found is not None:
                    return found
        return None
    else:  # a run that holds a train run (automl's final/)
        for sub in ("final", "best"):
            found = _settings_in(directory / sub, hops + 1)
            if found is not None:
                return found
        return None
    data = settings.get("data")
    if not isinstance(data, str) or data.startswith("<"):  # "<Data>": loaded in memory, not a name or a path
        # the fractions and the seed still re-create the split when the same rows are given again
        settings["data"] = None
    return settings


def _train_compare_best(run_dir: Path, config: dict[str, Any]) -> Path:
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        ranked = sorted(results["optimizers"], key=lambda row: row["rank"])
        runs = results["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{run_dir} is a compare run without a readable results.json; re-run nnopt compare") from None
    primary = config.get("primary_metric") or ("accuracy" if config.get("task") == "classification" else "r2")
    winner = ranked[0]["optimizer"] if ranked else None
    mine = [r for r in runs if r.get("optimizer") == winner and r.get("status") == "ok"]
    if not mine:
        raise UsageError(f"every run of compare {run_dir} diverged; there is no model to use")
    # the winner's seed with the best validation score (the earliest seed on ties): chosen without the test rows
    best = max(mine, key=lambda r: _finite(r["final"].get(f"val_{primary}")))
    settings = _settings_in(run_dir, 0)
    if settings is None:
        raise UsageError(f"compare {run_dir} ran on data given in memory; train the model with nnopt train")
    split = {key: settings[key] for key in ("target", "task", "val_fraction", "test_fraction", "scale", *TABLE_KEYS)
             if settings.get(key) is not None}
    options = {k: v for k, v in (config.get("options") or {}).items() if k not in (*SPLIT_KEYS, "threads")}
    command = (f"nnopt train --data {settings['data']} --model {config.get('model')} --optimizer {best['optimizer']} "
               f"--lr {best['lr']} --epochs {config.get('epochs')} --seed {best['seed']}")
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".best-", dir=run_dir))
    except OSError as exc:
        raise UsageError(f"compare keeps no weights and its best run must be trained again into {run_dir / 'best'}, "
                         f"which cannot be written ({exc.strerror}); or train it yourself: {command}") from None
    try:
        data = load_data(settings["data"], seed=0, **split)
        result = fit(config.get("model"), data, optimizer=best["optimizer"], lr=best["lr"], epochs=config["epochs"],
                     batch_size=config.get("batch_size"), seed=best["seed"], threads=1, out=scratch, **options)
        got, recorded = result.metrics["test"].get(primary), best["final"].get(f"test_{primary}")
        if got is None or recorded is None or not math.isclose(got, recorded, rel_tol=1e-6, abs_tol=1e-9):
            raise UsageError(f"could not re-create the best run of compare {run_dir} (test {primary} {got} against "
                             f"{recorded} recorded; the data changed?); train it yourself: {command}")
        target = run_dir / "best"
        try:
            scratch.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / "model.pt").is_file():
                raise
        return target / "model.pt"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf
