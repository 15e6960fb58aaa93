"""Reports: PNG plots and one self-contained report.html, built from a run directory's files alone.

    build_report("runs/cmp")  # -> runs/cmp/report.html (+ curves.png, lr_find.png)

The kind comes from config.json's "command" ("train", "compare", "lr-find", "tune", "search", "compress"; a tune
report is drawn from config.json and trials.json with Optuna's matplotlib plots, never from the study storage; a
search report is the tune report plus the architectures by score, params and latency; a compress report is drawn
from results.json: size, accuracy and latency per variant, never from the model files; an automl report is
drawn from automl.json and its stages' directories). Plot data is computed
first (`_plots.py`, plain dataclasses) and drawn second (`_render.py`); the output is byte-for-byte
deterministic for the same files. This package never imports torch.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nnopt.errors import keywords_checked
from nnopt.fileio import atomic_write, atomic_write_text
from nnopt.report._load import FILES, RUN_KINDS, load_run
from nnopt.report._verdict import verdict

__all__ = ["FILES", "RUN_KINDS", "build_report", "verdict"]


@keywords_checked
def build_report(run_dir: str | Path) -> Path:
    """Read the run directory's files, write its PNG plots and report.html (atomically); return the report path."""
    run = load_run(run_dir)
    if run.kind == "tune":  # Optuna loads only for a tune or search report
        from nnopt.report._tune_page import build_tune_pages as build_pages
    elif run.kind == "search":
        from nnopt.report._search_page import build_search_pages as build_pages
    elif run.kind == "compress":
        from nnopt.report._compress_page import build_compress_pages as build_pages
    elif run.kind == "automl":
        from nnopt.report._automl_page import build_automl_pages as build_pages
    else:
        from nnopt.report._pages import build_pages  # matplotlib loads only when a report is built
    with _collections_paused():
        images, page = build_pages(run)
    for name, png in images.items():
        atomic_write(run.path / name, lambda fh, png=png: fh.write(png))
    return atomic_write_text(run.path / "report.html", page)


@contextmanager
def _collections_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a report is drawn: matplotlib and a rebuilt study allocate
    hundreds of thousands of small objects, and the collections they set off scan every object of the process
    (torch's, Optuna's): 0.18 of 1.04 s for a tune report of 1000 trials. What they leave is collected after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
