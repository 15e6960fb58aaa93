"""compare reports from a synthetic run directory: plots, page, determinism."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import struct

import numpy as np
import pytest

from nnopt.report import build_report
from nnopt.report._plots import compare_figure, epoch_band, time_band

METRICS = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")
# optimizer -> (lr, lr_source, final loss, final accuracy, seconds per epoch, epochs at which seeds diverge)
PLAN = {
    "adam": (1e-3, "auto", 0.05, 0.972, 0.20, {}),
    "sgd": (0.1, "auto", 0.25, 0.931, 0.12, {}),
    "rmsprop": (0.1, "auto", 0.40, 0.880, 0.21, {1: 6, 2: 9}),
    "gd": (0.5, "default", 1.60, 0.410, 0.03, {}),
}
SEEDS = (0, 1, 2)
EPOCHS = 20
TARGET = {"name": "val_accuracy", "value": 0.9}


def _history(name: str, seed: int, rng: np.random.Generator) -> tuple[list[dict], str]:
    lr, _, final_loss, final_acc, per_epoch, diverge = PLAN[name]
    rows, t = [], 0.0
    stop = diverge.get(seed, EPOCHS + 1)
    for epoch in range(1, EPOCHS + 1):
        if epoch >= stop:
            return rows, "diverged"
        frac = 1 - math.exp(-epoch / 4)
        loss = 2.3 * (final_loss / 2.3) ** frac * float(np.exp(rng.normal(0, 0.03)))
        acc = min(0.999, 0.1 + (final_acc - 0.1) * frac + float(rng.normal(0, 0.004)))
        t += per_epoch * float(rng.uniform(0.9, 1.1))
        row = {"epoch": epoch, "train_loss": loss}
        for split, shift in (("train", 0.01), ("val", 0.0)):
            for m in METRICS[1:]:
                if split == "train" and m == "roc_auc":
                    continue
                row[f"{split}_{m}"] = min(1.0, acc + shift - (0.01 if m != "accuracy" else 0))
        row["val_loss"] = loss * 1.1
        row["val_roc_auc"] = min(1.0, acc + 0.02)
        row.update(lr=lr, time_s=round(t, 4))
        rows.append(row)
    return rows, "ok"


def _first(history: list[dict], key: str, value: float, field: str):
    return next((row[field] for row in history if row.get(key) is not None and row[key] >= value), None)


def make_compare_dir(path, target: dict | None = TARGET, lr_find: bool = True):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    runs, summaries = [], []
    for name, (lr, source, *_rest) in PLAN.items():
        mine = []
        for seed in SEEDS:
            history, status = _history(name, seed, rng)
            last = history[-1]
            final = {"train_loss": last["train_loss"]} if status == "ok" else {}
            if status == "ok":
                for split in ("val", "test"):
                    for m in METRICS:
                        final[f"{split}_{m}"] = last[f"val_{m}"] - (0.003 if split == "test" else 0)
            to_epoch = _first(history, "val_accuracy", target["value"], "epoch") if target else None
            to_time = _first(history, "val_accuracy", target["value"], "time_s") if target else None
            mine.append({"optimizer": name, "seed": seed, "lr": lr, "status": status,
                         "error": None if status == "ok" else f"diverged at epoch {len(history) + 1} step 3 "
                                                              "(loss=nan); try a lower --lr",
                         "final": final, "history": history, "epochs": len(history), "wall_s": last["time_s"],
                         "steps_per_s": 20 / PLAN[name][4], "epochs_to_target": to_epoch,
                         "time_to_target_s": to_time})
        runs += mine
        ok = [r for r in mine if r["status"] == "ok"]
        row = {"optimizer": name, "lr": lr, "lr_source": source, "seeds": len(SEEDS),
               "diverged": len(SEEDS) - len(ok)}
        for key in ["train_loss"] + [f"{s}_{m}" for s in ("val", "test") for m in METRICS]:
            values = [r["final"][key] for r in ok]
            row[f"{key}_mean"] = float(np.mean(values)) if values else None
            row[f"{key}_std"] = float(np.std(values)) if values else None
        reached = [r for r in ok if r["epochs_to_target"] is not None]
        row["epochs_to_target_mean"] = float(np.mean([r["epochs_to_target"] for r in reached])) if reached else None
        row["time_to_target_s_mean"] = float(np.mean([r["time_to_target_s"] for r in reached])) if reached else None
        row["target_reached"] = len(reached) if target else None
        row["steps_per_s_mean"] = float(np.mean([r["steps_per_s"] for r in mine]))
        row["wall_s_mean"] = float(np.mean([r["wall_s"] for r in mine]))
        summaries.append(row)
    summaries.sort(key=lambda r: -(r["test_accuracy_mean"] or -1))
    for rank, row in enumerate(summaries, 1):
        row["rank"] = rank
    config = {"command": "compare", "data": "digits", "model": "mlp:128,64", "optimizers": list(PLAN),
              "lr_mode": "auto", "lr_grid": None, "epochs": EPOCHS, "seeds": list(SEEDS), "batch_size": 64,
              "target_metric": target, "workers": 2, "task": "classification", "primary_metric": "accuracy",
              "data_info": {"name": "digits", "task": "classification", "n_train": 1258, "n_val": 269,
                            "n_test": 270, "n_features": 64, "n_classes": 10, "input_shape": [1, 8, 8],
                            "source": "builtin"},
              "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "nnopt": "0.1.0",
                              "platform": "Linux-6.1-x86_64", "cpu_count": 2, "threads_per_run": 1},
              "created": "2026-11-22T12:00:00"}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    results = {"primary_metric": "test_accuracy", "higher_is_better": True, "optimizers": summaries, "runs": runs}
    (path / "results.json").write_text(json.dumps(results, indent=2))
    if lr_find:
        finder = {}
        for name, (lr, *_rest) in PLAN.items():
            lrs = np.logspace(-6, 1, 60)
            x = np.log10(lrs) - math.log10(lr)  # 0 at the chosen lr; the loss bottoms out one decade later
            losses = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 0.5))) + np.where(x > 1, np.expm1(2 * (x - 1)), 0)
            losses = losses + rng.normal(0, 0.04, lrs.size)
            smoothed, avg = [], 0.0
            for i, value in enumerate(losses, 1):  # bias-corrected EMA, as the finder smooths
                avg = 0.9 * avg + 0.1 * value
                smoothed.append(avg / (1 - 0.9 ** i))
            smoothed = np.asarray(smoothed)
            finder[name] = {"lrs": lrs.tolist(), "losses": losses.tolist(), "smoothed": smoothed.tolist(),
                            "suggested": lr, "rule": "steepest descent of the smoothed loss, divided by 10"}
        (path / "lr_find.json").write_text(json.dumps(finder, indent=2))
    return path


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    path = make_compare_dir(tmp_path_factory.mktemp("cmp") / "run")
    build_report(path)
    return path


def test_writes_plots_and_page(compare_dir):
    for name, size in (("curves.png", (1200, 860)), ("lr_find.png", None)):
        data = (compare_dir / name).read_bytes()
        assert len(data) > 10_000
        if size:
            assert png_size(data) == size
    page = (compare_dir / "report.html").read_text()
    assert "http" not in page.lower()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "Which optimizer, learning rate and batch mode" in page


def test_embedded_images_are_the_written_pngs(compare_dir):
    page = (compare_dir / "report.html").read_text()
    embedded = [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert embedded == [(compare_dir / "curves.png").read_bytes(), (compare_dir / "lr_find.png").read_bytes()]


def test_ranked_table_rows(compare_dir):
    page = (compare_dir / "report.html").read_text()
    ranking = page.split("<h2>Ranking</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>|<tr class=\"bad\">(.*?)</tr>", ranking)
    names = [re.search(r"</span>(\w+)</td>", a or b).group(1) for a, b in rows[1:]]
    assert names == ["adam", "sgd", "rmsprop", "gd"]
    assert "<td class=l>1</td>" in ranking and "1e-3" in ranking and "LR finder" in ranking
    assert "2 of 3" in ranking  # rmsprop's diverged seeds


def test_report_is_deterministic_on_a_copy(compare_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(compare_dir, copy)
    for name in ("report.html", "curves.png", "lr_find.png"):
        (copy / name).unlink()
    build_report(copy)
    for name in ("report.html", "curves.png", "lr_find.png"):
        assert (copy / name).read_bytes() == (compare_dir / name).read_bytes(), name


def test_no_lr_find_no_target(tmp_path):
    path = make_compare_dir(tmp_path / "run", target=None, lr_find=False)
    page = build_report(path).read_text()
    assert not (path / "lr_find.png").exists()
    assert page.count("data:image/png;base64,") == 1
    assert "No target metric was set" in page and "time to target" not in page.split("<h2>Ranking")[1][:600]


def test_curve_data_bands_and_diverged_marks(tmp_path):
    path = make_compare_dir(tmp_path / "run", lr_find=False)
    config = json.loads((path / "config.json").read_text())
    results = json.loads((path / "results.json").read_text())
    fig = compare_figure(config, results, "accuracy")
    assert [p.xlabel for p in fig.panels] == ["epoch", "epoch", "wall-clock time (s)", "wall-clock time (s)"]
    loss = fig.panels[0]
    assert [line.label for line in loss.lines] == ["adam (lr 1e-3)", "sgd (lr 0.1)", "rmsprop (lr 0.1)",
                                                    "gd (lr 0.5)"]
    rmsprop = loss.lines[2]
    assert rmsprop.x[-1] == EPOCHS  # the surviving seed goes on
    assert sum(p.marker == "x" for p in loss.points) == 2  # one mark per diverged seed
    assert all(lo <= m <= hi for line in loss.lines for lo, m, hi in zip(line.lo, line.y, line.hi))
    assert max(fig.panels[1].lines[0].y) > 90  # accuracy in percent
    assert len({line.color for line in loss.lines}) == 4
    assert [line.color for line in fig.panels[3].lines] == [line.color for line in loss.lines]


def test_bands_over_seeds():
    a = [{"epoch": 1, "train_loss": 1.0, "time_s": 1.0}, {"epoch": 2, "train_loss": 0.5, "time_s": 2.0}]
    b = [{"epoch": 1, "train_loss": 3.0, "time_s": 2.0}]  # diverged after epoch 1
    x, mean, lo, hi = epoch_band([a, b], "train_loss")
    assert x == (1, 2) and mean == (2.0, 0.5) and lo == (1.0, 0.5) and hi == (3.0, 0.5)
    t, mean, lo, hi = time_band([a, b], "train_loss", points=3)
    assert t == (1.0, 1.5, 2.0)
    assert mean[0] == 1.0 and mean[1] == 0.75 and mean[2] == pytest.approx((0.5 + 3.0) / 2)
    assert (lo[2], hi[2]) == (0.5, 3.0)


def test_sparse_regression_results_render(tmp_path):
    """Nulls, no wall-clock times, an optimizer that diverged in its first epoch: the report still renders."""
    config = {"command": "compare", "data": "diabetes", "model": "linear", "optimizers": ["adam", "sgd"],
              "lr_mode": "grid", "lr_grid": [0.1, 0.01], "epochs": 3, "seeds": [0], "batch_size": "full",
              "target_metric": None, "task": "regression", "primary_metric": "r2"}
    history = [{"epoch": e, "train_loss": 1 / e, "val_r2": None if e == 2 else 0.2 * e} for e in (1, 2, 3)]
    results = {"primary_metric": "test_r2", "higher_is_better": True, "optimizers": [
        {"rank": 1, "optimizer": "adam", "lr": 0.01, "lr_source": "grid", "seeds": 1, "diverged": 0,
         "test_r2_mean": 0.55, "test_r2_std": 0.0, "val_r2_mean": 0.6, "train_loss_mean": 0.33},
        {"rank": 2, "optimizer": "sgd", "lr": 0.1, "lr_source": "grid", "seeds": 1, "diverged": 1}],
        "runs": [{"optimizer": "adam", "seed": 0, "status": "ok", "history": history},
                 {"optimizer": "sgd", "seed": 0, "status": "diverged", "error": "diverged at epoch 1", "history": []}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = build_report(tmp_path).read_text()
    assert "adam reached 0.55 test R²." in page and "sgd diverged at lr 0.1; try a lower lr." in page
    assert "grid: the best of a short run each (0.1, 0.01)" in page and "full batch" in page
    # no wall-clock times: the two time panels are left out rather than drawn empty, so one row of two panels
    figure = compare_figure(config, results, "r2")
    assert [p.xlabel for p in figure.panels] == ["epoch", "epoch"]
    assert png_size((tmp_path / "curves.png").read_bytes()) == (1200, 455)


def test_no_finished_epoch_draws_no_curves(tmp_path):
    config = {"command": "compare", "data": "iris", "model": "mlp:8", "optimizers": ["sgd"], "seeds": [0]}
    results = {"optimizers": [{"rank": 1, "optimizer": "sgd", "lr": 10.0, "seeds": 1, "diverged": 1}],
               "runs": [{"optimizer": "sgd", "seed": 0, "status": "diverged", "history": []}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert compare_figure(config, results, "accuracy") is None
    page = build_report(tmp_path).read_text()
    assert "<img" not in page and "so there are no curves" in page and not (tmp_path / "curves.png").exists()


def test_the_finders_table_gives_its_note_where_the_loss_never_fell(tmp_path):
    path = make_compare_dir(tmp_path / "cmp")
    finder = json.loads((path / "lr_find.json").read_text())
    name = next(iter(finder))
    finder[name].update(descent=False, note=f"the loss never fell over the sweep; suggesting {name}'s default lr")
    (path / "lr_find.json").write_text(json.dumps(finder))
    page = build_report(path).read_text()
    row = next(r for r in page.split("<tr>") if r.startswith(f"<td class=l>{name}</td>") and "never fell" in r)
    assert "steepest descent" not in row
    assert page.count("steepest descent of the smoothed loss, divided by 10") == len(finder) - 1
