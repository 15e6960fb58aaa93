"""automl(): the whole optimization of a network for a dataset, under one wall-clock budget.

Stages, each through the public API of its package; each is recorded in automl.json when it finishes, so a
re-run of the same command continues after the last finished stage (the search continues its study):

  screen    the classic optimizers, each at the lr its LR range test suggests, short runs of a reference
            network, ranked on validation -> the best two and their learning rates
  search    architecture + optimizer + lr + batch size jointly (TPE, ASHA stops weak trials early), under the
            size / latency constraints
  retrain   the best configuration on train+val (the test rows stay out: same seed and test fraction) -> final/;
            with test_fraction 0 there are no test rows and final/ trains on every row of the data
  compress  the compression ladder run on the search's best model, whose validation rows it never trained on,
            keeps the smallest setting within the accuracy drop; that setting is applied to final/
  export    model.onnx (and model.int8.onnx), CPU latency per runtime
  test      the test split: no decision before this reads it; search trials and the screen do not compute it
            (with test_fraction 0, nothing to score: the record says so, and the user scores it on their own file)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnopt.config import TABLE_KEYS, TrainSpec, column_names, table_settings
from nnopt.data import check_fractions, is_frame, load_data
from nnopt.errors import UsageError, describe, param, require_int, spell
from nnopt.fileio import LOCK_NAME, atomic_write_json, atomic_write_text, make_run_dir, slug
from nnopt.pipeline._budget import SCREEN_SHARE, Clock, Plan, parse_budget
from nnopt.pipeline._stages import (
    CNN_PROBE,
    CONSTRAINT_KEYS,
    PROBE_MODEL,
    compress_final,
    export_files,
    probe,
    retrain,
    screen,
    search,
    search_spec,
    test_final,
)
from nnopt.search import check_feasible, load_tune_spec

STAGES = ("screen", "search", "retrain", "compress", "export", "test")
SETTING_KEYS = ("data", "target", "task", *TABLE_KEYS, "budget_s", "objective", "space", "model", *CONSTRAINT_KEYS, "max_accuracy_drop",
                "seed", "test_fraction")
# a setting that runs made before it existed did not record: they ran with this value
SETTING_DEFAULTS = {"test_fraction": TrainSpec.test_fraction}
AUGMENT_CHOICES = ("none", "crop", "flip,crop")  # searched for images (train/_augment.py)
FRAME_FILE = "data.csv"  # a DataFrame given to automl, as the file its stages read
DEFAULT_DROP = 1.0  # points of accuracy the compression may cost on validation


@dataclass
class AutomlResult:
    run_dir: Path
    summary: dict[str, Any]
    stages: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # set when the run directory held a finished run and nothing ran


Progress = Callable[[str, str], None]


def default_out(data: Any) -> Path:
    """runs/automl-DATA: the run directory of `nnopt automl --data DATA` and of nnopt.automl(DATA) without out=,
    the same for the same data, so a re-run continues."""
    return Path("runs") / f"automl-{'dataframe' if is_frame(data) else slug(_source(data))}"


def automl(data: Any, *, out: str | Path | None = None, budget: Any = "10m", target: str | None = None,
           task: str | None = None, objective: str | None = None, space: Any = "auto", model: Any = None,
           max_params: int | None = None,
           max_flops: int | None = None, max_size_kb: float | None = None, max_latency_ms: float | None = None,
           max_accuracy_drop: float | None = None, workers: int = 1, storage: str | None = None,
           study: str | None = None, seed: int = 0, progress: Progress | None = None,
           report: Callable[[Path], Any] | None = None, drop: Any = None, categorical: Any = None,
           numeric: Any = None, sep: str | None = None, image_size: Any = None,
           strict: bool | None = None, test_fraction: float = TrainSpec.test_fraction) -> AutomlResult:
    """Optimize a network for `data` within `budget` (wall clock); write everything under `out` (default
    runs/automl-DATA).

    space: "auto", "mlp" or "cnn", the architectures nnopt searches; with `model`, the search space of the
    model template's parameters instead ({name: {type, low, high} or {choices}}, as nnopt tune takes it).
    model: your own network as a factory or class recipe with placeholders, e.g. "mynets:make_net:width={width}"
    or {"factory": "mynets:make_net", "args": {"width": "{width}"}}: searched, retrained, compressed and exported
    as nnopt's own are.
    report: called with each finished stage's run directory (api.automl passes build_report), so the time
    the reports take counts against the budget too.
    test_fraction: the rows held out for the test stage (default 0.15), the same in every stage; 0 when you
    keep your own test file: the final model then trains on every row (search/best keeps its validation rows).
    """
    budget_s = parse_budget(budget)
    test_fraction = _check_test_fraction(test_fraction)
    accuracy_drop = DEFAULT_DROP if max_accuracy_drop is None else _check_drop(max_accuracy_drop)
    require_int("workers", workers, 1)
    require_int("seed", seed, 0)
    space = _check_space(space, model)
    run_dir = default_out(data) if out is None else Path(out)
    constraints = {k: v for k, v in (("max_params", max_params), ("max_flops", max_flops),
                                     ("max_size_kb", max_size_kb), ("max_latency_ms", max_latency_ms)) if v is not None}
    if is_frame(data):  # the stages re-read their data by path, as best.yaml does: the frame becomes a file
        data = _frame_file(data, run_dir)
    source = _source(data)
    table = table_settings({"drop": column_names("drop", drop), "categorical": column_names("categorical", categorical),
                            "numeric": column_names("numeric", numeric), "sep": sep,
                            "image_size": image_size, "strict": strict})
    loaded = load_data(source, target=target, task=task, seed=seed, test_fraction=test_fraction, **table)
    chosen_space = space if model is not None or space != "auto" else _auto_space(loaded)
    settings = {"data": source, "target": target, "task": loaded.task, **{k: table.get(k) for k in TABLE_KEYS},
                "budget_s": budget_s,
                "objective": objective, "space": chosen_space, "model": model, **{k: constraints.get(k) for k in CONSTRAINT_KEYS},
                "max_accuracy_drop": accuracy_drop, "seed": seed, "test_fraction": test_fraction,
                "augment": _augmentations(loaded, space)}
    state = _load_state(run_dir, settings)
    finished = _finished(run_dir, state, budget_s)
    if finished is not None:  # its record stays as it is: a larger budget would describe a run that never happened
        return finished
    clock = Clock(budget_s, state.get("spent_s", 0.0))
    say = progress or (lambda stage, text: None)
    draw = report or (lambda path: None)

    # Checks that need no training come first, so a hopeless request writes nothing.
    probe_spec = load_tune_spec(search_spec(settings, ["adam"], {"adam": 1e-3}, 3), {})
    probe_spec.resolve_objectives(loaded.task)
    if constraints:
        check_feasible(probe_spec, loaded)
    plan = state.get("plan")
    if plan is None:
        plan = probe(loaded, seed, chosen_space if isinstance(chosen_space, str) else "mlp")
        needed = Plan(**plan).minimum_s(2)  # the screen runs at least two optimizers
        if budget_s < needed:
            timed = (CNN_PROBE, plan["searched_epoch_s"]) if plan.get("searched_epoch_s") else \
                (PROBE_MODEL, plan["epoch_s"])
            raise UsageError(f"a budget of {budget_s:g} s is too small for {loaded.name}: one epoch of {timed[0]} "
                             f"takes {timed[1]:.2f} s here and the stages need about {needed:.0f} s; "
                             f"give {param('budget', f'{int(needed * 1.2) + 1}s')} or more")
    make_run_dir(run_dir)
    state["plan"], state["settings"] = plan, settings
    _write_config(run_dir, settings, workers, storage)
    _save(run_dir, state, clock)
    timing = Plan(**plan)
    stages = state.setdefault("stages", {})
    hidden = loaded.without_test()

    if "screen" not in stages:
        stages["screen"] = _stage(run_dir, state, clock, "screen", say, lambda: screen(
            hidden, run_dir / "screen", timing, budget_s * SCREEN_SHARE, seed, draw))
    if "search" not in stages:
        stages["search"] = _stage(run_dir, state, clock, "search", say, lambda: search(
            settings, stages["screen"], run_dir / "search", timing, clock, workers, storage, study, seed,
            len(loaded.val), draw))
    if "retrain" not in stages:
        stages["retrain"] = _stage(run_dir, state, clock, "retrain", say, lambda: retrain(
            stages["search"], run_dir, draw))
    if "compress" not in stages:
        stages["compress"] = _stage(run_dir, state, clock, "compress", say, lambda: compress_final(
            settings, stages["search"], run_dir, timing, clock, accuracy_drop, draw))
    if "export" not in stages:
        stages["export"] = _stage(run_dir, state, clock, "export", say, lambda: export_files(run_dir, stages["compress"]))
    if "test" not in stages:
        stages["test"] = _stage(run_dir, state, clock, "test", say, lambda: test_final(
            run_dir, loaded, settings, stages, constraints))
    summary = _summary(run_dir, state, clock)
    atomic_write_json(run_dir / "summary.json", summary)
    return AutomlResult(run_dir=run_dir, summary=summary, stages=stages)


# ---- state, settings, summary ------------------------------------------------------------------

def _stage(run_dir: Path, state: dict[str, Any], clock: Clock, name: str, say: Progress,
           work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    number = STAGES.index(name) + 1
    say(name, f"[{number}/{len(STAGES)}] {name} · {clock.left():.0f} s of the budget left")
    start = time.monotonic()
    outcome = work()
    outcome["seconds"] = time.monotonic() - start
    state["stages"][name] = outcome
    _save(run_dir, state, clock)
    say(name, f"[{number}/{len(STAGES)}] {name} done in {outcome['seconds']:.1f} s: {outcome['summary']}")
    return outcome


def _save(run_dir: Path, state: dict[str, Any], clock: Clock) -> None:
    state["spent_s"] = clock.spent()
    atomic_write_json(run_dir / "automl.json", state)


def _load_state(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    path = run_dir / "automl.json"
    if not path.is_file():
        if run_dir.is_dir() and any(p.name not in (LOCK_NAME, FRAME_FILE) for p in run_dir.iterdir()):
            raise UsageError(f"{run_dir} exists and is not an automl run directory; give another {param('out')}")
        return {"version": 1}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is unreadable; give another {param('out')} to start over") from None
    old = state.get("settings") or {}
    changed = [k for k in SETTING_KEYS if k != "budget_s" and old.get(k, SETTING_DEFAULTS.get(k)) != settings.get(k)]
    if changed:
        raise UsageError(f"{run_dir} holds an automl run with other settings ({', '.join(changed)}); re-run it "
                         f"with the same settings to continue, or give another {param('out')}")
    return state


def _finished(run_dir: Path, state: dict[str, Any], budget_s: float) -> AutomlResult | None:
    """A run directory whose every stage is done, as its summary recorded it, with a note; None otherwise. An
    interrupted run continues under the budget given now; a finished one is not run again."""
    stages = state.get("stages") or {}
    summary_path = run_dir / "summary.json"
    if "test" not in stages or not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None  # the summary is rewritten from automl.json below
    done_under = float(summary.get("budget_s") or state["settings"]["budget_s"])
    note = f"{run_dir} finished under a {done_under:g} s budget; nothing to do"
    if budget_s != done_under:
        note += spell(f" (give another {param('out')} to run again with {budget_s:g} s)")
    return AutomlResult(run_dir=run_dir, summary=summary, stages=stages, note=note)


def _write_config(run_dir: Path, settings: dict[str, Any], workers: int, storage: str | None) -> None:
    from nnopt.search import mask_url

    atomic_write_json(run_dir / "config.json", {
        "command": "automl", **settings, "workers": workers, "storage": mask_url(storage) if storage else None,
        "stages": list(STAGES), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _summary(run_dir: Path, state: dict[str, Any], clock: Clock) -> dict[str, Any]:
    stages = state["stages"]
    test = stages["test"]
    return {"run_dir": str(run_dir), "budget_s": state["settings"]["budget_s"], "spent_s": round(clock.spent(), 1),
            "metric": test["metric"], "test_fraction": state["settings"].get("test_fraction", TrainSpec.test_fraction),
            "test": test["final_test"], "compressed_test": test["compressed_test"], "no_test": test.get("no_test"),
            "model": stages["retrain"]["model"], "params": test["params"],
            "fp32_bytes": stages["compress"]["fp32_bytes"], "compressed_bytes": test["compressed_bytes"],
            "compression": stages["compress"]["name"], "latency_ms": stages["export"]["latency_ms"],
            "constraints": test["constraints"],
            "stages": {k: round(v["seconds"], 1) for k, v in stages.items()},
            "files": ["model.onnx", "model.pt", "compressed.nnz", "best.yaml", "report.html"]}


def _check_space(space: Any, model: Any) -> Any:
    """The space as the search takes it: a name of nnopt's architectures, or, with a model template, a mapping of
    its parameters (a YAML or JSON file of one from the command line)."""
    if model is None:
        if space not in ("auto", "mlp", "cnn"):
            raise UsageError(f"{param('space')} must be auto, mlp or cnn (or, with {param('model')}, the mapping of "
                             f"its parameters); got {space!r}")
        return space
    if not isinstance(model, (str, dict)):
        raise UsageError(f"{param('model')} must be a factory or class recipe that best.yaml can record, e.g. "
                         f"'mynets:make_net:width={{width}}' or {{'factory': 'mynets:MyNet', 'args': {{...}}}}; got "
                         f"{describe(model)}")
    args = model.get("args") if isinstance(model, dict) and isinstance(model.get("args"), dict) else {}
    templated = "{" in model if isinstance(model, str) else any("{" in str(v) for v in args.values())
    if not templated and space in (None, "auto"):
        return {}  # a fixed model: only the optimizer, learning rate and batch size are searched
    if isinstance(space, (str, Path)) and str(space).endswith((".yaml", ".yml", ".json")) and not Path(space).is_file():
        raise UsageError(f"{param('space')} file not found: {space}")
    if isinstance(space, (str, Path)) and Path(space).is_file():
        import yaml

        try:
            space = yaml.safe_load(Path(space).read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UsageError(f"{param('space')} file {space} is not YAML: {' '.join(str(exc).split())[:160]}") \
                from None
    if not isinstance(space, dict) or not space:
        raise UsageError(f"with {param('model')}, {param('space')} maps each of the template's parameters to its "
                         "range, e.g. {'width': {'type': 'int', 'low': 16, 'high': 128}} (or a YAML file of it); "
                         f"got {space!r}")
    return space


def _augmentations(data: Any, space: Any) -> list[str] | None:
    """The augmentations the search tries on images of at least 16 x 16 pixels: none, shifts (crop) and shifts with
    mirroring (flip,crop); mirroring alone is not offered, as it is wrong for data whose orientation is its meaning
    (digits, text), which the search then finds with crop. None for other data, or when the user's space sets it."""
    shape = tuple(data.input_shape or ())
    if len(shape) != 3 or min(shape[1:]) < 16 or (isinstance(space, dict) and "augment" in space):
        return None
    return list(AUGMENT_CHOICES)


def _auto_space(data: Any) -> str:
    """cnn for images of at least 16 x 16 pixels and 1-D signals of at least 32 steps, else mlp."""
    shape = tuple(data.input_shape or ())
    spatial = shape[1:] if len(shape) >= 2 else ()
    if len(spatial) == 2 and min(spatial) >= 16:
        return "cnn"
    if len(spatial) == 1 and spatial[0] >= 32:
        return "cnn"
    return "mlp"


def _frame_file(frame: Any, run_dir: Path) -> Path:
    """A DataFrame written as run_dir/data.csv (missing cells as empty fields), the file every stage reads."""
    path = run_dir / FRAME_FILE
    if run_dir.is_dir() and not (run_dir / "automl.json").is_file() and any(
            p.name not in (LOCK_NAME, FRAME_FILE) for p in run_dir.iterdir()):
        raise UsageError(f"{run_dir} exists and is not an automl run directory; give another {param('out')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


def _source(data: Any) -> Any:
    if isinstance(data, (str, Path)):
        return str(data)
    raise UsageError(f"{param('data')} must be a dataset name, a file path or a pandas DataFrame (so best.yaml can "
                     f"reproduce the run); got {describe(data)}")


def _check_test_fraction(value: Any) -> float:
    """test_fraction as load_data checks it, and below 1 - the validation fraction every stage keeps."""
    check_fractions(0.0, value)
    limit = 1.0 - TrainSpec.val_fraction
    if not value < limit:
        raise UsageError(f"{param('test_fraction')} must be < {limit:g} (automl validates on "
                         f"{TrainSpec.val_fraction:g} of the rows); got {value}")
    return float(value)


def _check_drop(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise UsageError(f"{param('max_accuracy_drop')} must be a number of points >= 0; got {value!r}")
    return float(value)
