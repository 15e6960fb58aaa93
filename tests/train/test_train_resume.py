"""Checkpoints: kill -9 mid-run, then --resume, gives bit-identical final weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nnopt.errors import CheckpointError
from nnopt.train import Callback, fit

ARGS = ["train", "--data", "digits", "--model", "mlp:64,32:dropout=0.1", "--optimizer", "adam",
        "--schedule", "cosine", "--batch-size", "8", "--epochs", "40", "--seed", "3", "--threads", "1"]


def _nnopt(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nnopt", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def _epochs_done(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _nnopt(*ARGS, "--out", killed)
    deadline = time.monotonic() + 120
    while _epochs_done(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _epochs_done(killed)
    assert 4 <= done < 40, "the run must be killed part-way"
    assert not (killed / "model.pt").exists()

    resumed = _nnopt("train", "--out", killed, "--resume", "--json")  # settings re-read from config.json
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["epochs"] == 40

    reference = _nnopt(*ARGS, "--out", clean, "--json")
    reference.communicate(timeout=300)
    assert reference.returncode == 0
    a, b = _weights(killed), _weights(clean)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    history = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == list(range(1, 41))


def test_interrupted_then_resumed_in_process_matches_and_checks_settings(tmp_path):
    class StopAt3(Callback):
        def on_epoch_end(self, epoch, logs):
            return epoch == 3

    common = dict(optimizer="muon", batch_size=16, seed=1, schedule="one-cycle", epochs=6)
    full = fit("mlp:32:dropout=0.1", "iris", out=tmp_path / "full", **common)
    cut = fit("mlp:32:dropout=0.1", "iris", out=tmp_path / "cut", callbacks=[StopAt3()], **common)
    assert len(cut.history) == 3
    resumed = fit("mlp:32:dropout=0.1", "iris", out=tmp_path / "cut", resume=True, **common)
    assert len(resumed.history) == 6
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    def untimed(rows):
        return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]

    assert untimed(resumed.history) == untimed(full.history)
    with pytest.raises(CheckpointError, match="was made with optimizer='muon', not 'adam'"):
        fit("mlp:32:dropout=0.1", "iris", out=tmp_path / "full", resume=True, **{**common, "optimizer": "adam"})
    with pytest.raises(CheckpointError, match="was made with epochs=6, not 9"):  # one-cycle spans all epochs
        fit("mlp:32:dropout=0.1", "iris", out=tmp_path / "full", resume=True, **{**common, "epochs": 9})


def test_more_epochs_on_resume_without_a_schedule(tmp_path):
    fit("linear", "iris", epochs=2, out=tmp_path)
    more = fit("linear", "iris", epochs=4, out=tmp_path, resume=True)
    assert [row["epoch"] for row in more.history] == [1, 2, 3, 4]


def test_fewer_epochs_than_the_checkpoint_holds_is_refused(tmp_path, run_cli):
    """It printed the checkpoint's 4 epochs as the result of asking for 2, with nothing said."""
    fit("linear", "iris", epochs=4, out=tmp_path)
    before = (tmp_path / "model.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"has trained 4 epochs, more than epochs=2; give epochs= of 4 or "
                                              r"more to train on"):
        fit("linear", "iris", epochs=2, out=tmp_path, resume=True)
    code, _, err = run_cli("train", "--out", tmp_path, "--resume", "--epochs", "3")
    assert code == 2 and err.count("\n") == 1 and "more than --epochs 3; give --epochs of 4 or more" in err, err
    assert (tmp_path / "model.pt").read_bytes() == before
    assert [row["epoch"] for row in fit("linear", "iris", epochs=4, out=tmp_path, resume=True).history] == [1, 2, 3, 4]


def test_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        fit("linear", "iris", epochs=2, out=tmp_path / "none", resume=True)
    run = tmp_path / "run"
    fit("linear", "iris", epochs=2, out=run)
    (run / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="is corrupt"):
        fit("linear", "iris", epochs=2, out=run, resume=True)
