import pytest
import torch
from torch import nn

from nnopt.errors import ConfigError
from nnopt.models import ArchSpec, build_model, count_params, flops_per_sample, load_model, save_model


@pytest.mark.parametrize("text", [
    "linear", "mlp:128,64", "mlp:32:act=tanh:dropout=0.1", "mlp:16,16:bn:residual", "cnn",
    "cnn:8,16:kernel=5:head=32", "mlp:64:act=gelu",
])
def test_spec_round_trips(text):
    spec = ArchSpec.parse(text)
    assert ArchSpec.parse(spec.to_string()) == spec
    assert ArchSpec.parse(spec.to_dict()) == spec


def test_spec_fields():
    spec = ArchSpec.parse("mlp:128,64:act=tanh:dropout=0.1:bn")
    assert (spec.kind, spec.hidden, spec.act, spec.dropout, spec.batchnorm) == ("mlp", (128, 64), "tanh", 0.1, True)


@pytest.mark.parametrize("text, fragment", [
    ("mlp:12x", "layer sizes must be integers"),
    ("mpl:64", "did you mean 'mlp'"),
    ("mlp:64:act=relux", "unknown activation 'relux'"),
    ("mlp:64:dropout=1.5", "dropout must be in [0, 1)"),
    ("mlp:64:colour=red", "unknown option 'colour'"),
    ("mlp:0", "layer sizes must be >= 1"),
    ("cnn:8:kernel=4", "kernel must be an odd integer"),
    ("", "non-empty string"),
])
def test_malformed_specs(text, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        ArchSpec.parse(text)
    assert fragment in str(info.value)


def test_mlp_shapes_and_counts():
    model = build_model("mlp:128,64", in_features=64, n_outputs=10)
    assert model(torch.zeros(5, 64)).shape == (5, 10)
    assert count_params(model) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    # 2 FLOPs per multiply-add of each Linear
    assert flops_per_sample(model, 64) == 2 * (64 * 128 + 128 * 64 + 64 * 10)


def test_residual_blocks_add_their_input():
    model = build_model("mlp:16,16:residual", in_features=16, n_outputs=2)
    block = model.blocks[1]
    assert block.residual
    x = torch.randn(3, 16)
    assert torch.allclose(block(x), x + block.body(x))


def test_cnn_needs_image_shape_and_handles_1d_and_2d():
    with pytest.raises(ConfigError, match="image-shaped data"):
        build_model("cnn", in_features=10, n_outputs=2)
    assert build_model("cnn", in_features=64, n_outputs=10, input_shape=(1, 8, 8))(torch.zeros(2, 64)).shape == (2, 10)
    assert build_model("cnn", in_features=40, n_outputs=10, input_shape=(1, 40))(torch.zeros(2, 40)).shape == (2, 10)


def make_tiny(in_features, out_features):
    return nn.Sequential(nn.Linear(in_features, out_features))


def test_factory_spec_gets_the_shapes():
    model = build_model(f"{__name__}:make_tiny", in_features=7, n_outputs=3)
    assert model(torch.zeros(1, 7)).shape == (1, 3)
    with pytest.raises(ConfigError, match="cannot import"):
        build_model("no_such_pkg.mod:fn", in_features=7, n_outputs=3)


def test_save_and_load_predict_identically(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp:32:bn", in_features=8, n_outputs=3).eval()
    save_model(tmp_path / "model.pt", model, {"model_spec": "mlp:32:bn", "in_features": 8, "n_outputs": 3,
                                              "input_shape": None, "task": "classification"})
    loaded, meta = load_model(tmp_path)
    x = torch.randn(10, 8)
    assert torch.equal(model(x), loaded(x))
    assert meta["model_spec"] == "mlp:32:bn"
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(Exception, match="not a readable nnopt model"):
        load_model(tmp_path / "junk.pt")
