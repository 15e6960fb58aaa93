"""The public entry points: each runs a command's engine, then draws its report when it has a run directory.

This is the one place where the layers meet (train / comparison write the files, report reads them),
so the CLI and Python users get the same run directory.
"""

from __future__ import annotations

from typing import Any

from nnopt import comparison as _comparison
from nnopt import distributed as _distributed
from nnopt import search as _search
from nnopt import train as _train
from nnopt.report import build_report
from nnopt.config import TrainSpec


def fit(model: Any, data: Any, **kwargs: Any) -> _train.FitResult:
    """nnopt.train.fit, plus report.html and plots in the run directory when `out` is given.

    nproc=N trains on N processes of this machine (strategy "ddp" or "hogwild"); see nnopt.distributed."""
    run_options = {k: kwargs.pop(k) for k in ("loss", "metrics", "callbacks", "resume") if k in kwargs}
    spec, module = _train.fit_spec(model, data, **kwargs)
    return run_spec(spec, module=module, **run_options)


def run_spec(spec: TrainSpec, **kwargs: Any) -> _train.FitResult:
    """Train from a resolved TrainSpec (what `nnopt train` does), then draw the report.

    Several processes (nproc, strategy, or a torchrun rank) go through nnopt.distributed; only rank 0 has a
    run directory, so only rank 0 draws the report."""
    if _distributed.wanted(spec):
        return _with_report(_distributed.run(spec, **kwargs))
    return _with_report(_train.run(spec, **kwargs))


def compare(data: Any, model: Any = "mlp:128,64", **kwargs: Any) -> _comparison.CompareResult:
    """nnopt.comparison.compare, plus report.html, curves.png (and lr_find.png) when `out` is given."""
    return _with_report(_comparison.compare(data, model, **kwargs))


def find_lr(model: Any, data: Any, **kwargs: Any) -> _train.LRFindResult:
    """The LR range test; with `out`, also lr_find.png and report.html."""
    result = _train.find_lr(model, data, **kwargs)
    if kwargs.get("out") is not None:
        build_report(kwargs["out"])
    return result


def tune(spec_or_function: Any, **kwargs: Any) -> _search.TuneResult:
    """nnopt.search.tune, plus the study's report (and the retrained best model's) when `out` is given."""
    return tune_report(_search.tune(spec_or_function, **kwargs))


def nas(data: Any, **kwargs: Any) -> _search.TuneResult:
    """nnopt.search.nas.search (architecture search), plus the report and the retrained best model's."""
    return tune_report(_search.nas.search(data, **kwargs))


def compress_model(source: Any, data: Any = None, **kwargs: Any) -> Any:
    """nnopt.compress.compress, plus report.html when `out` is given."""
    from nnopt import compress as _compress

    return _with_report(_compress.compress(source, data, **kwargs))


def automl(data: Any, **kwargs: Any) -> Any:
    """nnopt.pipeline.automl: screen, search, retrain, compress, export, test under one budget; every stage's
    report is drawn as the stage finishes (its time counts against the budget), the story's report at the end."""
    from nnopt import pipeline as _pipeline

    result = _pipeline.automl(data, report=build_report, **kwargs)
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
