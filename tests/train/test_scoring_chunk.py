"""scoring_chunk: rows per scoring forward pass sized by the network's activations (about 16 MB), 64..8192 rows."""

import torch
from torch import nn

import nnopt
from nnopt.train import scoring_chunk
from nnopt.train._batches import TensorSource
from nnopt.train._chunk import CHUNK_BYTES
from nnopt.train._importance import forward_of


def wide_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128 * 64, 10))


def test_a_wide_cnn_gets_a_small_chunk_and_a_tiny_mlp_the_largest():
    net = wide_cnn()
    # per 8 x 8 row: the input (256 B), five 128-channel maps (conv, norm, relu, conv, relu) and the flattened one
    # (6 x 32 KB), 10 logits (40 B)
    per_row = 64 * 4 + 6 * 128 * 64 * 4 + 10 * 4
    assert scoring_chunk(net, (1, 8, 8)) == CHUNK_BYTES // per_row == 85
    assert scoring_chunk(nnopt.build_model("mlp:16", in_features=64, n_outputs=10), (64,)) == 8192
    huge = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())  # 2 x 256 KB a row: the floor
    assert scoring_chunk(huge, (3, 32, 32)) == 64


def test_the_probe_changes_no_mode_and_no_running_statistics():
    net = wide_cnn()
    net.train()
    net[1].eval()  # a frozen batch normalization stays frozen
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scoring_chunk(net, (1, 8, 8))
    assert [m.training for m in net.modules()] == [True, True, False, True, True, True, True, True]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_scores_in_chunks_equal_scores_in_one_pass():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.data.reshape(-1, 1, 8, 8) / 16, dtype=torch.float32)
    Y = torch.tensor(digits.target)
    net = wide_cnn().eval()
    with torch.inference_mode():
        whole = net(X)  # 1,797 rows in one pass
        chunked, targets = TensorSource(X, Y).outputs(net)  # 22 passes of 85 rows
        by_importance = forward_of(net)(X)
    assert torch.equal(targets, Y)
    # the same scores: equal bit for bit on the 2-core test machine; another CPU's kernels may round a chunk of 85
    # rows and one of 1,797 differently in the last bits
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    assert torch.equal(chunked.argmax(1), whole.argmax(1))
    assert torch.equal(chunked, by_importance)  # training and importance cut the rows alike: bit for bit
