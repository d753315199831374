"""Batches of a prepared dataset: random training windows, fixed evaluation windows, and the dataset
loaded with its length checked.

Reproducibility: a batch depends only on its seed, so a batch stream is a pure function of
(data_seed, iter, micro-step) and a resumed run sees exactly what an uninterrupted one would. Validation
uses one fixed set of windows (EVAL_SEED), identical in every eval of every run. With randomized positions
(`position_range` M) a batch is (x, y, positions), the positions drawn from the same seeded stream after the
windows, so the windows are those of a run without them.
"""

from pathlib import Path

import numpy as np
import torch

from data.prepare import DATA_DIR, load_splits, prepare
from runtime import to_device as to_device_tensor

EVAL_SEED = 1234  # fixed validation (and train-estimate) batches, shared by every run


def windows_at(data: np.ndarray, block_size: int, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of block_size + 1 tokens at `starts` as (x, y) int64 CPU tensors, (B, T) each."""
    buf = torch.from_numpy(data[starts[:, None] + np.arange(block_size + 1)].astype(np.int64))  # (B, T+1)
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # inputs, next-token targets: (B, T) each


def random_positions(rng: np.random.Generator, batch_size: int, T: int, M: int) -> torch.Tensor:
    """Randomized positions (Ruoss et al. 2023): for each sequence, T distinct positions drawn uniformly
    from [0, M) and sorted; (B, T) int64 on the CPU."""
    chosen = np.argsort(rng.random((batch_size, M)), axis=1)[:, :T]  # a uniform T-subset per row
    return torch.from_numpy(np.sort(chosen, axis=1))


def get_batch(data: np.ndarray, block_size: int, batch_size: int, seed, position_range: int | None = None):
    """Random windows (x, y) of int64 token ids, (B, T) each on the CPU, y shifted by one, and with
    `position_range` M their randomized positions: (x, y, positions). Everything depends only on `seed`
    (an int or a tuple of ints for np.random.default_rng)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    return with_positions(windows_at(data, block_size, starts), rng, position_range)


def trimmed(batch: tuple) -> tuple:
    """A batch without its trailing Nones: (x, y, None, None) -> (x, y); (x, y, None, abacus) stays."""
    while batch[-1] is None:
        batch = batch[:-1]
    return batch


def by_length(batch: tuple, groups: int) -> list[tuple[tuple, torch.Tensor | float]]:
    """A right-padded batch (x, y, *ids; None ids kept) as up to `groups` groups of rows of similar length,
    each trimmed to its longest row, with its share of the batch's targets (y != -1). A row ends at its last
    target, as a task's sequence does. The groups' mean losses weighted by their shares add up to the
    batch's, and so do their gradients: the same step with fewer padded positions. groups=1: the batch."""
    if groups == 1:
        return [(batch, 1.0)]
    targets = batch[1] != -1  # (B, T)
    ends = torch.where(targets, torch.arange(1, targets.size(1) + 1, device=targets.device), 0).amax(1)
    out, total = [], targets.sum()
    chunks = torch.argsort(ends, stable=True).chunk(groups)
    lengths = torch.stack([ends[rows].max() for rows in chunks]).tolist()  # one device sync, not one a group
    for rows, length in zip(chunks, lengths, strict=True):
        if length > 0:  # rows without targets add nothing
            part = tuple(None if t is None else t[rows, :length] for t in batch)
            out.append((part, targets[rows].sum() / total))
    return out


def to_device(batch: tuple, device: str) -> tuple:
    """A batch's tensors on `device` (runtime.to_device), its Nones as they are."""
    return tuple(t if t is None else to_device_tensor(t, device) for t in batch)


def with_positions(batch: tuple, rng: np.random.Generator, M: int | None) -> tuple:
    """batch (x, y), or with randomized positions from [0, M) drawn from `rng`: (x, y, positions)."""
    return batch if M is None else (*batch, random_positions(rng, *batch[0].shape, M))


def fixed_eval_batches(
    data: np.ndarray,
    block_size: int,
    batch_size: int,
    n_batches: int,
    seed: int,
    position_range: int | None = None,
) -> list[tuple]:
    """`n_batches` CPU batches as get_batch makes them, (batch_size, block_size) each, the same for the same
    arguments."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        batches.append(with_positions(windows_at(data, block_size, starts), rng, position_range))
    return batches


def load_dataset(
    dataset: str, tokenizer: str, data_dir: str | Path | None, block_size: int
) -> tuple[dict, dict[str, np.memmap]]:
    """Prepare the dataset on first use and return (meta, {"train", "val": memory-mapped ids}); a split
    shorter than one window of block_size + 1 tokens is a ValueError naming the fix."""
    meta, splits = load_splits(prepare(dataset, tokenizer, data_dir or DATA_DIR))
    for split, data in splits.items():
        if len(data) < block_size + 1:
            raise ValueError(
                f"the {split} split of dataset {dataset!r} has {len(data)} tokens but block_size="
                f"{block_size} needs at least {block_size + 1}; lower --block_size or use a longer text"
            )
    return meta, splits
