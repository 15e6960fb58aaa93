"""The public entry points: each runs a command's engine, then draws its report when it has a run directory.

This is the one place where the layers meet (train / comparison write the files, report reads them),
so the CLI and Python users get the same run directory. Each entry point holds its run directory's lock
(fileio.lock_run_dir) while it writes, so a second command on the same directory stops with a UsageError.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from torch import nn

from nnopt import comparison as _comparison
from nnopt import distributed as _distributed
from nnopt import search as _search
from nnopt import train as _train
from nnopt.config import TrainSpec
from nnopt.errors import UsageError, check_keywords, describe, keyword_names, param, require_model_path, \
    require_path
from nnopt.fileio import lock_run_dir
from nnopt.report import build_report


def fit(model: Any, data: Any, **kwargs: Any) -> _train.FitResult:
    """nnopt.train.fit, plus report.html and plots in the run directory when `out` is given.

    nproc=N trains on N processes of this machine (strategy "ddp" or "hogwild"); see nnopt.distributed."""
    run_options = {k: kwargs.pop(k) for k in ("loss", "metrics", "callbacks", "resume") if k in kwargs}
    kwargs.setdefault("progress", "auto")  # a bar on a terminal; the library's own trainings default to none
    spec, module = _train.fit_spec(model, data, **kwargs)
    return run_spec(spec, module=module, **run_options)


def run_spec(spec: TrainSpec, **kwargs: Any) -> _train.FitResult:
    """Train from a resolved TrainSpec (what `nnopt train` does), then draw the report.

    Several processes (nproc, strategy, or a torchrun rank) go through nnopt.distributed; only rank 0 has a
    run directory, so only rank 0 locks it and draws the report."""
    spec.validate()
    rank = _distributed.env_rank() if _distributed.env_world_size() > 1 else 0
    with _locked(spec.out if rank == 0 else None):
        if _distributed.wanted(spec):
            return _with_report(_distributed.run(spec, **kwargs))
        return _with_report(_train.run(spec, **kwargs))


def compare(data: Any, model: Any = "mlp:128,64", **kwargs: Any) -> _comparison.CompareResult:
    """nnopt.comparison.compare, plus report.html, curves.png (and lr_find.png) when `out` is given."""
    with _locked(kwargs.get("out")):
        return _with_report(_comparison.compare(data, model, **kwargs))


def find_lr(model: Any, data: Any, **kwargs: Any) -> _train.LRFindResult:
    """The LR range test; with `out`, also lr_find.png and report.html."""
    own = keyword_names(_train.find_lr, skip=("model", "data"))
    shared = [f.name for f in fields(TrainSpec) if f.name not in ("data", "model", *own)]
    check_keywords("find_lr", kwargs, [*own, *shared])
    with _locked(kwargs.get("out")):
        result = _train.find_lr(model, data, **kwargs)
        if kwargs.get("out") is not None:
            build_report(kwargs["out"])
        return result


def tune(spec_or_function: Any, *, report: bool | str = "auto", **kwargs: Any) -> _search.TuneResult:
    """nnopt.search.tune, plus the study's report (and the retrained best model's) when `out` is given.

    report="auto" (the default) draws report.html unless the study was many trials of milliseconds, for which
    the report would cost more than a tenth of the study's time and more than half a second (see
    report_worth_drawing); a warning then says so and how to draw it. report=True always draws it, report=False
    never (`nnopt report DIR` draws it from the files at any time). `nnopt tune` always draws it.
    The lock is on `out`: the study itself may be shared through storage= by processes with other run
    directories."""
    if not (callable(spec_or_function) or isinstance(spec_or_function, (str, os.PathLike, Mapping))):
        raise UsageError(f"{param('spec_or_function')} must be a tune spec (a YAML file or a mapping) or a function "
                         f"of the params; got {describe(spec_or_function)}")
    if not (isinstance(report, bool) or report == "auto"):
        raise UsageError(f"{param('report')} must be True, False or 'auto'; got {describe(report)}")
    with _locked(kwargs.get("out")):
        start = time.perf_counter()
        result = _search.tune(spec_or_function, **kwargs)
        if report == "auto" and result.run_dir is not None:
            trials, seconds = len(result.frozen_trials), time.perf_counter() - start
            report = report_worth_drawing(trials, seconds)
            if not report:
                warnings.warn(f"report.html not drawn: {trials} trials took {seconds:.1f} s, and the report would "
                              f"add about {report_seconds(trials):.1f} s; draw it with nnopt report "
                              f"{result.run_dir}, or pass report=True", stacklevel=2)
        return tune_report(result) if report else result


def report_seconds(trials: int) -> float:
    """What drawing a study's report.html costs, in seconds: a fixed part (four plots, the page) and a part
    per trial (fANOVA, the plots' points, the table), measured on a 2-core machine with a warm process
    (benchmarks/RESULTS.md, "Overhead against plain Optuna"): 0.40 s at 20 trials, 0.71 s at 1000, 1.07 s at
    3000."""
    return 0.4 + 0.00025 * trials


def report_worth_drawing(trials: int, study_seconds: float) -> bool:
    """Whether tune's report="auto" draws report.html: yes unless it would cost more than half a second and
    more than a tenth of the study's own time, i.e. a study of hundreds of millisecond trials, where the report
    would set the call's time (a black-box function's quick study; a study that trains networks always gets it)."""
    cost = report_seconds(trials)
    return cost <= 0.5 or cost <= 0.1 * study_seconds


def nas(data: Any, **kwargs: Any) -> _search.TuneResult:
    """nnopt.search.nas.search (architecture search), plus the report and the retrained best model's."""
    with _locked(kwargs.get("out")):
        return tune_report(_search.nas.search(data, **kwargs))


def compress_model(model: Any, data: Any = None, **kwargs: Any) -> Any:
    """nnopt.compress.compress of `model` (a run directory, model file, nn.Module or the FitResult nnopt.fit
    returned), plus report.html when `out` is given.

    An nn.Module is compressed in this process on `data` as given (no scaling; batches in the data's own sample
    shape), which is then required; a FitResult on the data it was trained on, with its preprocessing. Its class
    need not be importable (defined in __main__ or a notebook works): the compressed file then carries the
    network's torch.export graph and serves evaluate / predict / export, and only compressing that file again
    needs the class (docs/models.md)."""
    from nnopt import compress as _compress

    check_keywords("compress_model", kwargs, keyword_names(_compress.compress, skip=("source", "data")))
    if isinstance(model, _train.FitResult):
        source = _fit_in_hand(model)
        data = model.data if data is None else data
    elif isinstance(model, nn.Module):
        if data is None:
            raise UsageError(f"an nn.Module has no training record to say which data it learned from: give "
                             f"{param('data')}, the labelled rows to fine-tune and score it on")
        source, data = _module_in_hand(model, data, kwargs)  # the data loaded once, for its shape and for compress
    else:
        require_model_path("model", model)
        source = model
    with _locked(kwargs.get("out")):
        return _with_report(_compress.compress(source, data, **kwargs))


def _module_in_hand(model: nn.Module, data: Any, options: dict[str, Any]) -> tuple[Any, Any]:
    """A module in hand as compress takes it (what fit would record for it, its recipe when one is found) and
    `data` loaded unscaled, split as `options` say."""
    from nnopt.compress._compress import ModelInHand
    from nnopt.data import load_data

    split = {k: options[k] for k in ("target", "seed", "drop", "categorical", "numeric", "sep")
             if options.get(k) is not None}
    loaded = load_data(data, scale="none", **split)
    shape = loaded.sample_shape or loaded.input_shape
    flat = not shape or tuple(shape) == (loaded.n_features,)
    sample = (loaded.n_features,) if flat else tuple(shape)
    out = _train.check_forward(model, sample, loaded)
    loaded = _train.two_logit_binary(loaded, out)  # two classes, two logits: cross-entropy when fine-tuned
    _train.check_output(out, sample, loaded)  # before any fine-tuning
    loaded = _train.recorded_shape(loaded, sample)  # (n, C, L) signals: (C, L), the shape the module takes
    meta = {"model_spec": None, "in_features": loaded.n_features, "n_outputs": loaded.n_outputs,
            "input_shape": list(loaded.input_shape) if loaded.input_shape else None,
            "sample_shape": None if flat else list(shape), "task": loaded.task, "class_names": loaded.class_names,
            "preprocessing": loaded.preprocessing}
    _record(model, meta)
    return ModelInHand(model, meta, {"scale": "none", **split}, f"<{type(model).__name__}>"), loaded


def _fit_in_hand(result: _train.FitResult) -> Any:
    """The network of a FitResult as compress takes it, with its data's preprocessing and splits."""
    from nnopt.compress._compress import ModelInHand
    from nnopt.models import ArchSpec

    spec = result.config.get("model_spec")
    meta = _train.model_meta(result.model, ArchSpec.parse(spec) if spec else None, result.data)
    if not spec:
        _record(result.model, meta)
    label = str(result.run_dir) if result.run_dir else f"<FitResult {result.config.get('model')}>"
    return ModelInHand(result.model, meta, {}, label)


def _record(model: nn.Module, meta: dict[str, Any]) -> None:
    """meta's model_spec (the instance's recipe, when one rebuilds it), module_class and recipe_missing."""
    from nnopt.models import class_path, module_recipe

    cpu = model if _on_cpu(model) else copy.deepcopy(model).cpu()
    spec, missing = module_recipe(cpu, in_features=meta["in_features"], n_outputs=meta["n_outputs"],
                                  sample_shape=tuple(meta.get("sample_shape") or (meta["in_features"],)),
                                  task=meta.get("task"))
    meta.update(model_spec=spec, module_class=class_path(model), recipe_missing=missing)


def _on_cpu(model: nn.Module) -> bool:
    return all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])


def automl(data: Any, **kwargs: Any) -> Any:
    """nnopt.pipeline.automl: screen, search, retrain, compress, export, test under one budget; every stage's
    report is drawn as the stage finishes (its time counts against the budget), the story's report at the end.

    out: the run directory, by default runs/automl-DATA (as `nnopt automl`), so a re-run continues."""
    from nnopt import pipeline as _pipeline

    check_keywords("automl", kwargs, keyword_names(_pipeline.automl, skip=("data", "report")))
    out = kwargs.pop("out", None)
    out = _pipeline.default_out(data) if out is None else out
    with _locked(out):
        result = _pipeline.automl(data, out=out, report=build_report, **kwargs)
        build_report(result.run_dir)
        return result


def tune_report(result: _search.TuneResult) -> _search.TuneResult:
    if result.run_dir is not None:
        build_report(result.run_dir)
        if (result.run_dir / "best" / "config.json").is_file():
            build_report(result.run_dir / "best")
    return result


def _with_report(result: Any) -> Any:
    if result.run_dir is not None:
        build_report(result.run_dir)
    return result


@contextlib.contextmanager
def _locked(out: Any) -> Iterator[None]:
    """The run directory `out` locked for this process (nothing when there is none)."""
    if out is None:
        yield
        return
    require_path("out", out, "a directory path")
    with lock_run_dir(Path(out)):
        yield
