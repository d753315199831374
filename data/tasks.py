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
              With `hints=True` (index hints, Zhou et al. 2024) every digit follows a hint letter naming
              its significance, in the answer too: c0b4a2+c7b8a5=a7b2c8d0. (hints h_r, h_r+1, ... from 52
              letters, r = 0 at evaluation and drawn per problem in training so later letters are trained).
              With `marks=True` each operand is written after an end mark and one zero, .0042+.0785=7280.:
              the mark and the zero have significances n + 1 and n, like the answer's end mark and carry-out
              digit, so with coupled ids every answer token has operand tokens at its id (docs/TASKS.md).
              With `width=W` both operands are written with at least W digits, the sum with W + 1: every
              size up to W shares one layout, 000042+000785=7280000., as in Karpathy's minGPT adder, so
              the digits to add sit at the same positions whatever n is. With `lsb=True` the operands are
              written least significant digit first too (McLeish et al. 2024): 568000+032000=5901000.;
              with a width, each answer digit then sits at fixed distances from the two digits it adds
              (what a relative scheme can find in one layer; docs/TASKS.md).
    recall    n key-value pairs (distinct keys a-z, digit values), "?", a key, "=", its value   a3q7c1?q=7.
    passkey   n filler letters with "#" and a 5-digit passkey planted at a random depth, then "?=" and the
              passkey (Mohtashami & Jaggi 2023, at character level)   kzq#40213ubw?=40213.

Training loss is on answer tokens only (targets -1 elsewhere; the model already ignores -1). A batch of
mixed n is right-padded with "_" after each sequence: in a causal model nothing after a token changes its
prediction, so padding never touches a scored token (tests/test_tasks.py checks it).

Positions a task can set (`structured_ids`; addition, whose tokens have a significance): "coupled" ids
(position coupling, Cho et al. 2024): a digit of significance s gets start + 1 + s in both operands and
the answer, "+" and "=" get start, the end mark and padding 0, so the digits to add share an id:
042+785=7280. -> 4 3 2 1 4 3 2 1 2 3 4 5 0 at start 1. "abacus" ids (McLeish et al. 2024): 1 + s + offset
for a digit, 0 otherwise, for the model's Abacus table: 3 2 1 0 3 2 1 0 1 2 3 4 0 at offset 0. Cho et al. and
McLeish et al. write their operands differently (theirs: McLeish's least significant first); both rules
are kept by significance, which is what aligns the digits.
"""

import hashlib
import json

import numpy as np
import torch

LETTERS, DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
PAD, END = "_", "."
HINTS = LETTERS + LETTERS.upper()  # index hints, in order
SEPARATOR, OTHER = -1, -2  # `significance` of "+" and "=", and of every other non-digit token
# task:addition's options, in get_task's order: TrainConfig's task_<option>, a checkpoint meta's <option>
OPTIONS = ("plain", "hints", "marks", "width", "lsb")


class Task:
    """A task: its characters, the largest n it can pose (None: any), and its problems."""

    name: str
    symbols: str  # besides PAD and END
    max_n: int | None = None
    operands = 1  # 2: a problem has two numbers, whose digit counts `pair` sets

    def __init__(
        self, plain: bool = False, hints: bool = False, marks: bool = False, width: int = 0, lsb: bool = False
    ):
        self.plain, self.hints, self.marks, self.width, self.lsb = plain, hints, marks, width, lsb
        self.chars = sorted(set(PAD + END + self.symbols + (HINTS if hints else "")))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    def problem(self, rng: np.random.Generator, n: int, train: bool = False) -> tuple[str, str]:
        """(prompt, answer) of size n; the answer ends with END. `train`: a training problem (a task may
        randomise what evaluation fixes, as the index hints' first letter)."""
        raise NotImplementedError

    def lengths(self, n: int) -> tuple[int, int]:
        """(prompt, answer) lengths at size n, the same for every problem of that size."""
        prompt, answer = self.problem(np.random.default_rng(0), n)
        return len(prompt), len(answer)

    def significance(self, n: int) -> list[int]:
        """Per token of a problem of size n (prompt + answer): a digit's significance, SEPARATOR for "+"
        and "=", OTHER for the rest; only tasks of numbers have it."""
        raise ValueError(
            f"task:{self.name} has no digits to align: coupled positions and Abacus ids are for task:addition"
        )

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]


class Copy(Task):
    name, symbols = "copy", "abcdefghij="

    def problem(self, rng, n, train=False):
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

    @property
    def max_n(self) -> int | None:
        return len(HINTS) - 1 if self.hints else None  # hints name n + 1 significances

    operands = 2

    def problem(self, rng, n, train=False):
        a, b = ("".join(rng.choice(list(DIGITS), size=n)) for _ in range(2))  # uniform in [0, 10^n), padded
        return self._written(rng, a, b, train)

    def pair(self, rng, na: int, nb: int) -> tuple[str, str]:
        """An evaluation problem whose operands have exactly na and nb digits (a leading digit > 0 past one
        digit), both zero-padded to n = max(na, nb): McLeish et al.'s grid of operand lengths."""
        n = max(na, nb)

        def number(k: int) -> str:
            lead = rng.choice(list(DIGITS[1:] if k > 1 else DIGITS))
            return (lead + "".join(rng.choice(list(DIGITS), size=k - 1))).zfill(n)

        return self._written(rng, number(na), number(nb), train=False)

    def _written(self, rng, a: str, b: str, train: bool) -> tuple[str, str]:
        a, b = a.zfill(self.width), b.zfill(self.width)  # the fixed layout, if any: every size written alike
        n = len(a)
        total = str(int(a) + int(b)).zfill(n + 1)
        answer = total if self.plain else total[::-1]
        a, b = (a[::-1], b[::-1]) if self.lsb else (a, b)
        if self.marks:
            a, b = END + "0" + a, END + "0" + b
        if not self.hints:
            return f"{a}+{b}=", answer + END
        r = int(rng.integers(0, len(HINTS) - n)) if train else 0  # the hint of significance s: HINTS[r + s]

        def hinted(digits: str, sig: range) -> str:
            return "".join(HINTS[r + s] + d for s, d in zip(sig, digits, strict=True))

        operand = range(n) if self.lsb else range(n - 1, -1, -1)
        out = hinted(answer, range(n, -1, -1) if self.plain else range(n + 1))
        return f"{hinted(a, operand)}+{hinted(b, operand)}=", out + END

    def significance(self, n):
        n = max(n, self.width)
        operand = list(range(n)) if self.lsb else list(range(n - 1, -1, -1))  # most significant first
        answer = list(range(n, -1, -1)) if self.plain else list(range(n + 1))
        if self.hints:  # each digit after its hint
            operand = [x for s in operand for x in (OTHER, s)]
            answer = [x for s in answer for x in (OTHER, s)]
        if self.marks:  # the end mark and the zero in front: significances n + 1 and n, as in the answer
            operand = [n + 1, n, *operand]
        return [*operand, SEPARATOR, *operand, SEPARATOR, *answer, n + 1 if self.marks else OTHER]


class Recall(Task):
    name, symbols, max_n = "recall", LETTERS + DIGITS + "?=", len(LETTERS)

    def problem(self, rng, n, train=False):
        keys = rng.permutation(list(LETTERS))[:n]
        values = rng.choice(list(DIGITS), size=n)
        query = int(rng.integers(0, n))
        pairs = "".join(k + v for k, v in zip(keys, values, strict=True))
        return f"{pairs}?{keys[query]}=", values[query] + END


class Passkey(Task):
    name, symbols = "passkey", LETTERS + DIGITS + "#?="

    def problem(self, rng, n, train=False):
        filler = "".join(rng.choice(list(LETTERS), size=n))
        key = "".join(rng.choice(list(DIGITS), size=5))
        depth = int(rng.integers(0, n + 1))
        return f"{filler[:depth]}#{key}{filler[depth:]}?=", key + END


TASKS = {cls.name: cls for cls in (Copy, Reverse, Sort, Addition, Recall, Passkey)}


def get_task(name: str, plain=False, hints=False, marks=False, width: int = 0, lsb=False) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {sorted(TASKS)}, e.g. --dataset=task:copy")
    options = dict(task_plain=plain, task_hints=hints, task_marks=marks, task_width=width, task_lsb=lsb)
    for option, value in options.items():
        if value and name != "addition":
            raise ValueError(f"{option} is an option of task:addition only, not task:{name}")
    if marks and (plain or hints or lsb):
        raise ValueError(
            "task_marks is for operands written most significant digit first and a sum least significant "
            "first, without hints: drop task_plain, task_hints and task_lsb"
        )
    return TASKS[name](plain, hints, marks, width, lsb)


def structured_ids(task: Task, n: int, kind: str, start: int) -> np.ndarray:
    """The ids of every token of a problem of size n (prompt + answer) by the task's structure (module
    docstring): kind "coupled" from `start` (Cho et al.: 1 at evaluation), or "abacus" from offset `start`
    (McLeish et al.: 0 at evaluation). int64 (P + A,)."""
    sig = np.asarray(task.significance(n))
    digit = start + 1 + sig
    if kind == "coupled":
        return np.where(sig >= 0, digit, np.where(sig == SEPARATOR, start, 0))
    return np.where(sig >= 0, digit, 0)


def task_meta(task: Task, n_train: int, n_eval: int) -> dict:
    """What a checkpoint records of the task, like a prepared corpus's meta.json: the char tokenizer's state
    and a digest of the task's definition (what resume and evaluation check)."""
    definition = {"task": task.name, "plain": task.plain, "chars": task.chars, "n_train": n_train}
    for option in OPTIONS[1:]:  # definitions without them keep the digest they had
        if getattr(task, option):
            definition[option] = getattr(task, option)
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return {
        "dataset": f"task:{task.name}",
        "tokenizer": "char",
        "chars": task.chars,
        "vocab_size": len(task.chars),
        "source": f"task:{task.name}",
        "source_sha256": digest,
        **{option: getattr(task, option) for option in OPTIONS},
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


def sample_problems(task: Task, rng: np.random.Generator, batch_size: int, n_max: int) -> tuple[list, list]:
    """`batch_size` training problems, each of a size n drawn uniformly from 1 .. n_max, and their sizes."""
    sizes = [int(n) for n in rng.integers(1, n_max + 1, size=batch_size)]
    return [task.problem(rng, n, train=True) for n in sizes], sizes


def eval_problems(task: Task, n: int, count: int, seed: int) -> list[tuple[str, str]]:
    """The fixed evaluation problems of size n: `count` of them, a pure function of (seed, n)."""
    rng = np.random.default_rng((seed, n))
    return [task.problem(rng, n) for _ in range(count)]


def eval_pairs(task: Task, na: int, nb: int, count: int, seed: int) -> list[tuple[str, str]]:
    """The fixed evaluation problems with operands of na and nb digits (a task with two operands)."""
    rng = np.random.default_rng((seed, na, nb))
    return [task.pair(rng, na, nb) for _ in range(count)]
