"""The example programs run as a user runs them (a subprocess on the script) and print what they promise."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def run_example(name: str, *args: object) -> subprocess.CompletedProcess:
    # one intra-op thread: the scripts' models are small, and the test suite shares the machine's cores
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120, env=env)


def figures(line: str, *names: str) -> dict[str, float]:
    found = {}
    for name in names:
        match = re.search(rf"{name}[ =]{NUMBER}", line)
        assert match, f"no '{name}' figure in: {line}"
        found[name] = float(match.group(1))
    return found


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)  # big-endian magic, then one uint32 per dim
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def digits_as_mnist(directory: Path) -> Path:
    """sklearn's 8x8 digits as 28x28 MNIST-layout IDX files: each pixel becomes a 3x3 block, plus a 2-pixel border."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(np.rint(digits.images * (255 / 16)), np.ones((3, 3)))  # 0..16 -> 0..255, 8x8 -> 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))  # the file's tail holds a few writers only
    images, labels = images[order], digits.target[order].astype(np.uint8)
    directory.mkdir(parents=True)
    write_idx(directory / "train-images-idx3-ubyte", images[:1500], 0x00000803)
    write_idx(directory / "train-labels-idx1-ubyte", labels[:1500], 0x00000801)
    write_idx(directory / "t10k-images-idx3-ubyte", images[1500:], 0x00000803)
    write_idx(directory / "t10k-labels-idx1-ubyte", labels[1500:], 0x00000801)
    return directory


def test_linear_regression_matches_least_squares(tmp_path):
    out = tmp_path / "linear"
    done = run_example("linear_regression.py", "--epochs", 50, "--seed", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    gd, lstsq = line.split("|")[:2]
    learned, exact = figures(gd, "slope", "intercept"), figures(lstsq, "slope", "intercept")
    assert abs(learned["slope"] - exact["slope"]) < 1e-3 and abs(learned["intercept"] - exact["intercept"]) < 1e-3
    assert abs(learned["slope"] - 3) < 0.2 and abs(learned["intercept"] - 2) < 0.2  # y = 3x + 2 + noise
    image = out / "linear_regression.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000
    assert (out / "model.pt").is_file() and (out / "metrics.jsonl").read_text().count("\n") == 50

    bad = run_example("linear_regression.py", "--lr", -1, "--out", tmp_path / "bad")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --lr must be > 0; got -1.0" and bad.stdout == ""


def test_mnist_mlp_on_idx_files(tmp_path):
    idx = digits_as_mnist(tmp_path / "idx")
    out = tmp_path / "mnist"
    done = run_example("mnist_mlp.py", "--idx", idx, "--epochs", 5, "--threads", 1, "--seed", 0, "--out", out)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert figures(line, "test accuracy")["test accuracy"] >= 0.9
    assert "on 297 images" in line and "784 inputs" in line  # the t10k files are the test split, flattened 28x28
    assert (out / "model.pt").is_file() and (out / "curves.png").stat().st_size > 0

    missing = run_example("mnist_mlp.py", "--idx", tmp_path / "no-such-dir", "--out", tmp_path / "bad")
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1 and "is not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_binary_classifier_with_nesterov(tmp_path):
    out = tmp_path / "binary"
    done = run_example("binary_classifier.py", "--epochs", 20, "--seed", 0, "--out", out)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    found = figures(line, "test accuracy", "ROC AUC", "lr")
    assert found["test accuracy"] >= 0.93 and found["ROC AUC"] >= 0.95
    assert found["lr"] > 0 and "LR range test" in line
    assert (out / "summary.json").is_file() and (out / "report.html").stat().st_size > 0

    bad = run_example("binary_classifier.py", "--lr", "fast", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--lr" in bad.stderr
