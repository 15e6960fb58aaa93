"""A resumed run keeps the feature scaling it was trained with: a checkpoint records it, and where load_data's rule
for the data changed since (8-bit images were divided by 255 before scale="auto" standardized them per channel),
`nnopt train --resume` applies the recorded transform, not the new rule; a checkpoint that records none, on data
the rule changed for, exits 2 naming the mismatch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from imagegen import four_class_arrays  # noqa: E402

OLD_RULE = {"x_scale": "pixel", "x_divisor": 255.0}  # what auto recorded for 8-bit images before


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    """The same 120 images of 16 x 16 as uint8 pixels, and as floats already divided by 255."""
    X, y = four_class_arrays(30, 16)
    base = tmp_path_factory.mktemp("images")
    np.savez(base / "pixels.npz", X=X, y=y)
    np.savez(base / "divided.npz", X=X / np.float32(255), y=y)
    return base / "pixels.npz", base / "divided.npz"


def _train(run_cli, data, out, epochs, *extra):
    code, _, err = run_cli("train", "--data", data, "--model", "mlp:32", "--epochs", epochs, "--seed", "0",
                           "--threads", "1", "--batch-size", "16", "--out", out, *extra)
    assert code == 0, err


def _old_style_run(run_cli, images, run: Path, epochs: int) -> None:
    """A run directory as the earlier rule left it on the uint8 pixels: trained on the pixels divided by 255
    (given here as those floats with scale="none": the same numbers), its config.json and checkpoint then naming
    the pixels and scale="auto", and recording the transform as that rule did (x_scale "pixel", divisor 255)."""
    pixels, divided = images
    _train(run_cli, divided, run, epochs, "--scale", "none")
    config = json.loads((run / "config.json").read_text())
    config.update(data=str(pixels), scale="auto")
    (run / "config.json").write_text(json.dumps(config))
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["fingerprint"].update(data=str(pixels), scale="auto")
    state["scaling"] = dict(OLD_RULE)
    torch.save(state, run / "checkpoint.pt")
    payload = torch.load(run / "model.pt", weights_only=True)
    kept = {k: v for k, v in payload["preprocessing"].items() if not k.startswith("x_")}
    payload["preprocessing"] = {**kept, **OLD_RULE, "scale": "auto"}
    torch.save(payload, run / "model.pt")


def test_a_checkpoint_records_its_scaling(images, tmp_path, run_cli):
    _train(run_cli, images[0], tmp_path / "run", 1)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["preprocessing"]
    assert state["scaling"]["x_scale"] == "channel"
    assert state["scaling"] == {k: v for k, v in model.items() if k.startswith("x_")}


def test_resume_continues_with_the_recorded_scaling_not_the_new_rule(images, tmp_path, run_cli):
    from nnopt.inference import predict

    pixels, divided = images
    run = tmp_path / "old"
    _old_style_run(run_cli, images, run, 2)
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "4")
    assert code == 0, err
    saved = torch.load(run / "model.pt", weights_only=True)
    assert {k: v for k, v in saved["preprocessing"].items() if k.startswith("x_")} == OLD_RULE
    assert torch.load(run / "checkpoint.pt", weights_only=True)["scaling"] == OLD_RULE
    assert json.loads((run / "config.json").read_text())["data"] == str(pixels)
    # the same run trained start to end on the pixels divided by 255: the same weights, to the bit
    _train(run_cli, divided, tmp_path / "reference", 4, "--scale", "none")
    reference = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved["state_dict"][k], reference[k]) for k in reference)
    X, _ = four_class_arrays(2, 16, seed=5)
    np.testing.assert_allclose(predict(run, X, proba=True).probabilities,
                               predict(tmp_path / "reference", X / np.float32(255), proba=True).probabilities,
                               atol=1e-6)


def test_an_older_checkpoint_takes_the_scaling_of_its_model_file(images, tmp_path, run_cli):
    run = tmp_path / "finished"
    _old_style_run(run_cli, images, run, 1)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state["scaling"]  # written before checkpoints recorded it; the finished run's model.pt does
    torch.save(state, run / "checkpoint.pt")
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "2")
    assert code == 0, err
    saved = torch.load(run / "model.pt", weights_only=True)["preprocessing"]
    assert {k: v for k, v in saved.items() if k.startswith("x_")} == OLD_RULE


def test_a_checkpoint_without_a_record_on_data_whose_rule_changed_exits_2(images, tmp_path, run_cli):
    run = tmp_path / "older"
    _old_style_run(run_cli, images, run, 1)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state["scaling"]
    torch.save(state, run / "checkpoint.pt")
    (run / "model.pt").unlink()  # killed before its end: the checkpoint alone
    code, _, err = run_cli("train", "--out", run, "--resume", "--epochs", "2")
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith(f"error: checkpoint {run / 'checkpoint.pt'} records no feature "
                                                "scaling"), line
    assert "--scale auto now standardizes these images per channel" in line and "--out" in line


def test_compress_scores_an_older_run_with_its_recorded_scaling(images, tmp_path):
    from nnopt.compress import compress

    run = tmp_path / "old"
    _old_style_run(_cli(), images, run, 3)
    summary = json.loads((run / "summary.json").read_text())
    result = compress(run, quantize="int8", out=tmp_path / "compressed")
    original = result.rows[0]  # the run's own network, scored on the data compress loads
    assert original["test"] == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-9)
    assert original["val"] == pytest.approx(summary["metrics"]["val"]["accuracy"], abs=1e-9)


def _cli():
    from nnopt.cli import main

    def run(*args):
        return main([str(a) for a in args]), "", ""

    return run
