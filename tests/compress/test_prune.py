"""Pruning on real data: exact sparsities, 2:4 groups, structurally smaller models that compute what the masked
original computes, spec round trips, accuracy after fine-tuning, the gradual schedule, and the error messages."""

import copy

import pytest
import torch
from torch import nn

from nnopt.compress._prune import (
    PRUNE_METHODS, cubic_schedule, drop_dead_units, finetune, make_permanent, prunable_layers, prune,
    prune_gradually, sparsity_table, structured_spec,
)
from nnopt.errors import UsageError
from nnopt.models import ArchSpec, build_model, count_params
from nnopt.train import fit


@pytest.fixture(scope="module")
def trained():
    """mlp:128,64 trained 20 epochs on digits, 95 % val accuracy (the FitResult: .model, .data, .metrics)."""
    return fit("mlp:128,64", "digits", epochs=20, seed=0)


@pytest.fixture
def mlp(trained):
    return copy.deepcopy(trained.model)


def _accuracy(model, split):
    model.eval()
    with torch.no_grad():
        return float((model(split.X).argmax(1) == split.y).float().mean())


def _build(spec, seed=0):
    torch.manual_seed(seed)
    shape = (1, 8, 8) if spec.startswith("cnn") else None
    return build_model(spec, in_features=64, n_outputs=10, input_shape=shape).eval()


def _keep_top(score, amount):
    n = len(score)
    return torch.topk(score, n - round(amount * n)).indices


def _zero_units(module, kept):
    """Zero the incoming weights and bias of every output unit of `module` not in `kept` (in place)."""
    drop = torch.ones(module.weight.shape[0], dtype=torch.bool)
    drop[kept] = False
    with torch.no_grad():
        module.weight[drop] = 0
        module.bias[drop] = 0


def _norms(module):
    return module.weight.detach().flatten(1).norm(dim=1)


def test_methods_and_prunable_layers_include_the_output_layer(mlp):
    assert PRUNE_METHODS == ("magnitude", "global", "structured", "2:4")
    assert [name for name, _ in prunable_layers(mlp)] == ["blocks.0.0", "blocks.1.0", "head"]


@pytest.mark.parametrize("amount", [0.5, 0.9])
def test_magnitude_prunes_every_layer_to_the_amount(mlp, amount):
    biases = {name: m.bias.detach().clone() for name, m in prunable_layers(mlp)}
    prune(mlp, amount, "magnitude")
    rows = sparsity_table(mlp)
    for row in rows[:-1]:
        assert row["zeros"] == round(amount * row["params"])  # torch's rounding: at most half a weight off
    for name, module in prunable_layers(mlp):
        assert torch.equal(module.bias, biases[name])  # biases are never pruned
        kept = module.weight_orig[module.weight_mask == 1].abs()
        assert kept.min() >= module.weight_orig[module.weight_mask == 0].abs().max()  # the smallest went
    prune(mlp, amount, "magnitude")  # again at the same amount: a target, not another round on top
    assert sparsity_table(mlp)[-1]["zeros"] == rows[-1]["zeros"]


@pytest.mark.parametrize("amount", [0.5, 0.9])
def test_global_prunes_the_whole_model_to_the_amount(mlp, amount):
    biases = [m.bias.detach().clone() for _, m in prunable_layers(mlp)]
    prune(mlp, amount, "global")
    rows = sparsity_table(mlp)
    assert rows[-1]["zeros"] == round(amount * rows[-1]["params"])
    assert len({round(r["sparsity"], 3) for r in rows[:-1]}) > 1  # one threshold, layers end up different
    assert all(torch.equal(m.bias, b) for (_, m), b in zip(prunable_layers(mlp), biases))


def test_two_of_every_four_input_weights_are_zero(mlp, trained):
    before = _accuracy(mlp, trained.data.val)
    prune(mlp, 0.3, "2:4")  # the amount is ignored: 2:4 is always 50 %
    for _, module in prunable_layers(mlp):
        groups = module.weight.detach().reshape(module.weight.shape[0], -1, 4)
        assert ((groups == 0).sum(-1) >= 2).all()
    rows = sparsity_table(mlp)
    assert [r["sparsity"] for r in rows] == [0.5] * 4  # 64, 128 and 64 inputs: all multiples of 4
    assert _accuracy(mlp, trained.data.val) > before - 0.15


def test_2_4_leaves_layers_with_other_input_sizes_dense_and_says_so():
    cnn = _build("cnn:8,16")
    prune(cnn, 0.5, "2:4")
    rows = {r["layer"]: r for r in sparsity_table(cnn)}
    assert rows["features.0"]["zeros"] == 0 and "not a multiple of 4" in rows["features.0"]["note"]  # 1*3*3 = 9
    assert rows["features.3"]["sparsity"] == 0.5  # 8*3*3 = 72 inputs per output channel
    groups = cnn.features[3].weight.detach().reshape(16, -1, 4)
    assert ((groups == 0).sum(-1) >= 2).all()


def test_structured_mlp_is_smaller_and_computes_what_the_masked_original_computes(mlp, trained):
    original = copy.deepcopy(mlp)
    small = prune(mlp, 0.5, "structured")
    shapes = [(m.in_features, m.out_features) for _, m in prunable_layers(small)]
    assert shapes == [(64, 64), (64, 32), (32, 10)]
    assert count_params(small) < count_params(mlp) and count_params(mlp) == count_params(original)
    assert all(torch.equal(a, b) for a, b in zip(mlp.state_dict().values(), original.state_dict().values()))
    masked = copy.deepcopy(original)
    _zero_units(masked.blocks[0][0], _keep_top(_norms(original.blocks[0][0]), 0.5))
    _zero_units(masked.blocks[1][0], _keep_top(_norms(original.blocks[1][0]), 0.5))
    X = trained.data.val.X
    with torch.no_grad():
        assert torch.allclose(small.eval()(X), masked.eval()(X), atol=1e-5)


def test_structured_keeps_batchnorm_rows_in_sync():
    model = _build("mlp:128,64:bn")
    for norm in (model.blocks[0][1], model.blocks[1][1]):  # non-trivial statistics to follow
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
        nn.init.uniform_(norm.weight), nn.init.uniform_(norm.bias)
    small = prune(model, 0.5, "structured")
    kept = torch.sort(_keep_top(_norms(model.blocks[0][0]), 0.5)).values
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(small.blocks[0][1], key), getattr(model.blocks[0][1], key)[kept])
    assert [n.num_features for n in (small.blocks[0][1], small.blocks[1][1])] == [64, 32]
    assert small(torch.randn(5, 64)).shape == (5, 10)
    assert structured_spec("mlp:128,64:bn", small).to_string() == "mlp:64,32:bn"


def test_structured_residual_blocks_share_one_set_of_units():
    model = _build("mlp:128,128:residual")  # 64 -> 128 (plain), 128 -> 128 (x + body(x))
    small = prune(model, 0.5, "structured")
    spec = structured_spec("mlp:128,128:residual", small)
    # 64 units would make the first block 64 -> 64, which build_model would give a shortcut: one unit more
    assert spec.to_string() == "mlp:65,65:residual"
    score = _norms(model.blocks[0][0]) + _norms(model.blocks[1].body[0])
    kept = torch.topk(score, 65).indices
    masked = copy.deepcopy(model)
    _zero_units(masked.blocks[0][0], kept)
    _zero_units(masked.blocks[1].body[0], kept)
    X = torch.randn(32, 64)
    with torch.no_grad():
        assert torch.allclose(small(X), masked(X), atol=1e-5)
    tied = prune(_build("mlp:64,64:residual"), 0.5, "structured")  # every width is joined to the input
    assert structured_spec("mlp:64,64:residual", tied).hidden == (64, 64)
    assert "residual" in sparsity_table(tied)[0]["note"]


def test_structured_cnn_halves_channels_and_the_head_input():
    model = _build("cnn:8,16")
    small = prune(model, 0.5, "structured")
    assert [small.features[0].out_channels, small.features[3].out_channels] == [4, 8]
    assert small.head[0].in_features == model.head[0].in_features // 2 == 32  # 8 channels x 2x2 map
    assert structured_spec("cnn:8,16", small).to_string() == "cnn:4,8:head=32"
    masked = copy.deepcopy(model)
    for i in (0, 3):
        _zero_units(masked.features[i], _keep_top(_norms(model.features[i]), 0.5))
    _zero_units(masked.head[0], _keep_top(_norms(model.head[0]), 0.5))
    X = torch.rand(16, 64)
    with torch.no_grad():
        assert torch.allclose(small(X), masked(X), atol=1e-5)
    assert count_params(small) < count_params(model) / 3


@pytest.mark.parametrize("spec", ["mlp:128,64", "mlp:128,64:bn:dropout=0.1", "mlp:96,96,48:residual",
                                  "cnn:8,16", "cnn:8,16:bn:head=0", "cnn:8,16:head=32:pool=avg"])
def test_structured_spec_rebuilds_the_pruned_model(spec):
    small = prune(_build(spec), 0.4, "structured")
    shape = (1, 8, 8) if spec.startswith("cnn") else None
    rebuilt = build_model(structured_spec(spec, small), in_features=64, n_outputs=10, input_shape=shape)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    X = torch.rand(8, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(X), small.eval()(X))
    assert isinstance(structured_spec(ArchSpec.parse(spec), small), ArchSpec)


def test_one_shot_magnitude_then_finetune_keeps_accuracy_and_zeros(mlp, trained):
    assert trained.metrics["val"]["accuracy"] >= 0.95
    prune(mlp, 0.8, "magnitude")
    masks = [m.weight_mask.clone() for _, m in prunable_layers(mlp)]
    model, history = finetune(mlp, trained.data, epochs=2, seed=0)
    assert model is mlp and [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["val_accuracy"] >= 0.90 and abs(history[-1]["sparsity"] - 0.8) < 1e-3
    for (_, module), mask in zip(prunable_layers(model), masks):
        assert torch.equal(module.weight_mask, mask)
        assert (module.weight[mask == 0] == 0).all()
    assert _accuracy(model, trained.data.val) == pytest.approx(history[-1]["val_accuracy"])


@pytest.mark.parametrize("spec", ["mlp:128,64", "mlp:64,32,16:bn:act=gelu:dropout=0.1"])
def test_dead_units_go_and_the_outputs_stay(trained, spec):
    torch.manual_seed(0)
    model = fit(spec, "digits", epochs=5, seed=0).model if spec != "mlp:128,64" else copy.deepcopy(trained.model)
    pruned = make_permanent(prune(model, 0.95, "global")).eval()
    # a unit with no incoming weight is a constant: its BatchNorm / activation output moves into the next bias
    zero_in = [(layer.weight == 0).all(dim=1).sum() for layer in pruned.modules() if isinstance(layer, nn.Linear)]
    assert sum(zero_in[:-1]) > 0
    smaller, removed, kept = drop_dead_units(pruned)
    X = trained.data.test.X
    assert removed > 0 and count_params(smaller) < count_params(pruned)
    assert torch.allclose(smaller(X), pruned(X), atol=2e-6)  # measured <= 7.2e-7 on mlp:300,100
    assert torch.equal(smaller(X).argmax(1), pruned(X).argmax(1))
    for name, weight in smaller.state_dict().items():  # the index maps select exactly the weights kept
        if name in kept:
            rows, cols = kept[name]
            original = pruned.state_dict()[name]
            original = original[rows] if rows is not None else original
            assert torch.equal(weight, original[:, cols] if cols is not None else original)
    rebuilt = build_model(structured_spec(spec, smaller), in_features=64, n_outputs=10)
    rebuilt.load_state_dict(smaller.state_dict())  # strict: the spec string describes the smaller network
    assert (pruned.training, smaller.training) == (False, False)


def test_drop_dead_units_leaves_what_it_cannot_shrink_alone(mlp):
    assert drop_dead_units(prune(copy.deepcopy(mlp), 0.9, "global"))[1] == 0  # masks not made permanent yet
    assert drop_dead_units(mlp)[1] == 0  # dense: nothing dead
    cnn = _build("cnn:4,8")
    assert drop_dead_units(cnn) == (cnn, 0, {})
    everything = _build("mlp:16,16")
    with torch.no_grad():
        for layer in everything.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.zero_()
    smaller, _, _ = drop_dead_units(everything)
    assert structured_spec("mlp:16,16", smaller).hidden == (1, 1)  # every layer keeps a unit
    assert torch.allclose(smaller(torch.randn(5, 64)), everything(torch.randn(5, 64)))


def test_cubic_schedule():
    assert cubic_schedule(0.9, 3) == pytest.approx([0.9 - 0.9 * (2 / 3) ** 3, 0.9 - 0.9 * (1 / 3) ** 3, 0.9])
    assert cubic_schedule(0.9, 3)[-1] == 0.9 and cubic_schedule(0.5, 1) == [0.5]
    assert cubic_schedule(0.8, 4, initial=0.2)[-1] == 0.8


def test_prune_gradually_follows_the_schedule_to_the_target(mlp, trained):
    model, history = prune_gradually(mlp, trained.data, 0.8, "magnitude", epochs=4, seed=0)
    # the sparsity rises over the first two thirds of the epochs (3 of 4), the last epoch recovers at 0.8
    assert [row["sparsity"] for row in history] == pytest.approx([*cubic_schedule(0.8, 3), 0.8], abs=1e-3)
    rows = sparsity_table(model)
    assert all(row["zeros"] == round(0.8 * row["params"]) for row in rows[:-1])
    assert {"epoch", "sparsity", "train_loss", "val_loss", "val_accuracy"} <= set(history[-1])
    assert history[-1]["val_accuracy"] >= 0.90
    for _, module in prunable_layers(model):  # earlier masks survive the later, larger ones
        assert (module.weight[module.weight_mask == 0] == 0).all()
    model, history = prune_gradually(_build("mlp:128,64"), trained.data, 0.0, "2:4", epochs=2, seed=0)
    assert [row["sparsity"] for row in history] == [0.5, 0.5]  # 2:4: pruned once, then fine-tuned


def test_make_permanent_removes_masks_and_keeps_the_zeros(mlp):
    prune(mlp, 0.6, "global")
    before = [r["zeros"] for r in sparsity_table(mlp)]
    assert make_permanent(mlp) is mlp
    for _, module in prunable_layers(mlp):
        assert not hasattr(module, "weight_orig") and not hasattr(module, "weight_mask")
        assert isinstance(module.weight, nn.Parameter) and not module._forward_pre_hooks
    assert [r["zeros"] for r in sparsity_table(mlp)] == before
    assert "weight_mask" not in " ".join(mlp.state_dict())


def test_bad_input_is_one_usage_error(mlp, trained):
    for amount in (1.0, -0.1, 1.2, float("nan"), "half"):
        with pytest.raises(UsageError, match=r"prune= must be in \[0, 1\); got"):
            prune(mlp, amount)
    with pytest.raises(UsageError, match="did you mean 'magnitude'.*choices: 2:4, global, magnitude, structured"):
        prune(mlp, 0.5, "magnitud")
    with pytest.raises(UsageError, match="prune=0.995 would remove every unit of layer blocks.1.0; use a smaller"):
        prune(mlp, 0.995, "structured")
    with pytest.raises(UsageError, match="structured pruning is one-shot"):
        prune_gradually(mlp, trained.data, 0.5, "structured", epochs=2)
    with pytest.raises(UsageError, match="no Linear or Conv layer"):
        prune(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(UsageError, match=r"structured pruning of Linear traces it on a batch: give example_inputs="):
        prune(nn.Linear(4, 2), 0.5, "structured")
    with pytest.raises(UsageError, match="Linear has no hidden channels or units to prune"):
        prune(nn.Linear(4, 2), 0.5, "structured", example_inputs=torch.randn(2, 4))
    with pytest.raises(UsageError, match="needs the mlp or cnn spec"):
        structured_spec("cnn:8,16", mlp)
    assert sparsity_table(mlp)[-1]["zeros"] == 0  # nothing was touched by the failed calls
