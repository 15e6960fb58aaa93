"""Weight quantization on real models: RTN error bounds, PTQ accuracy at 8 / 4 / 2 bits, LSQ QAT, bad inputs."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnopt.compress._quant import (
    BITS, SCHEMES, QTensor, apply_dequantized, dequantize, finish_qat, prepare_qat, qrange, quantize_model,
    quantize_tensor,
)
from nnopt.errors import UsageError
from nnopt.train import fit


@pytest.fixture(scope="module")
def trained():
    """mlp:128,64 trained 8 epochs on digits (about 95 % test accuracy), and its data."""
    result = fit("mlp:128,64", "digits", epochs=8, lr=3e-3, seed=0)
    return result.model, result.data


def accuracy(model, data) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.test.X).argmax(1) == data.test.y).float().mean())


def ptq(model, bits, scheme="symmetric", per_channel=True):
    return apply_dequantized(copy.deepcopy(model), quantize_model(model, bits, scheme, per_channel))


def qat(model, bits, epochs=3):
    qmodel = prepare_qat(copy.deepcopy(model), bits)
    fit(qmodel, "digits", epochs=epochs, lr=1e-3, seed=0)
    return qmodel, finish_qat(qmodel)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", BITS)
def test_rtn_error_is_at_most_half_a_step_and_codes_in_range(trained, bits, scheme, per_channel):
    torch.manual_seed(0)
    weights = [trained[0].blocks[0][0].weight.detach(), torch.randn(16, 8, 3, 3) * 0.3 + 0.1]
    for w in weights:
        qt = quantize_tensor(w, bits, scheme, per_channel)
        qmin, qmax = qrange(bits, scheme)
        assert qt.q.dtype == (torch.uint8 if scheme == "asymmetric" else torch.int8)
        assert qt.q.shape == w.shape and qt.shape == tuple(w.shape)
        assert int(qt.q.min()) >= qmin and int(qt.q.max()) <= qmax
        assert qt.scale.dtype == torch.float32
        assert qt.scale.shape == ((w.shape[0],) if per_channel else (1,))
        if scheme == "symmetric":
            assert int(qt.zero_point.abs().max()) == 0
        error = (dequantize(qt) - w).abs()
        assert bool((error <= qt.broadcast(qt.scale) / 2 * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_zero_stays_exactly_zero_and_all_zero_channels_are_guarded(scheme):
    w = torch.tensor([[0.0, 0.5, -0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.0]])
    qt = quantize_tensor(w, 4, scheme)
    restored = dequantize(qt)
    assert bool((restored[w == 0] == 0).all())  # exact, not approximate
    assert float(qt.scale[1]) == 1.0 and int(qt.q[1].to(torch.int32).sub(int(qt.zero_point[1])).abs().max()) == 0
    assert torch.isfinite(restored).all()
    if scheme == "symmetric":
        assert bool((qt.q[w == 0] == 0).all())
        assert int(qt.q[0, 1]) == 7 and int(qt.q[0, 0]) == int(qt.q[0, 3]) == 0  # max|w| -> qmax


def test_symmetric_ranges_are_the_documented_ones():
    assert [qrange(b, "symmetric") for b in BITS] == [(-127, 127), (-7, 7), (-1, 1)]
    assert [qrange(b, "asymmetric") for b in BITS] == [(0, 255), (0, 15), (0, 3)]


def test_quantize_model_covers_linear_and_conv_weights_only():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 3),
                        nn.Conv2d(1, 2, 3))
    q = quantize_model(net, 8)
    assert set(q) == {"0.weight", "3.weight", "4.weight"}  # biases and BatchNorm are not integer-coded
    assert all(isinstance(v, QTensor) and v.scale.shape == (v.shape[0],) for v in q.values())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    apply_dequantized(net, q)
    after = net.state_dict()
    for name in before:
        if name in q:
            assert torch.equal(after[name], dequantize(q[name]))
        elif name.removesuffix(".bias") + ".weight" in q:  # a quantized layer's bias: the nearest float16
            assert torch.equal(after[name], before[name].half().float())
            assert (after[name] - before[name]).abs().max() <= 2 ** -11 * before[name].abs().max()
        else:
            assert torch.equal(after[name], before[name])  # BatchNorm stays as it was


def test_int8_and_int4_ptq_keep_digits_accuracy(trained):
    model, data = trained
    fp32 = accuracy(model, data)
    int8 = accuracy(ptq(model, 8), data)
    int4 = accuracy(ptq(model, 4), data)
    # measured (seed 0): fp32 95.2 %, int8 95.2 %, int4 per-channel 94.4 %
    assert fp32 >= 0.93
    assert int8 >= fp32 - 0.01
    assert int4 >= fp32 - 0.03
    assert accuracy(ptq(model, 8, "asymmetric"), data) >= fp32 - 0.01
    assert accuracy(ptq(model, 4, "symmetric", per_channel=False), data) >= fp32 - 0.05


def test_int2_rtn_drops_and_2bit_qat_recovers(trained):
    model, data = trained
    fp32 = accuracy(model, data)
    rtn2 = accuracy(ptq(model, 2), data)
    qat_model, qweights = qat(model, 2)
    qat2 = accuracy(qat_model, data)
    # measured (seed 0): fp32 95.2 %, int2 RTN 89.3 %, int2 QAT (3 epochs) 95.6 %
    assert rtn2 <= fp32 - 0.03
    assert qat2 >= rtn2 + 0.04
    assert qat2 >= fp32 - 0.02 and qat2 > 0.80
    assert all(set(qt.q.unique().tolist()) <= {-1, 0, 1} for qt in qweights.values())


def test_4bit_qat_is_at_least_as_good_as_4bit_ptq(trained):
    model, data = trained
    ptq4 = accuracy(ptq(model, 4), data)
    qat_model, _ = qat(model, 4)
    # measured (seed 0): PTQ4 94.4 %, QAT4 95.6 %
    assert accuracy(qat_model, data) >= ptq4 - 0.01


def test_qat_keeps_module_types_trains_the_steps_and_finishes_to_plain_weights(trained):
    model, data = trained
    keys = set(model.state_dict())
    qmodel = prepare_qat(copy.deepcopy(model), 4)
    linears = [m for m in qmodel.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and all(parametrize.is_parametrized(m, "weight") for m in linears)
    steps = {n: p.detach().clone() for n, p in qmodel.named_parameters() if n.endswith(".step")}
    assert len(steps) == 3 and all(s.shape[0] == m.out_features for s, m in zip(steps.values(), linears))
    fit(qmodel, "digits", epochs=1, seed=0)
    assert any(not torch.equal(p, steps[n]) for n, p in qmodel.named_parameters() if n in steps)  # steps learned
    with torch.no_grad():
        fake_quant = qmodel(data.test.X)
    qweights = finish_qat(qmodel)
    assert not any(parametrize.is_parametrized(m) for m in qmodel.modules())
    assert set(qmodel.state_dict()) == keys and set(qweights) == {f"{n}.weight" for n in
                                                                ("blocks.0.0", "blocks.1.0", "head")}
    for name, qt in qweights.items():
        assert qt.bits == 4 and qt.scheme == "symmetric" and qt.q.dtype == torch.int8
        assert int(qt.q.abs().max()) <= 7 and int(qt.zero_point.abs().max()) == 0
        assert torch.equal(qmodel.get_parameter(name).detach(), dequantize(qt))  # exactly the codes
    with torch.no_grad():
        # predicts as it trained: the steps were float16 numbers in training already; the biases are rounded to
        # float16 at the end (measured: 8e-5 at most on logits up to 10)
        assert torch.allclose(qmodel(data.test.X), fake_quant, atol=1e-3)


def test_binary_qat(trained):
    model, data = trained
    qmodel, qweights = qat(model, 1)
    assert all(qt.bits == 1 and qt.scheme == "binary" and set(qt.q.unique().tolist()) <= {-1, 1}
               for qt in qweights.values())
    # measured (seed 0): 92.6 %
    assert accuracy(qmodel, data) >= 0.85


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_bit_widths_and_schemes_are_usage_errors(trained):
    model, _ = trained
    w = torch.randn(4, 4)
    with pytest.raises(UsageError) as exc:
        quantize_tensor(w, 3)
    assert _one_line(exc) == "unsupported bit width 3; choose 8, 4 or 2"
    with pytest.raises(UsageError, match="unsupported bit width 16"):
        quantize_model(model, 16)
    with pytest.raises(UsageError, match="unsupported bit width 1; choose 8, 4 or 2"):
        quantize_model(model, 1)  # binary exists for QAT only
    with pytest.raises(UsageError) as exc:
        prepare_qat(copy.deepcopy(model), 3)
    assert _one_line(exc) == "unsupported bit width 3; choose 8, 4, 2 or 1"
    with pytest.raises(UsageError) as exc:
        quantize_tensor(w, 8, scheme="foo")
    assert _one_line(exc).startswith("unknown quantization scheme 'foo'")
    assert "choices: asymmetric, symmetric" in str(exc.value)
    with pytest.raises(UsageError, match="did you mean 'symmetric'"):
        quantize_model(model, 8, scheme="symetric")


def test_qat_state_errors(trained):
    model, _ = trained
    with pytest.raises(UsageError, match="call prepare_qat"):
        finish_qat(copy.deepcopy(model))
    prepared = prepare_qat(copy.deepcopy(model), 2)
    with pytest.raises(UsageError, match="call finish_qat"):
        prepare_qat(prepared, 2)
    with pytest.raises(UsageError, match="call finish_qat"):
        quantize_model(prepared, 8)
    with pytest.raises(UsageError, match="symmetric"):
        prepare_qat(copy.deepcopy(model), 4, scheme="asymmetric")
