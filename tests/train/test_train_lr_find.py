"""The LR range test suggests a learning rate close to the best of a grid."""

import pytest

import nnopt
from nnopt.errors import UsageError
from nnopt.train import find_lr, suggest_lr

GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


@pytest.mark.parametrize("data, optimizer, metric", [("digits", "adam", "accuracy"), ("digits", "sgd", "accuracy"),
                                                    ("diabetes", "adam", "r2")])
def test_suggestion_within_10x_of_the_best_grid_value(data, optimizer, metric):
    # diabetes: a small regression table (4 batches an epoch), where a pointwise slope picked the smallest lr tried
    result = find_lr("mlp:128,64", data, optimizer=optimizer, seed=0)
    scores = {lr: nnopt.fit("mlp:128,64", data, optimizer=optimizer, lr=lr, epochs=8, seed=0)
              .metrics["val"][metric] for lr in GRID}
    best = max(scores, key=scores.get)
    assert best / 10 <= result.suggested <= best * 10, (result.suggested, scores)
    assert result.lrs == sorted(result.lrs) and len(result.lrs) == len(result.losses) == len(result.smoothed)


def test_stops_when_the_loss_explodes_and_leaves_the_model_alone():
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # digits come as (N, 1, 8, 8) images
    before = [p.detach().clone() for p in net.parameters()]
    result = find_lr(net, "digits", optimizer="sgd", max_lr=1e4, steps=150)
    assert len(result.lrs) < 150  # stopped at 4x the minimum loss
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_suggest_lr_picks_the_steepest_drop():
    lrs = [10 ** (k / 4) for k in range(-20, 1)]
    loss = [2.0] * 8 + [1.9, 1.5, 0.8, 0.5, 0.4, 0.35, 0.3, 0.3, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert suggest_lr(lrs, loss) == pytest.approx(lrs[9])


def test_bad_arguments():
    with pytest.raises(UsageError, match="0 < min_lr < max_lr"):
        find_lr("linear", "iris", min_lr=1.0, max_lr=0.1)
    with pytest.raises(UsageError, match="steps= must be an integer >= 10"):
        find_lr("linear", "iris", steps=3)
