"""search reports, from run directories written by a real (small) architecture search."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import sys

import pytest

from nnopt.report import RUN_KINDS, build_report
from nnopt.report._load import load_run
from nnopt.report._search import front, front_figure, load_search, search_verdict
from nnopt.report._tune import REJECTED, pruning_savings
from nnopt.report._tune_page import _setup

IMG = '<img src="data:image/png;base64,'
MAX_PARAMS = 5000  # small enough that the mlp space's first candidates break it
INPUTS = ("config.json", "trials.json", "best/summary.json")  # what the report reads


def _search(path, **settings):
    from nnopt.search.nas import search

    search("digits", space="mlp", trials=6, epochs=2, seed=0, out=path, **settings)
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = _search(tmp_path_factory.mktemp("search") / "single", max_params=MAX_PARAMS)
    build_report(path)
    return path


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    path = _search(tmp_path_factory.mktemp("search") / "multi", objectives="val_accuracy,params")
    build_report(path)
    return path


def _trials(path) -> dict:
    return json.loads((path / "trials.json").read_text())


def _infeasible(path) -> list[dict]:
    return [t for t in _trials(path)["trials"] if t["state"] == "PRUNED" and "infeasible" in t["user_attrs"]]


def _models(path, name: str) -> list[str]:
    with open(path / name, newline="") as fh:
        return [row["model"] for row in csv.DictReader(fh)]


def _verdict(page: str) -> str:
    return page[page.index('<ul class="verdict">'):page.index("</ul>")]


def test_search_is_a_report_kind(single):
    assert "search" in RUN_KINDS and load_run(single).kind == "search"
    assert _trials(single)["kind"] == "search"


def test_single_objective_report(single):
    page = (single / "report.html").read_text()
    assert page.count(IMG) >= 2 and 'alt="architectures"' in page
    assert (single / "architectures.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page.lower()
    models = _models(single, "top.csv")
    assert f"Top {min(10, len(models))} architectures" in page
    table = page[page.index("architectures</h2>"):page.index("Kept architecture")]
    for rank, model in enumerate(models[:10], 1):
        assert f"<tr><td class=l>{rank}</td>" in table and f"<td class=l>{html.escape(model)}</td>" in table
    best = _trials(single)["best_trials"][0]
    assert f"<tr><td class=l>1</td><td class=l>{best}</td><td class=l>{html.escape(models[0])}</td>" in page
    verdict = _verdict(page)
    assert f"Best: {html.escape(models[0])} — " in verdict and " params, " in verdict and " ms; " in verdict
    assert "Which architecture scores best" in page and "nnopt train --config best.yaml" in page


def test_rejected_candidates_are_counted_not_pruned(single):
    infeasible = _infeasible(single)
    assert infeasible  # the fixture covers the case
    page = (single / "report.html").read_text()
    found = re.search(r"(\d+) trained, (\d+) rejected by max_params 5,000 before training", _verdict(page))
    trained = sum(t["state"] == "COMPLETE" for t in _trials(single)["trials"])
    assert found and (int(found[1]), int(found[2])) == (trained, len(infeasible))
    assert f"Rejected by constraints ({len(infeasible)})" in page
    assert "pruned early" not in page and f"{trained} complete, 0 pruned, 0 failed, {len(infeasible)} rejected" in page
    for trial in infeasible:
        assert html.escape(trial["user_attrs"]["infeasible"]) in page
    search = load_search(load_run(single))
    assert {c.number for c in search.rejected()} == {t["number"] for t in infeasible}
    assert all(c.trial.state == REJECTED and c.score is None for c in search.rejected())
    assert search.study.with_state("PRUNED") == [] and pruning_savings(search.study) is None
    assert search_verdict(search)[0] == html.unescape(re.search(r"<li>(.*?)</li>", page)[1])


def test_front_figure_data(single):
    search = load_search(load_run(single))
    figure = front_figure(search)
    assert [p.xscale for p in figure.panels] == ["log", "log"]
    by_params, by_latency = figure.panels
    trained = search.trained()
    for panel, cost in ((by_params, "params"), (by_latency, "latency_ms")):
        points, steps = panel.lines
        assert len(points.x) == len(trained) and points.style == "none"
        assert steps.drawstyle == "steps-post" and list(steps.x) == sorted(steps.x)
        best = front(trained, cost, search.maximize)
        assert list(steps.x) == [c.costs[cost] for c in best]
        for c in trained:  # nothing off the front is both cheaper and better than a front member
            if c not in best:
                assert any(b.costs[cost] <= c.costs[cost] and b.score >= c.score for b in best)
        (star,) = panel.points
        kept = search.candidate(_trials(single)["best_trials"][0])
        assert star.marker == "*" and star.x == kept.costs[cost] and star.y == pytest.approx(100 * kept.score)
    assert [(v.axis, v.at, v.label) for v in by_params.reflines] == [("x", MAX_PARAMS, "max_params 5,000")]
    assert by_latency.reflines == ()
    assert all(c.costs["params"] <= MAX_PARAMS for c in trained)


def test_multi_objective_report(multi):
    page = (multi / "report.html").read_text()
    assert 'alt="architectures"' in page and (multi / "pareto_front.png").is_file() and "http" not in page.lower()
    models = _models(multi, "pareto.csv")
    table = page[page.index(f"Pareto architectures ({len(models)})"):page.index("Kept architecture")]
    for model in models:
        assert f"<td class=l>{html.escape(model)}</td>" in table
    verdict = _verdict(page)
    assert not _infeasible(multi) and "none rejected (no constraints were set)" in verdict
    kept = load_search(load_run(multi)).candidate(_trials(multi)["best_trials"][0])
    assert f"Kept: {html.escape(kept.model)} — " in verdict
    assert f"{len(models)} of " in verdict and "form the Pareto front of val accuracy (maximize) and params" in verdict


@pytest.mark.parametrize("which", ["single", "multi"])
def test_rebuild_from_a_copy_is_byte_identical(which, request, tmp_path):
    path = request.getfixturevalue(which)
    copy = tmp_path / "copy"
    for name in INPUTS:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path / name, copy / name)
    build_report(copy)
    pngs = sorted(p.name for p in path.glob("*.png"))
    assert pngs == sorted(p.name for p in copy.glob("*.png")) and "architectures.png" in pngs
    for name in pngs + ["report.html"]:
        assert (copy / name).read_bytes() == (path / name).read_bytes(), name


def test_every_candidate_rejected(single, tmp_path):
    """No trained candidate: the report still builds and says so."""
    copy = tmp_path / "run"
    shutil.copytree(single, copy)
    raw = _trials(copy)
    for trial in raw["trials"]:
        trial.update(state="PRUNED", values=None, intermediate_values={})
        trial["user_attrs"].setdefault("infeasible", f"params {trial['user_attrs']['params']:,} > 1,000")
    raw["best_trials"], raw["constraints"] = [], {"max_params": 1000}
    (copy / "trials.json").write_text(json.dumps(raw))
    (copy / "best" / "summary.json").unlink()
    page = build_report(copy).read_text()
    n = len(raw["trials"])
    assert f"No candidate finished training (0 trained, {n} rejected by max_params 1,000 before training)" in page
    assert f"Rejected by constraints ({n})" in page
    # nothing trained, nothing to plot: no chart with empty axes, no section for it
    assert 'alt="architectures"' not in page and "Score against size and latency" not in page
    assert "http" not in page.lower()
    search = load_search(load_run(copy))
    assert search.kept is None and front_figure(search) is None
    assert f"0 complete, 0 pruned, 0 failed, {n} rejected" in dict(_setup(search.study, {}))["trials"]


def test_search_report_never_imports_torch(single, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(single, copy)
    code = ("import sys; import nnopt.report; print('torch' in sys.modules); "
            "nnopt.report.build_report(sys.argv[1]); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert out.stderr == ""
