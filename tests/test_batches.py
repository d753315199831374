"""data/batches.py: fixed eval batches, training batches as a pure function of the seed, the length check."""

import numpy as np
import pytest
import torch
from helpers import tiny_corpus

from data.batches import fixed_eval_batches, get_batch, load_dataset


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
