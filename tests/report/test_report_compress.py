"""compress reports, from run directories written by real (small) nnopt compress runs."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import pytest

from nnopt.errors import UsageError
from nnopt.report import RUN_KINDS, build_report
from nnopt.report._compress import ORIGINAL, floor, load_compression, score_split, size_figure, sparsity_figure
from nnopt.report._compress_verdict import compress_verdict
from nnopt.report._load import load_run

IMG = '<img src="data:image/png;base64,'
INPUTS = ("config.json", "results.json")  # all the report reads
KEPT = "✓ kept"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from nnopt.train import fit

    path = tmp_path_factory.mktemp("compress") / "train"
    fit("mlp:128,64", "digits", epochs=10, out=path)
    return path


def _compress(source, path, **settings):
    from nnopt.compress import compress

    compress(source, out=path, **settings)
    build_report(path)
    return path


@pytest.fixture(scope="module")
def pruned(source):
    """(a) global 90 % gradual pruning + int8 + ONNX export."""
    return _compress(source, source.parent / "pruned", prune=0.9, prune_method="global", schedule="gradual",
                     quantize="int8", export="onnx", finetune_epochs=1)


@pytest.fixture(scope="module")
def ladder(source):
    """(b) the ladder: several variants tried, the first within the allowed drop kept."""
    return _compress(source, source.parent / "ladder", max_accuracy_drop=1.0, finetune_epochs=1)


@pytest.fixture(scope="module")
def int4(source):
    """(c) int4 weights, no export: torch latency rows only."""
    return _compress(source, source.parent / "int4", quantize="int4")


RUNS = ("pruned", "ladder", "int4")


def _results(path) -> dict:
    return json.loads((path / "results.json").read_text())


def _page(path) -> str:
    return (path / "report.html").read_text()


def _section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    return page[start:page.index("</section>", start)]


def _verdict(page: str) -> list[str]:
    block = page[page.index('<ul class="verdict">'):page.index("</ul>")]
    return [html.unescape(s) for s in re.findall(r"<li>(.*?)</li>", block)]


def test_compress_is_a_report_kind(pruned):
    assert "compress" in RUN_KINDS and load_run(pruned).kind == "compress"


def test_settings_name_the_fine_tuning_lr_schedule_only_when_it_drops(pruned):
    config = json.loads((pruned / "config.json").read_text())
    assert config["settings"]["lr_schedule"] == "lr / 10 for the last third"
    page = _page(pruned)
    assert "1 epochs, adam" in page or "1 epoch, adam" in page
    assert "last third" not in page  # one epoch: no drop


@pytest.mark.parametrize("which", RUNS)
def test_every_variant_and_the_kept_one(which, request):
    path = request.getfixturevalue(which)
    results, page = _results(path), _page(path)
    table = _section(page, "Compression")
    for variant in results["variants"]:
        assert f"<td class=l>{html.escape(variant['name'])}</td>" in table
    assert table.count(KEPT) == 1
    kept_row = next(row for row in table.split("<tr") if KEPT in row)
    assert html.escape(results["chosen"]) in kept_row and 'class="kept"' in kept_row
    assert "http" not in page.lower()
    assert IMG in page and 'alt="accuracy against size"' in page
    assert (path / "accuracy_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "How much smaller and faster" in page and "file size on disk" in page


def test_ladder_lists_every_rung(ladder):
    results = _results(ladder)
    tried = [v for v in results["variants"] if v["name"] != ORIGINAL]
    assert len(tried) >= 2  # the fixture covers a real ladder
    assert tried[-1]["name"] == results["chosen"] and tried[-1]["val_drop_pts"] <= 1.0
    sentences = _verdict(_page(ladder))
    rung = next(s for s in sentences if s.startswith("With a drop of at most 1 pt val accuracy"))
    assert f"{len(tried)} settings were tried" in rung
    for variant in tried[:-1]:
        assert variant["name"] in rung
    assert "Dashed: the original&#x27;s score minus the allowed drop (1 pt val accuracy)" in _page(ladder)


def test_verdict_headline(pruned):
    results = _results(pruned)
    kept = next(v for v in results["variants"] if v.get("chosen"))
    first = _verdict(_page(pruned))[0]
    assert first.startswith(f"{kept['name']}: ")
    original = results["variants"][0]
    assert f"{kept['ratio']:.1f}× smaller ({original['file_bytes']:,} → {kept['file_bytes']:,} bytes)" in first
    assert f"{100 * kept['val']:.1f} % val accuracy (" in first and " pts)" in first
    assert f"{100 * kept['test']:.1f} % test accuracy (" in first
    assert "ONNX Runtime int8 runs" in first and "torch fp32 at batch 256" in first
    run = load_run(pruned)
    assert compress_verdict(load_compression(run), run.config) == _verdict(_page(pruned))


def test_latency_rows_with_and_without_export(pruned, int4):
    table = _section(_page(pruned), "Latency")
    latency = _results(pruned)["latency"]
    assert table.count("<tr>") - 1 == len(latency)  # one header row
    assert "ONNX Runtime" in table and "model.int8.onnx" in table and "compressed int8 (ORT QDQ)" in table
    assert "computes in int8" in _page(pruned)
    table = _section(_page(int4), "Latency")
    rows = _results(int4)["latency"]
    assert {r["runtime"] for r in rows} == {"torch"} and table.count("<tr>") - 1 == len(rows)
    assert "ONNX Runtime</td>" not in table and ".onnx" not in table
    assert "Latency was measured in torch only" in " ".join(_verdict(_page(int4)))
    assert "torch evaluates a quantized variant in fp32, on weights that take exactly the quantized values" \
        in _page(int4)


def test_size_figure_data(ladder, pruned):
    c = load_compression(load_run(ladder))
    panel = size_figure(c).panels[0]
    assert panel.xscale == "log" and len(panel.lines) == len(c.compressed)
    assert [line.x[0] for line in panel.lines] == [v["file_bytes"] for v in c.compressed]
    assert [line.y[0] for line in panel.lines] == pytest.approx([100 * v["val"] for v in c.compressed])
    markers = {p.marker: p for p in panel.points}
    assert markers["s"].x == c.original["file_bytes"] and markers["*"].x == c.kept["file_bytes"]
    (limit,) = panel.reflines
    assert limit.axis == "y" and limit.at == pytest.approx(100 * c.original["val"] - 1.0) == pytest.approx(100 * floor(c))
    assert size_figure(load_compression(load_run(pruned))).panels[0].reflines == ()


def test_without_validation_rows_the_size_figure_shows_test_scores(tmp_path):
    """automl's final model trains on train+val: its variants have no val score. The chart then plots the test
    score (and no max-drop floor, which is a validation score) instead of drawing empty axes."""
    from nnopt.train import fit

    source = tmp_path / "train"
    fit("mlp:16", "iris", epochs=5, val_fraction=0.0, out=source)
    path = _compress(source, tmp_path / "c", quantize="int8")
    c = load_compression(load_run(path))
    assert all(v.get("val") is None and v.get("test") is not None for v in c.variants)
    assert score_split(c) == "test" and size_figure(c, "val") is None
    (panel,) = size_figure(c).panels
    assert panel.ylabel == "test accuracy (%)" and panel.reflines == ()
    assert [line.y[0] for line in panel.lines] == pytest.approx([100 * v["test"] for v in c.compressed])
    section = _section(_page(path), "Accuracy against size")
    assert 'alt="accuracy against size"' in section and "the test split is shown" in section


def test_sparsity_table_and_chart(pruned):
    results = _results(pruned)
    table = _section(_page(pruned), "Per-layer sparsity of the kept model")
    for row in results["sparsity"]:
        assert f"<td class=l>{html.escape(row['layer'])}</td>" in table
        assert f"{100 * row['sparsity']:.1f} %" in table
    assert 'alt="per-layer sparsity"' in table
    panel = sparsity_figure(load_compression(load_run(pruned))).panels[0]
    assert panel.categories == tuple(r["layer"] for r in results["sparsity"] if r["layer"] != "total")
    assert panel.reflines[0].axis == "y"
    assert panel.reflines[0].at == pytest.approx(100 * results["sparsity"][-1]["sparsity"])


def test_gradual_history_plot(pruned, int4):
    assert (pruned / "gradual_pruning.png").is_file() and 'alt="gradual pruning"' in _page(pruned)
    assert not (int4 / "gradual_pruning.png").exists() and "Gradual pruning" not in _page(int4)


@pytest.mark.parametrize("which", RUNS)
def test_rebuild_from_a_copy_is_byte_identical(which, request, tmp_path):
    path = request.getfixturevalue(which)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in INPUTS:
        shutil.copy(path / name, copy / name)
    build_report(copy)
    pngs = sorted(p.name for p in path.glob("*.png"))
    assert pngs == sorted(p.name for p in copy.glob("*.png")) and "accuracy_vs_size.png" in pngs
    for name in pngs + ["report.html"]:
        assert (copy / name).read_bytes() == (path / name).read_bytes(), name


def test_compress_report_never_imports_torch(pruned, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in INPUTS:
        shutil.copy(pruned / name, copy / name)
    code = ("import sys; import nnopt.report; print('torch' in sys.modules); "
            "nnopt.report.build_report(sys.argv[1]); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert out.stderr == ""


def test_nnopt_report_command(int4):
    (int4 / "report.html").unlink()
    out = subprocess.run([sys.executable, "-m", "nnopt", "report", str(int4)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (int4 / "report.html").is_file()


def test_missing_or_empty_results(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"command": "compress"}))
    with pytest.raises(UsageError, match="results.json is missing"):
        build_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"metric": "accuracy", "variants": []}))
    with pytest.raises(UsageError, match="holds no variant"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
