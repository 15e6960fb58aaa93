"""Read a run directory: detect its kind from config.json and load the files that kind needs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnopt.errors import UsageError, param, require_path

RUN_KINDS = ("train", "compare", "lr-find", "tune", "search", "compress", "automl")
# kind -> (files it needs, files it uses when present); config.json is always needed
FILES = {
    "train": (("metrics.jsonl",), ("summary.json", "importance.json")),
    "compare": (("results.json",), ("lr_find.json",)),
    "lr-find": (("lr_find.json",), ()),
    "tune": (("trials.json",), ()),  # not the study storage: a database's password is not stored
    "search": (("trials.json",), ("best/summary.json",)),  # an architecture search: a tune run + costs per trial
    "compress": (("results.json",), ()),  # variants, per-layer sparsity, latency; never the model files
    "automl": (("automl.json",), ()),  # the stages; figures come from the stages' own run directories
}


@dataclass
class Run:
    """One run directory's parsed files: `files` maps a file name to its parsed content."""

    path: Path
    kind: str
    config: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)


def load_run(run_dir: str | Path) -> Run:
    require_path("run_dir", run_dir, "the directory of an nnopt run")
    path = Path(run_dir)
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; give the {param('out')} directory of an nnopt run")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{path} is not an nnopt run directory (no config.json); give the {param('out')} directory "
                         "of a run")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise UsageError(f"{config_path} is not a JSON object; is this an nnopt run directory?")
    kind = detect_kind(config, path)
    run = Run(path=path, kind=kind, config=config)
    needed, optional = FILES[kind]
    for name in needed + optional:
        file = path / name
        if not file.is_file():
            if name in needed:
                raise UsageError(f"{file} is missing; a {kind} run directory needs {' and '.join(needed)}")
            continue
        run.files[name] = read_jsonl(file) if name.endswith(".jsonl") else read_json(file)
    return run


def detect_kind(config: dict[str, Any], path: Path) -> str:
    command = config.get("command")
    if command is None and "optimizer" in config:
        return "train"  # written before config.json carried "command"
    if command in RUN_KINDS:
        return command
    if command is None:
        raise UsageError(f"{path} is not an nnopt run directory (config.json has no 'command'); "
                         f"give the {param('out')} directory of a run")
    raise UsageError(f"cannot build a report for a '{command}' run in {path}; "
                     f"reports exist for: {', '.join(RUN_KINDS)}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); re-run the command") from exc


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped, a torn last line (crash mid-write) too."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise UsageError(f"{path} line {number} is not valid JSON ({exc.msg})") from exc
        if isinstance(row, dict):
            rows.append(row)
    return rows
