import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x = (x - x.mean(axis=0)) / std
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def make_mlp(seed: int = 0, sizes: tuple[int, ...] = (64, 32, 10)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)
