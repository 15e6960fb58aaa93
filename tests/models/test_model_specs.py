import math

import pytest
import torch
from torch import nn

from nnopt.errors import ConfigError
from nnopt.models import ArchSpec, build_model, count_params, flops_per_sample, load_model, save_model


@pytest.mark.parametrize("text", [
    "linear", "mlp:128,64", "mlp:32:act=tanh:dropout=0.1", "mlp:16,16:bn:residual", "cnn",
    "cnn:8,16:kernel=5:head=32", "mlp:64:act=gelu", "cnn:8:pool=avg", "cnn:8,16:kernel=5:pool=none:head=0",
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
    ("cnn:8:pool=mean", "unknown pool 'mean'; choices: max, avg, none"),
    ("cnn:8:pool=agv", "did you mean 'avg'?"),
    ("cnn:8:pool", "option 'pool' needs a value"),
    ("linear:pool=avg", "takes no options"),
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


def test_pool_option_parses_and_is_left_out_when_max():
    assert ArchSpec.parse("cnn:8").pool == "max"
    assert ArchSpec.parse("cnn:8:pool=max").to_string() == "cnn:8"
    assert ArchSpec.parse("cnn:8:pool=avg").to_string() == "cnn:8:pool=avg"
    spec = ArchSpec.parse({"kind": "cnn", "hidden": [8], "pool": "none"})
    assert spec.pool == "none" and ArchSpec.parse(spec.to_string()) == spec
    with pytest.raises(ConfigError, match="unknown pool 'mx'; did you mean 'max'"):
        ArchSpec.parse({"kind": "cnn", "pool": "mx"})


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["2d", "1d"])
def test_cnn_pool_choices(shape):
    n_in = math.prod(shape)
    x = torch.randn(3, n_in)
    models = {}
    for pool in ("max", "avg", "none"):
        torch.manual_seed(0)  # the same weights for each: pooling has none
        models[pool] = build_model(f"cnn:pool={pool}", in_features=n_in, n_outputs=10, input_shape=shape).eval()
        assert models[pool](x).shape == (3, 10)
    pools = {p: [type(m).__name__ for m in models[p].features if "Pool" in type(m).__name__] for p in models}
    assert pools["max"] and all(name.startswith("MaxPool") for name in pools["max"])
    assert pools["avg"] and all(name.startswith("AvgPool") for name in pools["avg"])
    assert pools["none"] == []
    with torch.no_grad():
        assert not torch.allclose(models["max"](x), models["avg"](x))
    flat = {p: models[p].head[0].in_features for p in models}
    assert flat["max"] == flat["avg"] < flat["none"] == 32 * math.prod(shape[1:])


def test_a_factory_next_to_the_command_is_found_without_pythonpath(tmp_path, monkeypatch):
    # the `nnopt` command does not put the directory it runs in on sys.path (python -m does): a user's
    # `--model mynets_cwd:Net` beside mynets_cwd.py is still found, after everything installed
    (tmp_path / "mynets_cwd.py").write_text(
        "from torch import nn\n"
        "def Net(in_features, n_outputs, width=4):\n"
        "    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, n_outputs))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path), ".")])
    monkeypatch.delitem(__import__("sys").modules, "mynets_cwd", raising=False)
    net = build_model("mynets_cwd:Net:width=6", in_features=5, n_outputs=2)
    assert net(torch.zeros(3, 5)).shape == (3, 2) and net[0].out_features == 6
    with pytest.raises(ConfigError, match=r"cannot import model factory module 'nowhere_xyz' .*check PYTHONPATH"):
        build_model("nowhere_xyz:Net", in_features=5, n_outputs=2)


@pytest.mark.parametrize("spec", ["cnn", "mlp:8"])
@pytest.mark.parametrize("shape", [5, "x", (1.5, 2), (3, 0, 4), (1, -8, 8), (True, 8, 8)])
def test_input_shape_is_checked_at_the_boundary(spec, shape):
    """A shape that is not whole numbers >= 1 is refused by name (a cnn raised TypeError / RuntimeError from
    torch, an mlp took anything)."""
    from nnopt.errors import UsageError

    with pytest.raises(UsageError, match=r"input_shape= must be the shape of one sample, whole numbers >= 1"):
        build_model(spec, in_features=4, n_outputs=2, input_shape=shape)


def test_a_list_is_a_shape_too():
    assert build_model("cnn", in_features=64, n_outputs=10, input_shape=[1, 8, 8])(torch.zeros(2, 64)).shape == (2, 10)
