"""Formats /2 and /3: relative-index (delta) positions, float16-exact arrays, layouts chosen by compressed
size, the feature statistics as float32 arrays (/3), and the /1 and /2 files written before still load."""

import copy
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnopt.compress._format import FORMAT, load_compressed, read_compressed, save_compressed
from nnopt.compress._layouts import GAP_MAX, _positions
from nnopt.compress._quant import QTensor, apply_dequantized, quantize_model
from nnopt.errors import UsageError
from nnopt.models import build_model

DATA = Path(__file__).parent / "data"  # v1-*.nnz, v2-*.nnz: written by the /1 and /2 writers, kept as they wrote them
META = {"model_spec": "mlp:300,100", "in_features": 784, "n_outputs": 10, "input_shape": [1, 28, 28],
        "task": "classification"}


def lenet(sparsity: float, seed: int = 0) -> torch.nn.Module:
    """LeNet-300-100 on 784 inputs with random weights, `sparsity` of each weight zero at random positions,
    plus runs of zeros longer than one and two uint8 gaps (and a last entry that is non-zero)."""
    torch.manual_seed(seed)
    model = build_model("mlp:300,100", in_features=784, n_outputs=10).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight"):
                keep = torch.rand(param.shape, generator=generator) >= sparsity
                flat = keep.reshape(-1)
                flat[:700] = False  # leading run: two fillers
                flat[1000:1256] = False  # exactly 256 zeros: one filler and a gap of 0
                flat[1256:1258] = True  # adjacent non-zeros: gap 0
                flat[-1] = True
                param.mul_(keep)
    return model


def outputs(model: torch.nn.Module) -> torch.Tensor:
    X = torch.linspace(-1, 1, 7 * 784).reshape(7, 784)
    with torch.no_grad():
        return model(X)


def test_delta_gaps_count_the_zeros_skipped_with_fillers_for_long_runs():
    positions = np.array([0, 1, 5, 300, 300 + 257, 300 + 257 + 513])
    mask = np.zeros(2000, dtype=bool)
    mask[positions] = True
    parts, stored = _positions("delta", mask, 1, 2000)
    (name, gaps), = parts
    # skipped zeros: 0, 0, 3, 294 = 256 + 38, 256 = 256 + 0, 512 = 2 * 256 + 0; a filler is gap 255 landing on a zero
    assert name == "gaps" and gaps.dtype == torch.uint8
    assert gaps.tolist() == [0, 0, 3, GAP_MAX, 38, GAP_MAX, 0, GAP_MAX, GAP_MAX, 0]
    assert stored.tolist() == [0, 1, 5, 261, 300, 556, 557, 813, 1069, 1070]  # fillers at 261, 556, 813, 1069
    fillers = [261, 556, 813, 1069]
    assert set(stored.tolist()) - set(positions.tolist()) == set(fillers) and not mask[fillers].any()


@pytest.mark.parametrize("bits, scheme", [(None, None), (8, "symmetric"), (4, "symmetric"), (4, "asymmetric"),
                                          (2, "symmetric")])
def test_delta_layout_round_trips_exactly(bits, scheme, tmp_path):
    model = lenet(0.97)
    qweights = None
    if bits:
        qweights = quantize_model(model, bits, scheme)
        apply_dequantized(model, qweights)
    report = save_compressed(tmp_path / "m.nnz", model, META, qweights, layouts=("dense", "delta"))
    kind = f"int{bits}" if bits else "fp32"
    assert [t["encoding"] for t in report["tensors"] if t["name"].endswith("weight")] == [f"{kind}-delta"] * 3
    loaded, meta = load_compressed(tmp_path / "m.nnz")
    assert meta["format"] == FORMAT == "nnopt.compressed/3"
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert torch.equal(outputs(loaded), outputs(model))


def test_delta_positions_are_smaller_than_csr_on_a_sparse_matrix(tmp_path):
    model = lenet(0.95)
    qweights = quantize_model(model, 4)
    apply_dequantized(model, qweights)
    new = save_compressed(tmp_path / "new.nnz", model, META, qweights)
    old = save_compressed(tmp_path / "old.nnz", model, META, qweights, layouts=("dense", "bitmap", "csr"))
    first = new["tensors"][0]
    assert first["name"] == "blocks.0.0.weight" and first["encoding"] == "int4-delta"
    nnz = int((model.blocks[0][0].weight != 0).sum())
    assert nnz <= first["arrays"]["gaps"] <= 1.01 * nnz  # one byte per non-zero; fillers are rare at 5 % density
    # where CSR needs a uint16 column index (784 columns); and the small gaps repeat, so they compress better
    # still. measured: delta 11,303 B, bitmap 13,012, CSR 19,270 (codes and scales included)
    candidates = first["candidates"]
    assert candidates["delta"] < 0.65 * candidates["csr"] and candidates["delta"] < candidates["bitmap"]
    # measured: 13,933 B against 16,002 B when only the /1 layouts may be chosen
    assert new["file_bytes"] < 0.9 * old["file_bytes"]
    assert torch.equal(outputs(load_compressed(tmp_path / "new.nnz")[0]), outputs(model))


def test_each_tensor_keeps_its_smallest_candidate(tmp_path):
    model = lenet(0.5)  # half dense: the positions cost more than they save for some layers, not others
    report = save_compressed(tmp_path / "m.nnz", model, META)
    for tensor in report["tensors"]:
        candidates = tensor["candidates"]
        if tensor["name"].endswith("bias"):  # dense is all a bias can be: nothing to compare
            assert candidates == {} and tensor["deflated"] is None and tensor["encoding"] == "fp32-dense"
            continue
        assert tensor["deflated"] == min(candidates.values())
        assert tensor["encoding"].endswith("-" + min(candidates, key=candidates.get))


def test_float32_arrays_that_are_float16_numbers_are_stored_in_two_bytes(tmp_path):
    model = lenet(0.9)
    qweights = quantize_model(model, 4)
    apply_dequantized(model, qweights)  # scales and the quantized layers' biases are float16 numbers
    state = model.state_dict()
    with torch.no_grad():
        model.head.bias[0] = 1 + 2 ** -20  # not a float16 number: that bias stays float32
    report = save_compressed(tmp_path / "m.nnz", model, META, qweights)
    encodings = {t["name"]: t["encoding"] for t in report["tensors"]}
    assert encodings["blocks.0.0.bias"] == encodings["blocks.1.0.bias"] == "fp16-dense"
    assert encodings["head.bias"] == "fp32-dense"
    with zipfile.ZipFile(tmp_path / "m.nnz") as zf:
        header = json.loads(zf.read("header.json"))
    for entry in header["tensors"]:
        assert entry["dtype"] == "float32"  # the tensor's dtype; the array says how it is stored
        if entry["quant"]:
            assert entry["arrays"]["scale"]["dtype"] == "float16"
    state_back, _ = read_compressed(tmp_path / "m.nnz")
    for name, value in model.state_dict().items():
        assert state_back[name].dtype == torch.float32 and torch.equal(state_back[name], value)
    assert torch.equal(state_back["blocks.0.0.bias"], state["blocks.0.0.bias"])


def test_scales_outside_the_float16_range_stay_float32(tmp_path):
    model = lenet(0.9)
    with torch.no_grad():
        model.blocks[0][0].weight[0] *= 1e-6  # one channel's step below float16's normal range
    qweights = quantize_model(model, 8)
    apply_dequantized(model, qweights)
    assert qweights["blocks.0.0.weight"].scale.dtype == torch.float32
    report = save_compressed(tmp_path / "m.nnz", model, META, qweights)
    with zipfile.ZipFile(tmp_path / "m.nnz") as zf:
        header = json.loads(zf.read("header.json"))
    dtypes = {t["name"]: t["arrays"]["scale"]["dtype"] for t in header["tensors"] if t["quant"]}
    assert dtypes == {"blocks.0.0.weight": "float32", "blocks.1.0.weight": "float16", "head.weight": "float16"}
    assert report["file_bytes"] > 0
    assert torch.equal(outputs(load_compressed(tmp_path / "m.nnz")[0]), outputs(model))


@pytest.mark.parametrize("name, expected", [("v1-fp32-sparse.nnz", "fp32_sparse"),
                                            ("v1-int4-sparse.nnz", "int4_sparse")])
def test_format_1_files_still_load(name, expected):
    reference = np.load(DATA / "v1-expected.npz")
    model, meta = load_compressed(DATA / name)
    assert meta["format"] == "nnopt.compressed/1"
    layouts = {encoding.rsplit("-", 1)[1] for encoding in meta["encodings"].values()}
    assert layouts == {"csr", "bitmap", "dense"}  # every /1 layout
    with torch.no_grad():
        got = model(torch.from_numpy(reference["X"])).numpy()
    np.testing.assert_allclose(got, reference[expected], rtol=1e-5, atol=1e-6)


def test_format_2_files_still_load():
    reference = np.load(DATA / "v2-expected.npz")
    model, meta = load_compressed(DATA / "v2-int4-sparse.nnz")
    assert meta["format"] == "nnopt.compressed/2"
    assert meta["preprocessing"]["x_mean"] == reference["x_mean"].tolist()  # /2 kept them as JSON text: exact
    with torch.no_grad():
        got = model(torch.from_numpy(reference["X"])).numpy()
    np.testing.assert_allclose(got, reference["int4_sparse"], rtol=1e-5, atol=1e-6)  # another BLAS may round apart


def test_feature_statistics_are_float32_arrays_in_the_payload(tmp_path):
    rng = np.random.default_rng(1)
    stats = {"x_mean": rng.normal(size=784).tolist(), "x_std": rng.uniform(0.5, 2, size=784).tolist()}
    short = {"x_min": [0.0, -1.5, 2.25], "x_max": [1.0, 1.5, 3.25]}  # fewer than 8: they stay in the JSON
    prep = {"version": 1, "x_scale": "standard", **stats, **short}
    save_compressed(tmp_path / "m.nnz", lenet(0.9), {**META, "preprocessing": prep})
    with zipfile.ZipFile(tmp_path / "m.nnz") as zf:
        header = json.loads(zf.read("header.json"))
    assert set(header["meta_arrays"]) == {"preprocessing.x_mean", "preprocessing.x_std"}
    stored = header["meta"]["preprocessing"]
    assert "x_mean" not in stored and stored["x_min"] == short["x_min"]
    _, meta = load_compressed(tmp_path / "m.nnz")
    for key, values in stats.items():
        assert meta["preprocessing"][key] == np.asarray(values, dtype=np.float32).tolist()
    assert {k: v for k, v in meta["preprocessing"].items() if k not in stats} == \
        {k: v for k, v in prep.items() if k not in stats}
    # 4 bytes a value against ~19 characters of JSON text: the header shrinks by more than the payload grows
    save_compressed(tmp_path / "bare.nnz", lenet(0.9), META)
    grown = (tmp_path / "m.nnz").stat().st_size - (tmp_path / "bare.nnz").stat().st_size
    assert grown < 2 * 784 * 4 + 200


def test_a_newer_format_asks_for_a_newer_nnopt(tmp_path):
    path = tmp_path / "future.nnz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps({"format": "nnopt.compressed/9", "meta": {}, "tensors": []}))
    with pytest.raises(UsageError, match=r"format nnopt.compressed/9, newer than this nnopt reads .*upgrade nnopt"):
        load_compressed(path)


def test_corrupt_delta_positions_are_a_usage_error(tmp_path):
    model = lenet(0.97)
    save_compressed(tmp_path / "m.nnz", model, META, layouts=("dense", "delta"))
    with zipfile.ZipFile(tmp_path / "m.nnz") as zf:
        header, payload = json.loads(zf.read("header.json")), bytearray(zf.read("payload.bin"))
    gaps = header["tensors"][0]["arrays"]["gaps"]
    payload[gaps["offset"]:gaps["offset"] + gaps["bytes"]] = b"\xff" * gaps["bytes"]  # runs past the tensor
    with zipfile.ZipFile(tmp_path / "bad.nnz", "w") as zf:
        zf.writestr("header.json", json.dumps(header))
        zf.writestr("payload.bin", bytes(payload))
    with pytest.raises(UsageError, match="corrupt"):
        load_compressed(tmp_path / "bad.nnz")


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown layout 'coo'"):
        save_compressed(tmp_path / "m.nnz", lenet(0.9), META, layouts=("dense", "coo"))


def test_binary_codes_stay_dense(tmp_path):
    model = copy.deepcopy(lenet(0.9))
    weight = model.head.weight.detach()
    codes = torch.where(weight >= 0, 1, -1).to(torch.int8)
    scale = weight.abs().mean(dim=1).half().float()
    qt = QTensor(q=codes, scale=scale, zero_point=torch.zeros(10, dtype=torch.int32), bits=1, scheme="binary",
                 shape=tuple(weight.shape))
    apply_dequantized(model, {"head.weight": qt})
    report = save_compressed(tmp_path / "m.nnz", model, META, {"head.weight": qt})
    assert {t["name"]: t["encoding"] for t in report["tensors"]}["head.weight"] == "int1-dense"
    assert torch.equal(outputs(load_compressed(tmp_path / "m.nnz")[0]), outputs(model))
