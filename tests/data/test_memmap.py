"""Memory-mapped .npy arrays: trained batch by batch, the same run as the rows in memory, and in a process whose
data segment may not grow by the file's size (RLIMIT_DATA: a read-only file mapping is outside it, loading the
array whole is not; RLIMIT_AS cannot be used: it counts the file's mapping itself, and torch's own reservations)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnopt
from nnopt.data._memmap import fit_scaling

SRC = str(Path(nnopt.__file__).parents[1])


def test_memmap_pair_trains_as_the_same_rows_in_memory(tmp_path):
    digits = load_digits()
    X, y = digits.data.astype("float32"), digits.target
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    mapped = nnopt.fit("mlp:32", (str(tmp_path / "X.npy"), str(tmp_path / "y.npy")), epochs=3, seed=0,
                       out=tmp_path / "run")
    memory = nnopt.fit("mlp:32", (X, y), epochs=3, seed=0)
    assert mapped.data.source == "memmap"
    # the same split, scaling and batches: held-out metrics agree to float rounding
    assert mapped.metrics["test"] == pytest.approx(memory.metrics["test"], rel=1e-4)
    assert [r["val_loss"] for r in mapped.history] == pytest.approx([r["val_loss"] for r in memory.history], rel=1e-4)
    predicted = nnopt.predict(tmp_path / "run", X[:300])
    assert np.mean(predicted.predictions.astype(int) == y[:300]) >= 0.9
    # an np.memmap X works the same way, and a single .npy holds the target in its last column
    whole = np.concatenate([X, y[:, None].astype("float32")], axis=1)
    np.save(tmp_path / "whole.npy", whole)
    again = nnopt.fit("mlp:32", str(tmp_path / "whole.npy"), epochs=3, seed=0)
    assert again.metrics["test"] == pytest.approx(memory.metrics["test"], rel=1e-4)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert nnopt.fit("mlp:32", (mm, y), epochs=1, seed=0).data.source == "memmap"


@pytest.mark.parametrize("kind", ["standard", "minmax"])
def test_chunked_scaling_equals_numpy_on_the_whole(kind):
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 5))
    rows = np.sort(np.random.default_rng(1).choice(1000, 700, replace=False))
    params = fit_scaling(X, rows, kind, None, chunk=64)
    if kind == "standard":
        assert params["x_mean"] == pytest.approx(X[rows].mean(0), rel=1e-12)
        assert params["x_std"] == pytest.approx(X[rows].std(0), rel=1e-12)
    else:
        assert params["x_min"] == pytest.approx(X[rows].min(0)) and params["x_max"] == pytest.approx(X[rows].max(0))


CHILD = textwrap.dedent("""
    import json, re, resource, sys
    import numpy as np
    import torch
    import nnopt
    torch.set_num_threads(1)
    path, out, margin = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(1)  # a small run first: what training takes whatever the data's size
    nnopt.fit("linear", (rng.normal(size=(256, 1024)).astype("float32"), np.arange(256) % 2), epochs=1)
    data_now = int(re.search(r"VmData:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    limit = data_now + margin
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        np.load(path + "/X.npy").sum()
        whole = "loaded"
    except MemoryError:
        whole = "MemoryError"
    result = nnopt.fit("linear", (path + "/X.npy", path + "/y.npy"), epochs=1, batch_size=256, seed=0)
    json.dump({"whole": whole, "accuracy": result.metrics["test"]["accuracy"], "limit": limit,
               "n_train": len(result.data.train)}, open(out, "w"))
""")


def test_memmap_larger_than_the_memory_limit_trains_an_epoch(tmp_path):
    rows, width = 96_000, 1024  # 393 MB of float32 rows
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(rows, width))
    rng = np.random.default_rng(0)
    y = np.zeros(rows, dtype=np.int64)
    for start in range(0, rows, 8192):  # written in chunks: this process does not hold it either
        part = rng.normal(size=(min(8192, rows - start), width)).astype(np.float32)
        y[start:start + len(part)] = part[:, 0] + part[:, 1] > 0
        X[start:start + len(part)] = part
    X.flush()
    del X
    np.save(tmp_path / "y.npy", y)
    size = os.path.getsize(tmp_path / "X.npy")
    margin = 160 << 20  # what the process may allocate beyond a small run's needs: well under the file
    assert size > 2 * margin
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / "out.json"), str(margin)],
                   check=True, env=env, timeout=300)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["whole"] == "MemoryError"  # the limit bites: the array cannot be read into memory
    # one epoch of a linear model among 1022 noise columns: 0.90 (chance 0.5)
    assert result["n_train"] == round(rows * 0.7) and result["accuracy"] >= 0.85


def test_the_command_line_takes_a_npy_pair_and_predicts_and_evaluates_npy_rows(tmp_path, run_cli):
    """`--data X.npy,y.npy` is the (X, y) pair the Python API takes; signals (n, 1, L) reach a 1-D conv factory
    as they are. evaluate --split test re-reads the pair from config.json; predict takes a .npy of rows alone."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    y = rng.integers(0, 2, 300)
    # class 1 swings four times as wide as class 0, each at a random phase
    phase = rng.uniform(0, 2 * np.pi, (300, 1))
    X = np.where(y[:, None] == 1, 2.0, 0.5) * np.sin(2 * np.pi * 3 * t + phase) + 0.1 * rng.standard_normal((300, 32))
    np.save(tmp_path / "X.npy", X[:, None, :].astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    pair = f"{tmp_path / 'X.npy'},{tmp_path / 'y.npy'}"
    module = tmp_path / "signalnets.py"
    module.write_text(textwrap.dedent("""
        from torch import nn

        def make(input_shape, n_outputs):
            return nn.Sequential(nn.Conv1d(input_shape[0], 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                                 nn.Flatten(), nn.Linear(8, n_outputs))
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        code, out, err = run_cli("train", "--data", pair, "--model", "signalnets:make", "--epochs", "30",
                                 "--out", tmp_path / "run", "--json")
        assert code == 0, err
        test = json.loads(out)["metrics"]["test"]["accuracy"]
        assert test >= 0.9
        assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == pair
        code, out, err = run_cli("evaluate", tmp_path / "run", "--split", "test", "--json", "--out", tmp_path / "ev")
        assert code == 0, err
        assert json.loads(out)["metrics"]["accuracy"] == pytest.approx(test, abs=1e-9)
        code, out, err = run_cli("predict", tmp_path / "run", "--data", tmp_path / "X.npy", "--out",
                                 tmp_path / "p.csv", "--json")
        assert code == 0, err
        predictions = (tmp_path / "p.csv").read_text().split()[1:]
        assert len(predictions) == 300 and np.mean(np.array(predictions, dtype=int) == y) >= 0.9
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("signalnets", None)
