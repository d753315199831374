"""data/batches.py: fixed eval batches, training batches as a pure function of the seed, the length check."""

import numpy as np
import pytest
import torch
from helpers import tiny_corpus

from data.batches import by_length, fixed_eval_batches, get_batch, load_dataset


def test_eval_batches_are_fixed_and_shifted():
    data = np.arange(1000, dtype=np.uint16)
    a = fixed_eval_batches(data, 16, 4, 3, seed=7)
    b = fixed_eval_batches(data, 16, 4, 3, seed=7)
    assert len(a) == 3
    for (x, y), (x2, y2) in zip(a, b, strict=True):
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64 and x.device.type == "cpu"
        torch.testing.assert_close(x, x2)
        torch.testing.assert_close(y, y2)
        torch.testing.assert_close(y[:, :-1], x[:, 1:])
        torch.testing.assert_close(y[:, -1], x[:, -1] + 1)  # data[i] == i
    assert not torch.equal(a[0][0], fixed_eval_batches(data, 16, 4, 1, seed=8)[0][0])


def test_batches_are_a_pure_function_of_the_seed():
    data = np.arange(50, dtype=np.uint16)
    x, y = get_batch(data, 49, 8, (0, 5, 1))  # the only windows that fit: starts 0
    assert x.shape == (8, 49) and int(y.max()) == 49
    torch.testing.assert_close(get_batch(data, 4, 8, (3, 7, 0)), get_batch(data, 4, 8, (3, 7, 0)))
    assert not torch.equal(get_batch(data, 4, 8, (3, 7, 0))[0], get_batch(data, 4, 8, (3, 8, 0))[0])


def test_randomized_positions_are_sorted_distinct_per_sequence_and_seeded():
    data = np.arange(1000, dtype=np.uint16)
    x, y, pos = get_batch(data, 16, 64, (3, 7, 0), position_range=40)
    torch.testing.assert_close((x, y), get_batch(data, 16, 64, (3, 7, 0)))  # the same windows as without
    assert pos.shape == (64, 16) and pos.dtype == torch.int64 and pos.min() >= 0 and pos.max() < 40
    assert (pos.diff(dim=1) > 0).all()  # sorted, no repeats
    assert len({tuple(row.tolist()) for row in pos}) > 60  # a different draw per sequence
    assert torch.equal(pos, get_batch(data, 16, 64, (3, 7, 0), position_range=40)[2])  # reproducible
    assert not torch.equal(pos, get_batch(data, 16, 64, (3, 8, 0), position_range=40)[2])
    counts = torch.bincount(pos.flatten(), minlength=40).float()  # uniform over [0, M): 64 * 16 / 40 each
    assert counts.min() > 10 and counts.max() < 45
    evals = fixed_eval_batches(data, 16, 4, 2, seed=7, position_range=40)
    assert all(len(b) == 3 for b in evals)
    assert torch.equal(evals[1][2], fixed_eval_batches(data, 16, 4, 2, seed=7, position_range=40)[1][2])


def test_load_dataset_prepares_and_checks_the_length(tmp_path):
    corpus = tiny_corpus(tmp_path)
    meta, splits = load_dataset(str(corpus), "char", tmp_path / "data", block_size=16)
    assert meta["dataset"].startswith("tiny-") and set(splits) == {"train", "val"}
    assert len(splits["train"]) == meta["train_tokens"] and splits["val"].dtype == np.uint16
    with pytest.raises(ValueError, match=r"val split .* 2000 tokens but block_size=4096 needs at least 4097"):
        load_dataset(str(corpus), "char", tmp_path / "data", block_size=4096)


def test_by_length_groups_rows_trims_padding_and_shares_the_targets():
    """Rows sorted by where their targets end (stable), cut into groups, each trimmed to its longest row;
    the shares are each group's fraction of the targets; None ids stay None; one group is the batch."""
    ends = torch.tensor([5, 2, 7, 2, 3, 7])
    x = torch.arange(6 * 8).view(6, 8)
    y = torch.where(torch.arange(8) < ends[:, None], x % 5, -1)
    y[:, 0] = -1  # a prompt: targets start later, and the row still ends at its last one
    ids = x + 100
    batch = (x, y, None, ids)
    assert by_length(batch, 1) == [(batch, 1.0)]
    parts = by_length(batch, 3)
    rows = [(part[0][:, 0] // 8).tolist() for part, _ in parts]
    assert rows == [[1, 3], [4, 0], [2, 5]]
    assert [part[0].shape[1] for part, _ in parts] == [2, 5, 7]
    assert all(part[2] is None and torch.equal(part[3], part[0] + 100) for part, _ in parts)
    assert [float(share) for _, share in parts] == pytest.approx([2 / 20, 6 / 20, 12 / 20])
    assert sum(int((part[1] != -1).sum()) for part, _ in parts) == 20  # nothing but padding was cut
