import gzip
import struct

import numpy as np
import pytest
import torch

from nnopt.data import load_data
from nnopt.data._idx import read_idx
from nnopt.errors import DataError

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, CODES[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False):
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def digit_images(n, offset=0):
    """n 16x16 uint8 images from sklearn digits (8x8, 0..16) upscaled, with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[offset:offset + n].repeat(2, axis=1).repeat(2, axis=2) * 15.9375
    return images.round().astype(np.uint8), digits.target[offset:offset + n].astype(np.uint8)


def make_dir(root, n_train=300, n_test=0, gz=False, dotted=False):
    root.mkdir(exist_ok=True)
    sep = "." if dotted else "-"
    images, labels = digit_images(n_train)
    write_idx(root / f"train-images{sep}idx3-ubyte", images, gz)
    write_idx(root / f"train-labels{sep}idx1-ubyte", labels, gz)
    if n_test:
        test_images, test_labels = digit_images(n_test, offset=n_train)
        write_idx(root / f"t10k-images{sep}idx3-ubyte", test_images, gz)
        write_idx(root / f"t10k-labels{sep}idx1-ubyte", test_labels, gz)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_idx_train_only(tmp_path, gz):
    data = load_data(make_dir(tmp_path / "mnist", gz=gz))
    assert data.source == "idx" and data.task == "classification" and data.n_classes == 10
    assert data.input_shape == (1, 16, 16) and data.n_features == 256
    assert (len(data.train), len(data.val), len(data.test)) == (210, 45, 45)
    # 8-bit pixels: standardized with the train split's one channel mean and std (in pixel units), as a folder is
    p = data.preprocessing
    assert p["x_scale"] == "channel" and len(p["x_mean"]) == len(p["x_std"]) == 1 and p["x_mean"][0] > 1
    assert abs(float(data.train.X.mean())) < 1e-4 and abs(float(data.train.X.std()) - 1) < 1e-3


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True)])
def test_idx_with_t10k_keeps_given_test_split(tmp_path, gz, dotted):
    data = load_data(make_dir(tmp_path / "mnist", n_train=300, n_test=100, gz=gz, dotted=dotted), seed=7)
    assert (len(data.train), len(data.val), len(data.test)) == (255, 45, 100)
    images, labels = digit_images(100, offset=300)
    assert torch.equal(data.test.y, torch.from_numpy(labels.astype(np.int64)))
    mean, std = data.preprocessing["x_mean"][0], data.preprocessing["x_std"][0]
    assert torch.allclose(data.test.X, torch.from_numpy((images.reshape(100, -1) - mean) / std).float(), atol=1e-5)


def test_idx_reader_handles_wider_dtypes(tmp_path):
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", array)), array)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f-idx2-ubyte", floats, gz=True)), floats)


def test_idx_corrupt_magic(tmp_path):
    root = make_dir(tmp_path / "mnist")
    path = root / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"\x12\x34\x08\x03"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"is not an IDX file \(bad magic number 12340803"):
        load_data(root)


def test_idx_truncated_and_mismatched_counts(tmp_path):
    root = make_dir(tmp_path / "mnist")
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"header says shape \(300, 16, 16\).*truncated or corrupt"):
        load_data(root)
    root = make_dir(tmp_path / "other")
    write_idx(root / "train-labels-idx1-ubyte", digit_images(250)[1])
    with pytest.raises(DataError, match="has 300 images but train-labels-idx1-ubyte has 250 labels"):
        load_data(root)


def test_idx_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MNIST-layout IDX files in .*train-images-idx3-ubyte"):
        load_data(tmp_path / "empty")
    root = make_dir(tmp_path / "half")
    write_idx(root / "t10k-images-idx3-ubyte", digit_images(10)[0])
    with pytest.raises(DataError, match="has no matching t10k-labels-idx1-ubyte"):
        load_data(root)
    root = make_dir(tmp_path / "badgz")
    (root / "train-images-idx3-ubyte").rename(root / "train-images-idx3-ubyte.gz")  # not gzip inside
    with pytest.raises(DataError, match="cannot read IDX file"):
        load_data(root)
