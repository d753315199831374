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




def test_load_dataset_prepares_and_checks_the_length(tmp_path):
    corpus = tiny_corpus(tmp_path)
    meta, splits = load_dataset(str(corpus), "char", tmp_path / "data", block_size=16)
    assert meta["dataset"] == "tiny" and set(splits) == {"train", "val"}
    assert len(splits["train"]) == meta["train_tokens"] and splits["val"].dtype == np.uint16
    with pytest.raises(ValueError, match=r"val split .* 2000 tokens but block_size=4096 needs at least 4097"):
        load_dataset(str(corpus), "char", tmp_path / "data", block_size=4096)
