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


def test_a_lone_last_row_joins_the_batch_before():
    """Batch normalization cannot train on one row: 91 rows at batch 10 give 9 batches, the last of 11 rows."""
    import numpy as np

    import nnopt
    from nnopt.data import batch_count

    X, y = torch.arange(91.0).reshape(91, 1), torch.arange(91)
    sizes = [len(xb) for xb, _ in epoch_batches(X, y, 10, torch.Generator().manual_seed(0))]
    assert sizes == [10] * 8 + [11] and batch_count(91, 10) == 9
    rows = torch.cat([xb for xb, _ in epoch_batches(X, y, 10, torch.Generator().manual_seed(1))])
    assert sorted(rows.reshape(-1).tolist()) == list(range(91))
    assert batch_count(90, 10) == 9 and batch_count(11, 10) == 1 and batch_count(1, 10) == 1 and batch_count(5, 1) == 5
    rng = np.random.default_rng(0)
    X = rng.normal(size=(130, 4)).astype(np.float32)
    result = nnopt.fit("mlp:8:bn", (X, (X[:, 0] > 0).astype(int)), batch_size=10, epochs=2)  # 91 train rows
    assert len(result.data.train) == 91 and result.metrics["test"]["accuracy"] > 0.5
