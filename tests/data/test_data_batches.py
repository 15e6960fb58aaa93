import pytest
import torch

from nnopt.data import epoch_batches
from nnopt.errors import UsageError


def rows(n=103, d=3):
    X = torch.arange(n * d, dtype=torch.float32).reshape(n, d)
    return X, torch.arange(n)


@pytest.mark.parametrize("batch_size", [1, 10, 32, 103, 500])
def test_every_row_exactly_once_per_epoch(batch_size):
    X, y = rows()
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        batches = list(epoch_batches(X, y, batch_size, gen))
        assert [len(b[1]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        assert len(batches) == -(-103 // batch_size) and 0 < len(batches[-1][1]) <= batch_size
        seen = torch.cat([b[1] for b in batches])
        assert torch.equal(seen.sort().values, y)
        for xb, yb in batches:  # X and y rows stay paired
            assert torch.equal(xb[:, 0], yb.float() * 3)


def test_shuffled_order_is_seeded_and_changes_between_epochs():
    X, y = rows()
    order = lambda gen: torch.cat([b[1] for b in epoch_batches(X, y, 16, gen)])  # noqa: E731
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first_a, first_b = order(a), order(b)
    assert torch.equal(first_a, first_b) and not torch.equal(first_a, y)
    assert torch.equal(order(a), order(b)) and not torch.equal(order(a), first_a)
    assert not torch.equal(order(torch.Generator().manual_seed(4)), first_a)


def test_without_generator_rows_come_in_order_as_views():
    X, y = rows()
    batches = list(epoch_batches(X, y, 25))
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert batches[1][0].data_ptr() == X[25].data_ptr()  # slices are views, no copy
    assert len(list(epoch_batches(X[:0], y[:0], 4))) == 0


def test_batches_are_contiguous_views_of_one_gathered_copy():
    X, y = rows()
    batches = list(epoch_batches(X, y, 10, torch.Generator().manual_seed(0)))
    assert all(xb.is_contiguous() for xb, _ in batches)
    assert batches[1][0].data_ptr() == batches[0][0].data_ptr() + 10 * 3 * 4


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(batch_size):
    X, y = rows()
    with pytest.raises(UsageError, match="batch_size= must be an integer >= 1"):
        epoch_batches(X, y, batch_size, None)


def test_length_mismatch():
    X, y = rows()
    with pytest.raises(UsageError, match="X has 103 rows but y has 102"):
        epoch_batches(X, y[:-1], 8)
