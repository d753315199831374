"""Length-generalization tasks: algorithmic problems generated on the fly from a seed, nothing downloaded.

A problem of size n is a prompt and an answer, both strings over the task's own characters (a char
tokenizer, recorded in the checkpoint like a corpus's); the sequence is prompt + answer, and the answer
ends with the end mark ".", so a model must also know where to stop:

    copy      n symbols, "=", the same n                       jbcaf=jbcaf.
    reverse   n symbols, "=", them reversed                    jbcaf=facbj.
    sort      n symbols, "=", them sorted                      jbcaf=abcfj.
    addition  two n-digit numbers (zero-padded), "=", the n+1 digits of the sum, least significant first
              (Lee et al. 2023, Zhou et al. 2024: each digit then depends only on digits already written
              and a carry; `plain=True` writes them most significant first)   042+785=7280.
    recall    n key-value pairs (distinct keys a-z, digit values), "?", a key, "=", its value   a3q7c1?q=7.
    passkey   n filler letters with "#" and a 5-digit passkey planted at a random depth, then "?=" and the
              passkey (Mohtashami & Jaggi 2023, at character level)   kzq#40213ubw?=40213.

Training loss is on answer tokens only (targets -1 elsewhere; the model already ignores -1). A batch of
mixed n is right-padded with "_" after each sequence: in a causal model nothing after a token changes its
prediction, so padding never touches a scored token (tests/test_tasks.py checks it).
"""

import hashlib
import json

import numpy as np
import torch

LETTERS, DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
PAD, END = "_", "."


class Task:
    """A task: its characters, the largest n it can pose (None: any), and its problems."""

    name: str
    symbols: str  # besides PAD and END
    max_n: int | None = None

    def __init__(self, plain: bool = False):
        self.plain = plain
        self.chars = sorted(set(PAD + END + self.symbols))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    def problem(self, rng: np.random.Generator, n: int) -> tuple[str, str]:
        """(prompt, answer) of size n; the answer ends with END."""
        raise NotImplementedError

    def lengths(self, n: int) -> tuple[int, int]:
        """(prompt, answer) lengths at size n, the same for every problem of that size."""
        prompt, answer = self.problem(np.random.default_rng(0), n)
        return len(prompt), len(answer)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]


class Copy(Task):
    name, symbols = "copy", "abcdefghij="

    def problem(self, rng, n):
        x = "".join(rng.choice(list(LETTERS[:10]), size=n))
        return x + "=", self.transform(x) + END

    def transform(self, x: str) -> str:
        return x


class Reverse(Copy):
    name = "reverse"

    def transform(self, x):
        return x[::-1]


class Sort(Copy):
    name = "sort"

    def transform(self, x):
        return "".join(sorted(x))


class Addition(Task):
    name, symbols = "addition", DIGITS + "+="

    def problem(self, rng, n):
        a, b = ("".join(rng.choice(list(DIGITS), size=n)) for _ in range(2))  # uniform in [0, 10^n), padded
        total = str(int(a) + int(b)).zfill(n + 1)
        return f"{a}+{b}=", (total if self.plain else total[::-1]) + END


class Recall(Task):
    name, symbols, max_n = "recall", LETTERS + DIGITS + "?=", len(LETTERS)

    def problem(self, rng, n):
        keys = rng.permutation(list(LETTERS))[:n]
        values = rng.choice(list(DIGITS), size=n)
        query = int(rng.integers(0, n))
        pairs = "".join(k + v for k, v in zip(keys, values, strict=True))
        return f"{pairs}?{keys[query]}=", values[query] + END


class Passkey(Task):
    name, symbols = "passkey", LETTERS + DIGITS + "#?="

    def problem(self, rng, n):
        filler = "".join(rng.choice(list(LETTERS), size=n))
        key = "".join(rng.choice(list(DIGITS), size=5))
        depth = int(rng.integers(0, n + 1))
        return f"{filler[:depth]}#{key}{filler[depth:]}?=", key + END


TASKS = {cls.name: cls for cls in (Copy, Reverse, Sort, Addition, Recall, Passkey)}


def get_task(name: str, plain: bool = False) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {sorted(TASKS)} (as dataset=task:NAME)")
    if plain and name != "addition":
        raise ValueError(f"task_plain is an option of task:addition only, not task:{name}")
    return TASKS[name](plain)


def task_meta(task: Task, n_train: int, n_eval: int) -> dict:
    """What a checkpoint records of the task, like a prepared corpus's meta.json: the char tokenizer's state
    and a digest of the task's definition (what resume and evaluation check)."""
    definition = {"task": task.name, "plain": task.plain, "chars": task.chars, "n_train": n_train}
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return {
        "dataset": f"task:{task.name}",
        "tokenizer": "char",
        "chars": task.chars,
        "vocab_size": len(task.chars),
        "source": f"task:{task.name}",
        "source_sha256": digest,
        "plain": task.plain,
        "n_train": n_train,
        "n_eval": n_eval,
    }


def encode_batch(task: Task, problems: list[tuple[str, str]], length: int) -> tuple[torch.Tensor, ...]:
    """(x, y) int64 (B, length) of prompt + answer sequences right-padded with PAD: x the inputs, y the
    next-token targets, -1 everywhere but on the answer's tokens."""
    x = torch.full((len(problems), length), task.stoi[PAD], dtype=torch.int64)
    y = torch.full((len(problems), length), -1, dtype=torch.int64)
    for row, (prompt, answer) in enumerate(problems):
        ids = torch.tensor(task.encode(prompt + answer))  # the sequence; predicting ids[t+1] from ids[:t+1]
        if len(ids) - 1 > length:
            raise ValueError(f"a {task.name} problem of {len(ids)} tokens does not fit in {length + 1}")
        x[row, : len(ids) - 1] = ids[:-1]
        y[row, len(prompt) - 1 : len(ids) - 1] = ids[len(prompt) :]
    return x, y


def sample_problems(task: Task, rng: np.random.Generator, batch_size: int, n_max: int) -> list[tuple]:
    """`batch_size` problems, each of a size n drawn uniformly from 1 .. n_max."""
    return [task.problem(rng, int(n)) for n in rng.integers(1, n_max + 1, size=batch_size)]


def eval_problems(task: Task, n: int, count: int, seed: int) -> list[tuple[str, str]]:
    """The fixed evaluation problems of size n: `count` of them, a pure function of (seed, n)."""
    rng = np.random.default_rng((seed, n))
    return [task.problem(rng, n) for _ in range(count)]
