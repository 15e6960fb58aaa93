"""Image folders (ImageFolder layout) through load_data, train, predict, evaluate and automl: PNG and JPEG, RGB and
grey, uneven sizes, a corrupt file, given train/val/test splits."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from imagegen import SHAPES, shape_image, write_folder  # noqa: E402

from nnopt.data import load_data  # noqa: E402
from nnopt.errors import DataError, UsageError  # noqa: E402

MODEL = "cnn"
EPOCHS = 15
PER_CLASS = 80


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """80 images per shape, 30 % grey and 30 % JPEG, 16x16 or 20x14 pixels, and one corrupt x.png."""
    root = tmp_path_factory.mktemp("images") / "shapes"
    write_folder(root, PER_CLASS, seed=0, sizes=((16, 16), (20, 14)), grey=0.3, jpeg=0.3)
    (root / "circle" / "x.png").write_bytes(np.random.default_rng(0).bytes(300))
    return root


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    from nnopt.cli import main

    out = tmp_path_factory.mktemp("runs") / "shapes"
    assert main(["train", "--data", str(folder), "--model", MODEL, "--epochs", str(EPOCHS), "--image-size", "16",
                 "--out", str(out), "--json"]) == 0
    return out


def test_train_reaches_accuracy_and_records_the_folder(trained, folder):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["metrics"]["test"]["accuracy"] >= 0.8
    config = json.loads((trained / "config.json").read_text())
    assert config["image_size"] == "16x16" and config["strict"] is False
    images = config["data_info"]["images"]
    assert images["size"] == [16, 16] and images["channels"] == 3  # grey images join an RGB set as RGB
    assert images["files"] == 3 * PER_CLASS + 1 and images["skipped"] == 1
    assert images["skipped_files"][0].startswith(str(folder / "circle" / "x.png"))
    assert config["data_info"]["input_shape"] == [3, 16, 16]
    info = config["data_info"]
    assert info["n_train"] + info["n_val"] + info["n_test"] == 3 * PER_CLASS


def test_predict_writes_one_row_per_file_with_class_names(trained, folder, tmp_path, run_cli):
    out = tmp_path / "predictions.csv"
    code, stdout, _ = run_cli("predict", trained, "--data", folder, "--out", out)
    assert code == 0 and f"skipped 1 of {3 * PER_CLASS + 1} images" in stdout and "x.png" in stdout
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "prediction", *(f"proba_{name}" for name in SHAPES)]
    assert len(rows) == 3 * PER_CLASS and {Path(row["path"]).parent.name for row in rows} == set(SHAPES)
    assert {row["prediction"] for row in rows} <= set(SHAPES)
    right = sum(Path(row["path"]).parent.name == row["prediction"] for row in rows)
    assert right / len(rows) >= 0.8
    assert all(math.isclose(sum(float(row[f"proba_{n}"]) for n in SHAPES), 1.0, abs_tol=1e-4) for row in rows)
    files = [sorted((folder / "cross").glob("*.jpg"))[0], sorted((folder / "square").glob("*.png"))[0]]
    code, _, _ = run_cli("predict", trained, "--data", *files, "--out", out)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert code == 0 and [row["path"] for row in rows] == [str(f) for f in files]


def test_evaluate_on_the_folder_reproduces_the_test_split(trained, folder):
    from nnopt.inference import evaluate

    summary = json.loads((trained / "summary.json").read_text())
    result = evaluate(trained, split="test")  # the folder training read, split again with the recorded settings
    assert result.rows == json.loads((trained / "config.json").read_text())["data_info"]["n_test"]
    for name in ("loss", "accuracy", "f1"):
        assert math.isclose(result.metrics[name], summary["metrics"]["test"][name], rel_tol=1e-6)
    assert result.class_names == list(SHAPES) and len(result.skipped) == 1


def test_evaluate_split_counts_the_corrupt_file_against_every_file_read(trained, folder, tmp_path, run_cli):
    code, stdout, _ = run_cli("evaluate", trained, "--data", folder, "--split", "test", "--out", tmp_path / "ev")
    n_test = json.loads((trained / "config.json").read_text())["data_info"]["n_test"]
    assert code == 0 and f"{n_test} test rows of" in stdout
    assert f"skipped 1 of {3 * PER_CLASS + 1} images" in stdout  # as training counted it: the file is in no split


def test_a_folder_given_to_a_model_not_trained_on_images_says_so(folder, tmp_path, run_cli):
    import torch
    from torch import nn

    import nnopt

    run = tmp_path / "arrays"
    X = np.random.default_rng(0).normal(size=(60, 3, 16, 16)).astype(np.float32)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    nnopt.fit(net, (X, np.arange(60) % 3), epochs=1, out=run)
    message = "is a folder of images, and the model records no image size to decode them to (it was not trained on " \
              "an image folder); give the rows in the shape the model takes as arrays: an .npz file (x, y)"
    for command in ("evaluate", "predict"):
        code, _, err = run_cli(command, run, "--data", folder, "--out", tmp_path / f"{command}.out")
        assert code == 2 and err.count("\n") == 1 and f"error: {folder} {message}" in err
    with pytest.raises(DataError, match=r"^these are image files, and the model records no image size"):
        nnopt.predict(net, [sorted((folder / "cross").glob("*.png"))[0]])
    with pytest.raises(DataError, match="is a folder of images"):
        nnopt.evaluate(net, folder)
    with pytest.raises(UsageError, match=r"^data= holds 5 values, not rows of features \(array shape \(5,\)\); "
                                         r"give rows.*or give sample_shape="):
        nnopt.predict(net, torch.zeros(5))


def test_strict_stops_at_the_corrupt_file(folder, tmp_path, run_cli):
    code, _, err = run_cli("train", "--data", folder, "--strict", "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2
    line = err.strip()
    assert "\n" not in line and str(folder / "circle" / "x.png") in line and "--strict" in line


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("given") / "shapes"
    for split, count, seed in (("train", 70, 1), ("val", 15, 2), ("test", 20, 3)):
        write_folder(root / split, count, seed=seed, sizes=((16, 16),), grey=1.0)
    return root


def test_given_splits_are_kept_and_evaluate_matches_the_test_metric(split_folder, tmp_path):
    from nnopt.inference import evaluate
    from nnopt.train import fit

    result = fit(MODEL, str(split_folder), epochs=EPOCHS, out=tmp_path / "run", val_fraction=0.3, test_fraction=0.3)
    info = result.config["data_info"]
    assert (info["n_train"], info["n_val"], info["n_test"]) == (210, 45, 60)  # as given: the fractions do not apply
    assert info["images"]["channels"] == 1 and info["input_shape"] == [1, 16, 16]  # every image grey
    assert "given: train, val, test" in info["images"]["splits"]
    assert result.metrics["test"]["accuracy"] >= 0.8
    scored = evaluate(tmp_path / "run", str(split_folder / "test"))
    assert scored.rows == 60
    for name in ("loss", "accuracy"):
        assert math.isclose(scored.metrics[name], result.metrics["test"][name], rel_tol=1e-6)
    assert evaluate(tmp_path / "run", split="test").metrics == scored.metrics
    again = evaluate(tmp_path / "run", split="val")  # the given val folder, found again in the whole folder
    assert again.rows == 45 and math.isclose(again.metrics["loss"], result.metrics["val"]["loss"], rel_tol=1e-6)


def test_given_train_and_test_carve_val_from_train(split_folder, tmp_path):
    root = tmp_path / "two"
    shutil.copytree(split_folder / "train", root / "train")
    shutil.copytree(split_folder / "test", root / "test")
    data = load_data(str(root), val_fraction=0.2, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (168, 42, 60)
    assert "val carved from train" in data.describe()["images"]["splits"]


def test_grey_detection_and_image_size(tmp_path):
    rng = np.random.default_rng(0)
    for kind in ("a", "b"):
        (tmp_path / "g" / kind).mkdir(parents=True)
        for i in range(6):
            shape_image("circle" if kind == "a" else "square", rng, (20, 12), grey=True).save(
                tmp_path / "g" / kind / f"{i}.png")
    data = load_data(str(tmp_path / "g"), scale="none")  # none: the decoded pixels (auto standardizes them)
    assert data.input_shape == (1, 12, 20) and data.class_names == ["a", "b"]  # the common size, height x width
    assert float(data.train.X.max()) <= 1.0 and float(data.train.X.min()) >= 0.0
    data = load_data(str(tmp_path / "g"), image_size="8x10")
    assert data.input_shape == (1, 8, 10) and data.n_features == 80
    Image.new("RGB", (5, 5), (200, 10, 10)).save(tmp_path / "g" / "a" / "red.bmp")
    Image.new("RGB", (5, 5), (10, 200, 10)).save(tmp_path / "g" / "b" / "green.gif")
    data = load_data(str(tmp_path / "g"))
    assert data.input_shape == (3, 32, 32)  # sizes differ: 32 x 32; one colour image: 3 channels


@pytest.mark.parametrize("layout, message", [
    ({"a": 2, "b": 0}, "class folder {root}/b has no images"),
    ({"a": 0, "b": 0}, "no images in {root}"),
    ({"a": 3}, "has one class folder ('a')"),
])
def test_bad_layouts_exit_2_with_one_line(tmp_path, run_cli, layout, message):
    root = tmp_path / "imgs"
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (4, 4), i * 40).save(root / name / f"{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")
    code, _, err = run_cli("train", "--data", root, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and message.format(root=root) in err


def test_image_settings_are_checked(folder):
    with pytest.raises(UsageError, match=r"image_size= must be a size in pixels, N or HxW"):
        load_data(str(folder), image_size="big")
    with pytest.raises(DataError, match=r"image_size= applies to image folders"):
        load_data("iris", image_size=16)


def test_evaluate_refuses_a_class_folder_the_model_does_not_know(trained, tmp_path, run_cli):
    root = tmp_path / "new"
    write_folder(root, 3, seed=5, sizes=((16, 16),), shapes=("circle", "star"))
    code, _, err = run_cli("evaluate", trained, "--data", root)
    assert code == 2 and "'star'" in err and err.count("\n") == 1


def test_automl_on_an_image_folder(folder, tmp_path):
    from nnopt.api import automl
    from nnopt.inference import predict

    run = tmp_path / "automl"
    # 60 s: the smallest budget automl accepts is priced from a probe of this machine's speed (about 47 s here under
    # a load of 2-3); the run stops on its clock either way
    result = automl(str(folder), out=run, budget="60s", image_size=16)
    assert result.summary["test"] is not None and set(result.stages) >= {"screen", "search", "compress", "test"}
    settings = json.loads((run / "automl.json").read_text())["settings"]
    assert settings["space"] == "cnn" and settings["image_size"] == 16  # reused by every stage
    assert settings["augment"] == ["none", "crop", "flip,crop"]  # searched like the other hyperparameters
    trials = json.loads((run / "search" / "trials.json").read_text())["trials"]
    assert trials and all(t["params"]["augment"] in settings["augment"] for t in trials if t["params"])
    shown = predict(run, str(folder / "square"))  # the compressed model, on images decoded as training decoded them
    assert len(shown) == PER_CLASS and set(shown.predictions) <= set(SHAPES)


def test_the_process_pool_decodes_what_one_process_decodes(folder, monkeypatch):
    from nnopt.data import _images

    files = _images.image_files(folder)
    monkeypatch.setattr(_images, "CHUNK", 16)  # several chunks, so the pool's order is tested
    monkeypatch.setattr(_images, "pool_size", lambda n_files: 2)
    pooled = _images.decode_images(files, size=(12, 12))
    monkeypatch.setattr(_images, "pool_size", lambda n_files: 1)
    single = _images.decode_images(files, size=(12, 12))
    assert np.array_equal(pooled[0], single[0]) and pooled[1:] == single[1:]
    assert pooled[0].shape == (3 * PER_CLASS, 3, 12, 12) and len(pooled[2]) == 1


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    for kind in ("a", "b"):
        (tmp_path / "d" / kind).mkdir(parents=True)
        Image.fromarray(values).save(tmp_path / "d" / kind / "deep.png")
        Image.fromarray(values[::-1].copy()).save(tmp_path / "d" / kind / "flipped.png")
    data = load_data(str(tmp_path / "d"), val_fraction=0.25, test_fraction=0.25, scale="none")
    assert data.input_shape == (1, 8, 8)
    pixels = np.sort(data.train.X.numpy().reshape(-1))
    assert pixels.max() == pytest.approx(63000 / 65535, rel=1e-6) and len(np.unique(pixels)) == 64


def test_one_pass_reading_equals_decoding_straight_to_the_chosen_size_and_channels(tmp_path):
    # without image_size the reader decodes each file at its own size and mode, then decodes again only those that
    # differ; the pixels must be those of decoding every file straight to the chosen size and channels
    from nnopt.data import _images

    root = tmp_path / "mixed"
    write_folder(root, 12, seed=4, sizes=((16, 16),), grey=0.4, jpeg=0.4)
    values = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 250)
    Image.fromarray(values).save(root / "circle" / "deep.png")  # 16-bit grey: float, not clipped at 255
    Image.new("P", (16, 16), 3).save(root / "square" / "palette.gif")
    Image.new("LA", (16, 16), (30, 100)).save(root / "square" / "alpha.png")
    Image.new("1", (16, 16), 1).save(root / "square" / "bilevel.png")
    same = _images.image_files(root)
    Image.new("RGB", (40, 24), (90, 20, 200)).save(root / "cross" / "large.jpg", quality=90)
    for files, size in ((same, (16, 16)), (_images.image_files(root), (32, 32))):  # one size; mixed sizes
        X, kept, bad = _images.decode_images(files)
        straight = _images.decode_images(files, size=size, channels=3)
        assert X.dtype == np.float32 and X.shape == (len(files), 3, *size) and bad == []
        assert np.array_equal(X, straight[0]) and kept == straight[1]
    def mode(path):
        with Image.open(path) as img:
            return img.mode

    grey = [f for f in same if mode(f) == "L"]
    assert len(grey) >= 8
    X, _, _ = _images.decode_images(grey)
    assert X.shape[1] == 1 and np.array_equal(X, _images.decode_images(grey, size=(16, 16), channels=1)[0])
