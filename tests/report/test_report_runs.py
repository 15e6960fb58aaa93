"""train and lr-find reports, the errors of a wrong directory, and the no-torch rule."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

from nnopt.errors import UsageError
from nnopt.report import RUN_KINDS, build_report
from nnopt.report._plots import lr_find_figure, train_figure
from nnopt.report._render import PLOT_AREAS, SAMPLE_MARKS

CONFIG = {
    "data": "digits", "target": None, "task": None, "model": "mlp:128,64", "optimizer": "adam",
    "optimizer_params": {}, "lr": 0.001, "batch_size": 64, "epochs": 12, "schedule": "cosine", "seed": 0,
    "device": "cpu", "threads": 1, "out": "/somewhere/else",
    "data_info": {"name": "digits", "task": "classification", "n_train": 1258, "n_val": 269, "n_test": 270,
                  "n_features": 64, "n_classes": 10, "input_shape": [1, 8, 8], "source": "builtin"},
    "n_params": 17226, "flops_per_sample": 34048,
}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def make_train_dir(path, command: str | None = None, summary: bool = True, regression: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    config = dict(CONFIG, **({"command": command} if command else {}))
    metrics = ("mse", "mae", "r2") if regression else ("accuracy", "precision", "recall", "f1")
    if regression:
        config["data_info"] = dict(config["data_info"], name="diabetes", task="regression", n_classes=None)
    rows = []
    for epoch in range(1, 13):
        frac = 1 - math.exp(-epoch / 3)
        row = {"epoch": epoch, "train_loss": 2.3 * 0.05 ** frac}
        for m in metrics:
            row[f"train_{m}"] = 0.2 + 0.78 * frac
        row["val_loss"] = row["train_loss"] * 1.2
        for m in metrics:
            row[f"val_{m}"] = 0.2 + 0.75 * frac if epoch != 3 else None  # a null is drawn as a gap
        if not regression:
            row["val_roc_auc"] = 0.99
        row["lr"] = 0.001 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / 12))
        row["time_s"] = round(0.021 * epoch, 4)
        rows.append(row)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        last = rows[-1]
        split = {s: {k[len(s) + 1:]: v for k, v in last.items() if k.startswith(s + "_")} for s in ("train", "val")}
        split["train"]["loss"] = last["train_loss"]
        split["test"] = {k: v - 0.01 for k, v in split["val"].items()}
        (path / "summary.json").write_text(json.dumps({"metrics": split, "epochs": 12, "wall_s": 0.25,
                                                       "run_dir": str(path), "stopped_early": False}, indent=2))
    return path


def make_lr_find_dir(path):
    path.mkdir(parents=True, exist_ok=True)
    lrs = np.logspace(-7, 0, 100)
    x = np.log10(lrs) + 3
    losses = 2.3 - 1.4 / (1 + np.exp(-3 * x)) + np.where(x > 1.2, np.expm1(3 * (x - 1.2)), 0)
    losses += np.random.default_rng(1).normal(0, 0.03, lrs.size)
    smoothed = np.convolve(losses, np.ones(7) / 7, mode="full")[: lrs.size] * 7 / np.minimum(np.arange(1, 101), 7)
    (path / "config.json").write_text(json.dumps({"command": "lr-find", "data": "digits", "model": "mlp:128,64",
                                                  "optimizer": "adam", "batch_size": 64,
                                                  "created": "2026-11-22T12:00:00"}, indent=2))
    (path / "lr_find.json").write_text(json.dumps({"adam": {
        "lrs": lrs.tolist(), "losses": losses.tolist(), "smoothed": smoothed.tolist(), "suggested": 1e-3,
        "rule": "steepest descent of the smoothed loss"}}, indent=2))
    return path


@pytest.mark.parametrize("command", [None, "train"])
def test_train_report(tmp_path, command):
    path = make_train_dir(tmp_path / "run", command)
    report = build_report(path)
    assert report == path / "report.html"
    png = (path / "curves.png").read_bytes()
    assert png_size(png) == (1500, 420) and len(png) > 10_000  # loss, accuracy and the changing lr
    page = report.read_text()
    assert page.count('<img src="data:image/png;base64,') == 1 and "http" not in page.lower()
    assert "<td class=l>accuracy</td><td>96.6 %</td><td>93.6 %</td><td>92.6 %</td>" in page
    assert "17,226 parameters" in page and "cosine" in page and "1,258 train / 269 val / 270 test" in page
    assert "/somewhere/else" not in page and str(path) not in page  # the page does not depend on where it lies


def test_train_report_regression_without_summary(tmp_path):
    path = make_train_dir(tmp_path / "run", "train", summary=False, regression=True)
    page = build_report(path).read_text()
    assert "After 12 epochs in 0.25 s: validation R² 0.9363." in page and "summary.json is missing" in page
    assert len((path / "curves.png").read_bytes()) > 10_000


def test_lr_find_report(tmp_path):
    path = make_lr_find_dir(tmp_path / "run")
    page = build_report(path).read_text()
    png = (path / "lr_find.png").read_bytes()
    assert png_size(png) == (800, 500) and len(png) > 10_000
    assert "Suggested lr for adam: 1e-3." in page and "steepest descent" in page
    assert page.count('<img src="data:image/png;base64,') == 1 and "http" not in page.lower()


def test_lr_find_report_says_the_finders_note(tmp_path):
    path = make_lr_find_dir(tmp_path / "run")
    found = json.loads((path / "lr_find.json").read_text())
    found["adam"].update(descent=True, measured="fixed",
                         note="the batches' losses were too noisy to show a descent; measured each step on 1024 "
                              "fixed training rows")
    (path / "lr_find.json").write_text(json.dumps(found))
    page = build_report(path).read_text()
    assert ("Rule: steepest descent of the smoothed loss. The batches&#x27;" in page
            or "Rule: steepest descent of the smoothed loss. The batches'" in page)
    assert "measured each step on 1024 fixed training rows." in page


def test_a_panel_without_data_is_left_out_and_a_figure_without_any_is_not_drawn(tmp_path):
    path = make_train_dir(tmp_path / "run", "train", summary=False)
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:  # no validation split and no train metric: only the loss and the lr are left
        for key in [k for k in row if k.startswith("val_") or k == "train_accuracy"]:
            del row[key]
    figure = train_figure(CONFIG, rows, "accuracy")
    assert [panel.title for panel in figure.panels] == ["Loss", "Learning rate"]
    assert train_figure(CONFIG, [{"epoch": 1, "train_loss": None}], "accuracy") is None
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": None}) + "\n")
    page = build_report(path).read_text()
    assert "<img" not in page and "so there are no curves" in page and not (path / "curves.png").exists()
    assert lr_find_figure({"adam": {"lrs": [1e-3, 1e-2], "losses": [None, None]}}) is None


def test_each_png_records_its_plot_areas_and_the_marks_drawn_in_them(tmp_path):
    path = make_train_dir(tmp_path / "run", "train")
    build_report(path)
    image = Image.open(path / "curves.png")
    areas = json.loads(image.text[PLOT_AREAS])
    assert [a["box"][1] for a in areas] == [areas[0]["box"][1]] * 3  # loss, accuracy, lr side by side
    assert [a["box"][0] < b["box"][0] for a, b in zip(areas, areas[1:])] == [True, True]
    # every finite point of the lines: 2 x 12 losses; 2 x 12 accuracies less the null; 12 learning rates
    assert [a["marks"] for a in areas] == [24, 23, 12]
    for area in areas:
        x0, y0, x1, y1 = area["box"]
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height and area["face"] == "#ffffff"
        assert len(area["at"]) == SAMPLE_MARKS and all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in area["at"])


def test_png_bytes_are_deterministic(tmp_path):
    first = make_lr_find_dir(tmp_path / "a")
    build_report(first)
    once = (first / "lr_find.png").read_bytes()
    build_report(first)
    assert (first / "lr_find.png").read_bytes() == once
    assert b"Software" not in once and b"matplotlib" not in once


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UsageError, match="not an nnopt run directory \\(no config.json\\)"):
        build_report(tmp_path)
    with pytest.raises(UsageError, match="is not a directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"data": "digits"}))
    with pytest.raises(UsageError, match="not an nnopt run directory"):
        build_report(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"command": "nas"}))
    with pytest.raises(UsageError, match="reports exist for: train, compare, lr-find, tune"):
        build_report(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="config.json is not valid JSON"):
        build_report(tmp_path)


@pytest.mark.parametrize("command, needed", [("train", "metrics.jsonl"), ("compare", "results.json"),
                                             ("lr-find", "lr_find.json")])
def test_missing_file_is_named(tmp_path, command, needed):
    (tmp_path / "config.json").write_text(json.dumps({"command": command, "optimizer": "adam"}))
    with pytest.raises(UsageError, match=f"{needed} is missing"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert command in RUN_KINDS


def test_report_never_imports_torch(tmp_path):
    path = make_lr_find_dir(tmp_path / "run")
    code = ("import sys; import nnopt.report; print('torch' in sys.modules); "
            "nnopt.report.build_report(sys.argv[1]); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_page_text_and_images_never_spell_a_url():
    import base64
    import html
    import re

    from nnopt.report._html import esc, img

    raw = base64.b64decode("AAAAhttpAAAAHtTPAAAAhTTp" * 50)  # base64 that spells http in every case
    tag = img(raw, "x")
    assert "http" not in tag.lower()
    assert base64.b64decode(re.search(r'base64,([^"]+)"', tag).group(1)) == raw
    text = "data from https://example.org and HTTP://X"
    assert "http" not in esc(text).lower() and html.unescape(esc(text)) == text
