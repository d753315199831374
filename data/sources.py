"""What a run trains on, behind one interface: a prepared text corpus or a generated task (data/tasks.py).
train.py draws its batches from a source and never asks which kind it is.

Both give: `meta` (what the checkpoint records: tokenizer state, vocab_size, the source's digest),
`block_size` (the model's context: the corpus run's own, or a task's longest evaluated sequence),
`train_len` (the length of training sequences), `batch(seed, batch_size, M)` (a pure function of the
seed, with randomized positions when M is set), `eval_batches(split, ...)` (fixed, the same in every eval of
every run) and `sample_prompt()` (what the end-of-training sample starts from).
"""

from __future__ import annotations  # TrainConfig is only imported for type checkers: data stays below it

from typing import TYPE_CHECKING

import numpy as np

from data import batches
from data.tasks import encode_batch, get_task, sample_problems, task_meta

if TYPE_CHECKING:
    from training import TrainConfig

SPLITS = ("train", "val")


class TextSource:
    """A prepared corpus: random windows of block_size tokens (data/batches.py), or with order="epochs" the
    non-overlapping windows, each once per epoch in a shuffled order (the book's DataLoader with stride =
    block_size, shuffle and drop_last); `micro_steps` batches make one iteration."""

    def __init__(self, meta: dict, splits: dict, block_size: int, order="random", micro_steps: int = 1):
        self.meta, self.splits, self.order, self.micro_steps = meta, splits, order, micro_steps
        self.block_size = self.train_len = block_size

    def batch(self, seed, batch_size: int, position_range: int | None = None) -> tuple:
        data = self.splits["train"]
        if self.order == "random":
            return batches.get_batch(data, self.block_size, batch_size, seed, position_range)
        data_seed, it, micro = seed  # the k-th batch of the run, batch j of epoch e
        n_windows = (len(data) - 1) // self.block_size
        per_epoch = n_windows // batch_size
        if per_epoch < 1:
            raise ValueError(f"batch_order=epochs: {n_windows} windows of block_size+1 tokens, < a batch")
        epoch, j = divmod(it * self.micro_steps + micro, per_epoch)
        rng = np.random.default_rng((data_seed, epoch))
        starts = rng.permutation(n_windows)[j * batch_size : (j + 1) * batch_size] * self.block_size
        return batches.with_positions(batches.windows_at(data, self.block_size, starts), rng, position_range)

    def eval_batches(self, split: str, batch_size: int, n_batches: int, position_range=None) -> list[tuple]:
        data = self.splits[split]
        return batches.fixed_eval_batches(
            data, self.block_size, batch_size, n_batches, batches.EVAL_SEED, position_range
        )

    def sample_prompt(self) -> str:
        return default_prompt(self.meta)


class TaskSource:
    """A task: each training sequence is a fresh problem of a size drawn from 1 .. n_train, right-padded to
    the longest training sequence; the model's block_size fits the problems of size n_eval."""

    def __init__(self, name: str, n_train: int, n_eval: int, plain: bool = False):
        self.task, self.n_train, self.n_eval = get_task(name, plain), n_train, n_eval
        self.meta = task_meta(self.task, n_train, n_eval)
        self.train_len = sum(self.task.lengths(n_train)) - 1  # inputs: the sequence but its last token
        self.block_size = sum(self.task.lengths(n_eval)) - 1

    def _batch(self, rng: np.random.Generator, batch_size: int, position_range) -> tuple:
        problems = sample_problems(self.task, rng, batch_size, self.n_train)
        return batches.with_positions(encode_batch(self.task, problems, self.train_len), rng, position_range)

    def batch(self, seed, batch_size: int, position_range: int | None = None) -> tuple:
        return self._batch(np.random.default_rng(seed), batch_size, position_range)

    def eval_batches(self, split: str, batch_size: int, n_batches: int, position_range=None) -> list[tuple]:
        rng = np.random.default_rng((batches.EVAL_SEED, SPLITS.index(split)))  # fresh problems per split
        return [self._batch(rng, batch_size, position_range) for _ in range(n_batches)]

    def sample_prompt(self) -> str:
        return default_prompt(self.meta)


def default_prompt(meta: dict) -> str:
    """What a sample of a run starts from, by its checkpoint's meta: for a task, the prompt of one problem
    of the largest trained size; for text a newline when the corpus has one, else its first character."""
    if meta["dataset"].startswith("task:"):
        task = get_task(meta["dataset"].removeprefix("task:"), meta.get("plain", False))
        return task.problem(np.random.default_rng(0), meta["n_train"])[0]
    chars = meta.get("chars")
    return "\n" if chars is None or "\n" in chars else chars[0]


def load_source(cfg: TrainConfig, block_size: int) -> TextSource | TaskSource:
    """The source of `cfg.dataset`: a task (dataset=task:NAME), or a corpus prepared in cfg.data_dir on
    first use whose splits must hold a window of block_size + 1 tokens."""
    sizes = cfg.task_sizes()
    if sizes:
        (name, *more) = cfg.task_names()
        if more:
            raise ValueError(
                f"a run trains on one task, dataset={cfg.dataset!r} lists several (compare.py "
                "runs a grid per task)"
            )
        return TaskSource(name, *sizes, plain=cfg.task_plain)
    meta, splits = batches.load_dataset(cfg.dataset, cfg.tokenizer, cfg.data_dir, block_size)
    return TextSource(meta, splits, block_size, cfg.batch_order, cfg.gradient_accumulation_steps)
