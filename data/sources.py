"""What a run trains on, behind one interface: a prepared text corpus or a generated task (data/tasks.py).
train.py draws its batches from a source and never asks which kind it is.

Both give: `meta` (what the checkpoint records: tokenizer state, vocab_size, the source's digest),
`block_size` (the model's context: the corpus run's own, or a task's longest evaluated sequence),
`train_len` (the length of training sequences), `batch(seed, batch_size)` (a pure function of the seed:
(x, y), and the ids the model takes, `(x, y, positions[, abacus])`, so that a batch is `model(*batch)`),
`eval_batches(split, ...)` (fixed, the same in every eval of every run) and `sample_prompt()` (what the
end-of-training sample starts from).
"""

from __future__ import annotations  # TrainConfig is only imported for type checkers: data stays below it

from typing import TYPE_CHECKING

import numpy as np
import torch

from data import batches
from data.tasks import OPTIONS, Task, encode_batch, get_task, sample_problems, structured_ids, task_meta
from model import generate_text
from positional import POS_ENCODINGS

if TYPE_CHECKING:
    from model import ModelConfig
    from training import TrainConfig

SPLITS = ("train", "val")


def check_range(position_range: int | None, block_size: int) -> int | None:
    """Randomized positions need room: M > the longest sequence the model sees (block_size)."""
    if position_range is not None and position_range <= block_size:
        raise ValueError(
            f"random_positions (M, positions drawn from [0, M)) must be > block_size={block_size}, got "
            f"{position_range}: use --random_positions={4 * block_size}"
        )
    return position_range


class TextSource:
    """A prepared corpus: random windows of block_size tokens (data/batches.py), or with order="epochs" the
    non-overlapping windows, each once per epoch in a shuffled order (the book's DataLoader with stride =
    block_size, shuffle and drop_last); `micro_steps` batches make one iteration. With `position_range` M
    (the model's random_positions) a batch carries sorted random positions from [0, M)."""

    def __init__(
        self,
        meta: dict,
        splits: dict,
        block_size: int,
        order="random",
        micro_steps: int = 1,
        position_range: int | None = None,
    ):
        self.meta, self.splits, self.order, self.micro_steps = meta, splits, order, micro_steps
        self.block_size = self.train_len = block_size
        self.M = check_range(position_range, block_size)

    def batch(self, seed, batch_size: int) -> tuple:
        data = self.splits["train"]
        if self.order == "random":
            return batches.get_batch(data, self.block_size, batch_size, seed, self.M)
        data_seed, it, micro = seed  # the k-th batch of the run, batch j of epoch e
        n_windows = (len(data) - 1) // self.block_size
        per_epoch = n_windows // batch_size
        if per_epoch < 1:
            raise ValueError(f"batch_order=epochs: {n_windows} windows of block_size+1 tokens, < a batch")
        epoch, j = divmod(it * self.micro_steps + micro, per_epoch)
        rng = np.random.default_rng((data_seed, epoch))
        starts = rng.permutation(n_windows)[j * batch_size : (j + 1) * batch_size] * self.block_size
        return batches.with_positions(batches.windows_at(data, self.block_size, starts), rng, self.M)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> list[tuple]:
        data = self.splits[split]
        return batches.fixed_eval_batches(
            data, self.block_size, batch_size, n_batches, batches.EVAL_SEED, self.M
        )

    def sample_prompt(self) -> str:
        return default_prompt(self.meta)

    def sample(self, model, tok, prompt: str, max_new_tokens: int, temperature=0.8, top_k=200, num_samples=1):
        """`num_samples` continuations of `prompt` (model.generate_text)."""
        return generate_text(model, tok, prompt, max_new_tokens, temperature, top_k, num_samples)


class TaskSource:
    """A task: each training sequence is a fresh problem of a size drawn from 1 .. n_train, right-padded to
    the longest training sequence; the model's block_size fits the problems of size n_eval. The ids a batch
    carries besides (x, y): position ids, sorted random ones from [0, M) (`position_range`, Ruoss et al.)
    or the task's coupled ids (`positions="coupled"`, Cho et al.: start 1 at evaluation, drawn from
    1 .. M - n - 1 per problem in training when M is set), and Abacus ids when the model has an Abacus
    table of `abacus` rows (McLeish et al.: offset 0 at evaluation, drawn from 0 .. abacus - n - 2 per
    problem in training)."""

    def __init__(
        self,
        task: Task,
        n_train: int,
        n_eval: int,
        positions: str = "sequential",
        position_range: int | None = None,
        abacus: int | None = None,
    ):
        self.task, self.n_train, self.n_eval = task, n_train, n_eval
        self.positions, self.M, self.abacus = positions, position_range, abacus
        self.meta = task_meta(self.task, n_train, n_eval) | {"positions": positions}
        self.train_len = sum(self.task.lengths(n_train)) - 1  # inputs: the sequence but its last token
        self.block_size = sum(self.task.lengths(n_eval)) - 1
        if positions == "sequential":
            check_range(position_range, self.block_size)
        elif position_range is not None and position_range < (top := self.top_id(n_eval)) + 2:
            raise ValueError(
                f"random_positions={position_range} must be >= {top + 2}: coupled ids of size "
                f"n_eval={n_eval} reach start + {top} from start 1"
            )
        if abacus is not None and abacus < (top := self.top_id(n_eval)) + 1:
            raise ValueError(
                f"abacus={abacus} rows cannot hold the ids of size n_eval={n_eval} (up to {top}): use "
                f"--abacus={2 * top} or more"
            )

    def top_id(self, n: int) -> int:
        """The largest id of a problem of size n from start (or offset) 0: 1 + its top significance (n, or
        n + 1 with the task's end marks)."""
        return 1 + max(self.task.significance(n))

    def ids(self, sizes: list[int], length: int, rng: np.random.Generator | None) -> tuple:
        """(positions, abacus) of problems of these sizes as x holds them ((B, length), 0 past a sequence),
        each None when the batch carries none; offsets drawn from `rng`, or evaluation's without one."""
        kinds = [  # (kind, used, the largest id allowed, the first id at evaluation)
            ("coupled", self.positions == "coupled", self.M and self.M - 1, 1),
            ("abacus", self.abacus is not None, self.abacus and self.abacus - 1, 0),
        ]
        out = []
        for kind, used, top, start in kinds:
            if not used:
                out.append(None)
                continue
            rows = np.zeros((len(sizes), length), dtype=np.int64)
            tops = {n: self.top_id(n) for n in set(sizes)}
            for row, n in enumerate(sizes):  # the largest id of size n is start + tops[n]
                first = start if rng is None or top is None else int(rng.integers(start, top - tops[n] + 1))
                seq = structured_ids(self.task, n, kind, first)[:length]
                rows[row, : len(seq)] = seq
            out.append(torch.from_numpy(rows))
        return tuple(out)

    def _batch(self, rng: np.random.Generator, batch_size: int) -> tuple:
        problems, sizes = sample_problems(self.task, rng, batch_size, self.n_train)
        x, y = encode_batch(self.task, problems, self.train_len)
        if self.positions == "sequential" and self.abacus is None:
            return batches.with_positions((x, y), rng, self.M)  # (x, y) or Ruoss et al.'s (x, y, positions)
        positions, abacus = self.ids(sizes, self.train_len, rng)
        if positions is None and self.M is not None:
            positions = batches.random_positions(rng, *x.shape, self.M)
        return batches.trimmed((x, y, positions, abacus))

    def batch(self, seed, batch_size: int) -> tuple:
        return self._batch(np.random.default_rng(seed), batch_size)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> list[tuple]:
        rng = np.random.default_rng((batches.EVAL_SEED, SPLITS.index(split)))  # fresh problems per split
        return [self._batch(rng, batch_size) for _ in range(n_batches)]

    def sample_prompt(self) -> str:
        return default_prompt(self.meta)

    def size_of(self, prompt: str) -> int:
        """The size n of a problem's prompt (ValueError, with an example, for a string that is none)."""
        n = next((n for n in range(1, self.block_size + 1) if self.task.lengths(n)[0] >= len(prompt)), None)
        if n is None or self.task.lengths(n)[0] != len(prompt):
            raise ValueError(
                f"{prompt!r} is not a task:{self.task.name} problem; a prompt is a problem such as "
                f"--prompt={self.sample_prompt()!r}"
            )
        return n

    def sample(self, model, tok, prompt: str, max_new_tokens: int, temperature=0.8, top_k=200, num_samples=1):
        """`num_samples` answers to the problem `prompt`, each with the prompt in front: at most the answer's
        length in tokens (and max_new_tokens), decoded with the ids the model trained with."""
        n = self.size_of(prompt)
        P, A = self.task.lengths(n)
        device = next(model.parameters()).device
        idx = torch.tensor([tok.encode(prompt)] * num_samples, device=device)
        ids = batches.to_device(self.ids([n] * num_samples, P + A, rng=None), str(device))
        out = model.generate(idx, min(A, max_new_tokens), temperature, top_k, *ids)
        return [tok.decode(row.tolist()) for row in out]


def default_prompt(meta: dict) -> str:
    """What a sample of a run starts from, by its checkpoint's meta: for a task, the prompt of one problem
    of the largest trained size; for text a newline when the corpus has one, else its first character."""
    if meta["dataset"].startswith("task:"):
        options = (meta.get(option, False) for option in OPTIONS)
        task = get_task(meta["dataset"].removeprefix("task:"), *options)
        return task.problem(np.random.default_rng(0), meta["n_train"])[0]
    chars = meta.get("chars")
    return "\n" if chars is None or "\n" in chars else chars[0]


def load_source(cfg: TrainConfig, model_cfg: ModelConfig) -> TextSource | TaskSource:
    """The source of `cfg.dataset` for a model of `model_cfg` (its block_size for a corpus, its
    random_positions and Abacus table): a task (dataset=task:NAME), or a corpus prepared in cfg.data_dir on
    first use whose splits must hold a window of block_size + 1 tokens. Ids the model's scheme cannot take
    are refused here, by name."""
    sizes = cfg.task_sizes()
    scheme = POS_ENCODINGS[model_cfg.pos_enc]
    if cfg.task_positions == "coupled" and scheme.position_ids != "any":
        raise ValueError(
            f"task_positions=coupled gives the digits of one significance one id, so ids go back and forth; "
            f"pos_enc={model_cfg.pos_enc!r} takes only ids that never decrease (its biases are causal "
            f"distances): use one of {sorted(n for n, c in POS_ENCODINGS.items() if c.position_ids == 'any')}"
        )
    if sizes:
        (name, *more) = cfg.task_names()
        if more:
            raise ValueError(
                f"a run trains on one task, dataset={cfg.dataset!r} lists several (compare.py runs a grid "
                "per task)"
            )
        task = cfg.task(name)
        if model_cfg.abacus is not None:
            task.significance(1)  # a task without digits refuses by name
        return TaskSource(task, *sizes, cfg.task_positions, model_cfg.random_positions, model_cfg.abacus)
    if model_cfg.abacus is not None:
        raise ValueError(
            "abacus ids are the digits' significance in a task's numbers; train on task:addition"
        )
    meta, splits = batches.load_dataset(cfg.dataset, cfg.tokenizer, cfg.data_dir, model_cfg.block_size)
    order, steps = cfg.batch_order, cfg.gradient_accumulation_steps
    return TextSource(meta, splits, model_cfg.block_size, order, steps, model_cfg.random_positions)


def sampler(cfg: TrainConfig, model_cfg: ModelConfig, meta: dict) -> TextSource | TaskSource:
    """What `sample` a run's samples come from, with nothing but its checkpoint: a task's source, or a
    corpus's without its splits (sampling reads none)."""
    if cfg.task_sizes():
        return load_source(cfg, model_cfg)
    return TextSource(meta, {}, model_cfg.block_size)
