"""--augment: image batches flipped / shifted / jittered in training only, seeded by the run's seed."""

from __future__ import annotations

import json

import pytest
import torch
from gpu import same_metrics

from nnopt.errors import ConfigError, UsageError
from nnopt.train import fit
from nnopt.train._augment import Augment, crop, flip


def _batch(n: int = 32, shape=(3, 12, 10)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))


def test_flip_mirrors_about_half_the_images():
    images = _batch(200)
    out = flip(images, torch.Generator().manual_seed(0))
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert bool((mirrored | kept).all()) and 70 <= int(mirrored.sum()) <= 130


def test_crop_shifts_each_image_by_at_most_the_padding():
    images = torch.zeros(50, 1, 20, 20)
    images[:, 0, 10, 10] = 1.0  # one bright pixel: where it lands is the shift
    out = crop(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and bool((out.sum(dim=(1, 2, 3)) == 1).all())
    where = out[:, 0].flatten(1).argmax(dim=1)
    rows, cols = where // 20, where % 20
    assert bool(((rows - 10).abs() <= 2).all()) and bool(((cols - 10).abs() <= 2).all())
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # shifts differ between images


def test_augment_is_seeded_per_epoch_and_keeps_flat_rows_flat():
    images = _batch()
    flat = images.reshape(len(images), -1)
    def augmented(augment: Augment, epoch: int) -> torch.Tensor:
        augment.begin(epoch)  # as the loop calls it: once an epoch, then once a batch
        return augment(flat)

    augment = Augment(["flip", "crop", "jitter"], (3, 12, 10), seed=3)
    first = augmented(augment, 1)
    again = augmented(Augment(["flip", "crop", "jitter"], (3, 12, 10), seed=3), 1)
    other = augmented(augment, 2)
    assert first.shape == flat.shape and torch.equal(first, again)
    assert not torch.equal(first, flat) and not torch.equal(first, other)


def test_a_run_with_augment_is_reproducible_and_trains_on_changed_batches(tmp_path):
    from nnopt.inference import evaluate

    options = dict(epochs=3, seed=4, batch_size=128, threads=1)
    first = fit("cnn:8,16", "digits", augment="flip,crop", out=tmp_path / "a", **options)
    second = fit("cnn:8,16", "digits", augment=["flip", "crop"], **options)
    plain = fit("cnn:8,16", "digits", **options)
    state, again, without = (r.model.state_dict() for r in (first, second, plain))
    assert all(torch.equal(state[k], again[k]) for k in state)  # same seed -> the identical model
    assert not all(torch.equal(state[k], without[k]) for k in state)  # the batches it trained on changed
    assert json.loads((tmp_path / "a" / "config.json").read_text())["augment"] == ["flip", "crop"]
    # evaluation sees the rows as they are: scoring the test split again gives what training reported (equal on
    # the CPU; to float32 rounding where training scored on a GPU and evaluate on the CPU)
    scored = evaluate(tmp_path / "a", split="test")
    assert same_metrics(scored.metrics["loss"], first.metrics["test"]["loss"])
    assert same_metrics(scored.metrics["accuracy"], first.metrics["test"]["accuracy"])


def test_augment_needs_images_and_known_names():
    with pytest.raises(UsageError, match=r"augment= applies to images.*flat table rows"):
        fit("mlp:8", "iris", epochs=1, augment="flip")
    with pytest.raises(ConfigError, match=r"unknown augment 'flp'; did you mean 'flip'"):
        fit("cnn", "digits", epochs=1, augment="flp,crop")
    with pytest.raises(UsageError, match=r"hogwild"):
        fit("cnn", "digits", epochs=1, augment="flip", strategy="hogwild", nproc=2)


def test_augment_is_a_choice_in_tune(tmp_path):
    from nnopt.api import tune

    spec = {"data": "digits", "model": "cnn:8,16", "train": {"epochs": 1, "threads": 1},
            "space": {"augment": {"choices": ["none", "flip", "flip,crop"]}}, "sampler": "grid", "seed": 0}
    result = tune(spec, out=tmp_path / "tune", report=False)
    chosen = sorted(trial["params"]["augment"] for trial in result.trials)
    assert chosen == ["flip", "flip,crop", "none"]
    best = result.best_params["augment"]
    config = json.loads((tmp_path / "tune" / "best" / "config.json").read_text())
    assert config["augment"] == (None if best == "none" else best.split(","))  # the best trial's setting, retrained


def test_a_resumed_run_augments_as_the_uninterrupted_one(tmp_path):
    from nnopt.train import Callback

    class StopAt2(Callback):
        def on_epoch_end(self, epoch, logs):
            return epoch == 2

    common = dict(epochs=4, seed=2, batch_size=256, threads=1, augment="flip,crop,jitter")
    full = fit("cnn:4,8", "digits", out=tmp_path / "full", **common)
    cut = fit("cnn:4,8", "digits", out=tmp_path / "cut", callbacks=[StopAt2()], **common)
    assert len(cut.history) == 2
    resumed = fit("cnn:4,8", "digits", out=tmp_path / "cut", resume=True, **common)
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))
