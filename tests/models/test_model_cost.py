import io
import math

import pytest
import torch

from nnopt.errors import ConfigError
from nnopt.models import build_model, count_params, measure_latency_ms, model_costs, serialized_bytes


def mlp(spec, in_features=64):
    return build_model(spec, in_features=in_features, n_outputs=10)


def test_serialized_bytes_is_about_four_bytes_per_param():
    small, large = mlp("mlp:16"), mlp("mlp:256,128")
    assert serialized_bytes(large) > serialized_bytes(small)
    for model in (small, large):
        fp32 = 4 * count_params(model)
        assert fp32 <= serialized_bytes(model) <= fp32 * 1.03 + 4096


def test_serialized_bytes_equals_a_real_torch_save():
    model = build_model("cnn:4,8:bn", in_features=64, n_outputs=10, input_shape=(1, 8, 8))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_bytes(model) == len(buffer.getvalue())


def test_latency_is_positive_and_grows_with_the_model():
    small = measure_latency_ms(mlp("mlp:16"), 64)
    large = measure_latency_ms(mlp("mlp:1024,1024,1024"), 64)
    assert 0 < small < math.inf and 0 < large < math.inf
    assert large > small


def test_latency_leaves_threads_rng_and_mode_alone():
    model = mlp("mlp:32:dropout=0.5").train()
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    measure_latency_ms(model, 64, threads=2, repeats=3, warmup=1)
    assert model.training
    model.eval()
    measure_latency_ms(model, 64, batch=4, repeats=3, warmup=0)
    assert not model.training
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("bad", [{"repeats": 0}, {"batch": 0}, {"warmup": -1}, {"threads": 0}])
def test_latency_rejects_bad_settings(bad):
    with pytest.raises(ConfigError, match=f"latency {next(iter(bad))} must be an integer"):
        measure_latency_ms(mlp("mlp:16"), 64, **bad)


def test_model_costs():
    model = mlp("mlp:128,64")
    costs = model_costs(model, 64)
    assert set(costs) == {"params", "flops", "size_kb", "latency_ms"}
    assert costs["params"] == count_params(model)
    assert costs["flops"] == 2 * (64 * 128 + 128 * 64 + 64 * 10)
    assert costs["size_kb"] == serialized_bytes(model) / 1024
    assert costs["latency_ms"] > 0
    assert model_costs(model, 64, latency=False)["latency_ms"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_model_is_measured_on_cpu_and_left_on_its_device():
    model = mlp("mlp:32")
    cpu_bytes = serialized_bytes(model)
    model = model.cuda()
    assert serialized_bytes(model) == cpu_bytes
    assert measure_latency_ms(model, 64, repeats=3) > 0
    assert next(model.parameters()).is_cuda and model.training
