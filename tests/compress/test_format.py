"""The compressed model file: real sizes (packed codes, sparse layouts), exact round trips, loading, bad files."""

import copy
import math
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from nnopt.compress._format import FORMAT, is_compressed_file, load_compressed, nnopt_load, save_compressed
from nnopt.compress._layouts import pack_codes, unpack_codes
from nnopt.compress._quant import apply_dequantized, finish_qat, prepare_qat, quantize_model
from nnopt.errors import UsageError
from nnopt.train import fit


def _meta(spec, data):
    return {"model_spec": spec, "in_features": data.n_features, "n_outputs": data.n_outputs,
            "input_shape": list(data.input_shape), "task": data.task, "class_names": data.class_names,
            "preprocessing": data.preprocessing}


@pytest.fixture(scope="module")
def mlp():
    result = fit("mlp:128,64", "digits", epochs=8, lr=3e-3, seed=0)
    return result.model, result.data, _meta("mlp:128,64", result.data)


@pytest.fixture(scope="module")
def cnn():
    result = fit("cnn:8,16", "digits", epochs=2, lr=3e-3, seed=0)
    return result.model, result.data, _meta("cnn:8,16", result.data)


def logits(model, data):
    model.eval()
    with torch.no_grad():
        return model(data.test.X)


def quantized(model, bits, scheme="symmetric"):
    qweights = quantize_model(model, bits, scheme)
    return apply_dequantized(copy.deepcopy(model), qweights), qweights


def prune_90(model):
    """Zero the 90 % smallest-magnitude entries of each Linear / Conv weight (plain torch ops)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                w = module.weight
                threshold = w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
                w[w.abs() <= threshold] = 0
    return model


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pack_and_unpack_codes_round_trip(bits):
    rng = np.random.default_rng(bits)
    for n in (0, 1, 7, 8, 1001):
        codes = rng.integers(0, 2 ** bits, size=n).astype(np.uint8)
        packed = pack_codes(codes, bits)
        assert packed.dtype == np.uint8 and packed.size == math.ceil(n * bits / 8)
        assert np.array_equal(unpack_codes(packed, bits, n), codes)


def test_file_sizes_are_real(mlp, tmp_path):
    model, _, meta = mlp
    reports = {"fp32": save_compressed(tmp_path / "fp32.nnz", model, meta)}
    for bits in (8, 4, 2):
        qmodel, qweights = quantized(model, bits)
        reports[bits] = save_compressed(tmp_path / f"int{bits}.nnz", qmodel, meta, qweights)
    fp32_bytes = reports["fp32"]["fp32_state_dict_bytes"]
    for name, report in reports.items():
        assert report["file_bytes"] == (tmp_path / f"{'fp32' if name == 'fp32' else f'int{name}'}.nnz").stat().st_size
        assert report["fp32_state_dict_bytes"] == fp32_bytes  # the same network's torch.save size
        assert report["ratio"] == pytest.approx(report["file_bytes"] / fp32_bytes)
    # measured (format /2): fp32 state dict 71701 B; files fp32 64534 (0.90x), int8 18395 (0.257x), int4 9600
    # (0.134x), int2 4529 (0.063x); 0.8-0.9 kB of each is the zip directory and the compressed JSON header
    assert reports["fp32"]["ratio"] <= 1.0
    assert reports[8]["ratio"] <= 0.30
    assert reports[4]["ratio"] <= 0.17
    assert reports[2]["ratio"] <= 0.10
    for bits in (8, 4, 2):
        for tensor in reports[bits]["tensors"]:
            if tensor["name"].endswith(".weight"):
                numel = math.prod(model.get_parameter(tensor["name"]).shape)
                assert tensor["encoding"].startswith(f"int{bits}-")
                assert tensor["deflated"] == min(tensor["candidates"].values())  # the smallest layout is kept
                if tensor["encoding"].endswith("-dense"):
                    assert tensor["arrays"]["codes"] == math.ceil(numel * bits / 8)  # really packed
            else:  # a quantized layer's bias is a float16 number: stored in 2 bytes, exactly
                assert tensor["encoding"] == "fp16-dense"
                assert tensor["bytes"] == 2 * model.get_parameter(tensor["name"]).numel()
    codes = {bits: {t["name"]: t["arrays"]["codes"] for t in reports[bits]["tensors"] if "codes" in t["arrays"]}
             for bits in (8, 4)}
    assert all(codes[8][name] == 2 * codes[4][name] for name in codes[8])  # int4 is not int8 in disguise
    # 2-bit symmetric codes are ternary and mostly 0: a bitmap of the non-zeros beats dense packing
    assert any(t["encoding"] == "int2-bitmap" for t in reports[2]["tensors"])


def test_sparse_fp32_model_takes_the_smallest_sparse_layout(mlp, tmp_path):
    model, data, meta = mlp
    sparse = prune_90(model)
    report = save_compressed(tmp_path / "sparse.nnz", sparse, meta)
    # measured: 8753 B, 0.122x the fp32 state dict (format /1: 11477 B, 0.160x)
    assert report["ratio"] <= 0.15
    weights = [t for t in report["tensors"] if t["name"].endswith(".weight")]
    for tensor in weights:
        candidates = tensor["candidates"]
        assert set(candidates) == {"dense", "bitmap", "csr", "delta"}
        assert tensor["encoding"] == f"fp32-{min(candidates, key=candidates.get)}"
        assert tensor["deflated"] == min(candidates.values()) < candidates["dense"]
    loaded, meta_back = load_compressed(tmp_path / "sparse.nnz")
    for name, value in sparse.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    assert torch.equal(logits(loaded, data), logits(sparse, data))
    assert meta_back["encodings"] == {t["name"]: t["encoding"] for t in report["tensors"]}


def test_sparse_quantized_weights_round_trip(mlp, tmp_path):
    model, data, meta = mlp
    qmodel, qweights = quantized(prune_90(model), 4, "asymmetric")  # zero is code == zero point
    report = save_compressed(tmp_path / "sparse4.nnz", qmodel, meta, qweights)
    layouts = {t["encoding"] for t in report["tensors"] if t["name"].endswith(".weight")}
    assert layouts <= {"int4-bitmap", "int4-csr", "int4-delta"}
    loaded, _ = load_compressed(tmp_path / "sparse4.nnz")
    assert torch.equal(logits(loaded, data), logits(qmodel, data))


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_saved_file_predicts_exactly_like_the_dequantized_model(net, bits, scheme, request, tmp_path):
    model, data, meta = request.getfixturevalue(net)
    qmodel, qweights = quantized(model, bits, scheme)
    save_compressed(tmp_path / "model.nnz", qmodel, meta, qweights)
    loaded, meta_back = load_compressed(tmp_path / "model.nnz")
    assert not loaded.training
    assert torch.equal(logits(loaded, data), logits(qmodel, data))
    assert meta_back["format"] == FORMAT and meta_back["model_spec"] == meta["model_spec"]
    assert meta_back["quantization"] == {name: {"bits": bits, "scheme": scheme} for name in qweights}
    assert meta_back["class_names"] == data.class_names


@pytest.mark.parametrize("bits", [2, 1])
def test_qat_model_round_trips(cnn, bits, tmp_path):
    model, data, meta = cnn
    qmodel = prepare_qat(copy.deepcopy(model), bits)
    with pytest.raises(UsageError, match="finish_qat"):
        save_compressed(tmp_path / "early.nnz", qmodel, meta)
    fit(qmodel, "digits", epochs=1, lr=3e-3, seed=0)
    qweights = finish_qat(qmodel)
    report = save_compressed(tmp_path / "qat.nnz", qmodel, meta, qweights)
    loaded, meta_back = load_compressed(tmp_path / "qat.nnz")
    assert torch.equal(logits(loaded, data), logits(qmodel, data))
    scheme = "binary" if bits == 1 else "symmetric"
    assert meta_back["quantization"] == {name: {"bits": bits, "scheme": scheme} for name in qweights}
    if bits == 1:  # one bit per weight, eight per byte
        first = next(t for t in report["tensors"] if t["name"] == "head.2.weight")
        assert first["arrays"]["codes"] == math.ceil(64 * 10 / 8)


def test_saving_is_atomic_and_deterministic(mlp, tmp_path):
    model, _, meta = mlp
    qmodel, qweights = quantized(model, 4)
    save_compressed(tmp_path / "a.nnz", qmodel, meta, qweights)
    first = (tmp_path / "a.nnz").read_bytes()
    save_compressed(tmp_path / "a.nnz", qmodel, meta, qweights)  # overwrite in place
    assert (tmp_path / "a.nnz").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["a.nnz"]  # no temp file left behind
    with zipfile.ZipFile(tmp_path / "a.nnz") as zf:
        names = zf.namelist()
        assert names == ["header.json", "payload.bin"]  # every array in one deflated payload, at its offset
        assert zf.getinfo("payload.bin").compress_type in (zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA)  # the smaller


def test_nnopt_load_reads_every_model_file(tmp_path):
    result = fit("mlp:16", "digits", epochs=1, seed=0, out=tmp_path / "run")
    run = tmp_path / "run"
    plain, meta = nnopt_load(run)  # a run directory with model.pt only
    assert meta["format"] == "nnopt.model/1"
    X = result.data.test.X
    qweights = quantize_model(plain, 8)
    qmodel = apply_dequantized(copy.deepcopy(plain), qweights)
    save_compressed(run / "compressed.nnz", qmodel, meta, qweights)  # the meta of model.pt is enough
    for source in (run, run / "compressed.nnz"):
        loaded, meta = nnopt_load(source)
        assert meta["format"] == FORMAT and torch.equal(loaded(X), qmodel(X))
    loaded, meta = nnopt_load(run / "model.pt")
    assert meta["format"] == "nnopt.model/1" and torch.equal(loaded(X), plain(X))
    assert is_compressed_file(run / "compressed.nnz") and not is_compressed_file(run / "model.pt")


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_files_that_are_not_compressed_models_are_usage_errors(mlp, tmp_path):
    model, _, meta = mlp
    text = tmp_path / "x.bin"
    text.write_text("hello, not a model\n")
    torch_file = tmp_path / "state.pt"
    torch.save(model.state_dict(), torch_file)  # a zip too, without our header
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("header.json", '{"format": "something/2"}')
    for path in (text, torch_file, other_zip):
        assert not is_compressed_file(path)
        with pytest.raises(UsageError) as exc:
            load_compressed(path)
        assert _one_line(exc) == f"{path.name} is not an nnopt compressed model (no '{FORMAT}' header)"
    with pytest.raises(UsageError) as exc:
        nnopt_load(text)
    _one_line(exc)
    with pytest.raises(UsageError, match="not found"):
        nnopt_load(tmp_path / "missing.nnz")
    with pytest.raises(UsageError, match="compressed.nnz or model.pt"):
        nnopt_load(tmp_path)
    with pytest.raises(UsageError, match="model_spec"):
        save_compressed(tmp_path / "m.nnz", model, {"in_features": 64, "n_outputs": 10})


def test_corrupt_file_is_a_usage_error(mlp, tmp_path):
    model, _, meta = mlp
    path = tmp_path / "m.nnz"
    save_compressed(path, model, meta)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("payload.bin")
    data[info.header_offset + 40] ^= 0xFF  # flip a byte inside an array: the CRC check fails
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError) as exc:
        load_compressed(path)
    assert "corrupt" in _one_line(exc)
