"""Evaluation of a trained model: the fixed-batch loss of training, and the positional-encoding
evaluation of compare.py (length extrapolation, per-position loss, context extension, a short fine-tune).

L = training block_size, T = evaluation length; all on the validation split, cut in two halves: the second
is held out for every reported number, the first only chooses hyper-parameters (compare.py's learning-rate
tuning reads `tune_loss`, the loss at L there), so a choice never sees the text it is judged on.
- Scored text: the first R = n * 8L tokens of the held-out half, n = min(eval_windows, half // 8L); the
  same for every run, and for every T up to the last R mod T tokens. `tune_loss` scores the first R tokens
  of the other half in non-overlapping windows of L.
- Non-overlapping (Press et al. 2022): consecutive windows of T tokens, each token scored once with the
  context its window gives it (0 .. T-1 tokens).
- Sliding window, stride s: windows of T tokens every s tokens; the first window scores all its tokens,
  each later one only those no earlier window scored (its last s), so every token is scored once, with
  T - s or more tokens of context after the first window. stride >= T is the non-overlapping evaluation.
- Per-position loss: mean loss at each position of the non-overlapping windows of the longest T.
- `learned` has no rows past L: n/a. Rotary runs (schemes with `extends_context`) are also evaluated with
  each context-extension method of rope.py applied at inference, untrained, with factor = T / L and
  original length L (at T <= L every method is the identity, so those cells repeat plain rope). With
  finetune_iters > 0, copies of each such run are fine-tuned at 2L (plain, and each method at factor 2)
  with training.py's step, and evaluated.
A run is evaluated in the precision it was trained in (`runtime.Precision` of its dtype).

A run on a task (dataset=task:NAME, data/tasks.py) is scored instead by accuracy at every problem size n =
1 .. n_eval, on a fixed test set per n (task_problems problems, seeded by n, the same for every run):
exact match (the whole answer, end mark included, right) and per-token accuracy, both of greedy decoding
through the KV cache, all problems of one n in one batch (a few past TASK_BATCH). A run trained on
randomized positions decodes at sorted positions drawn from [0, M) for each problem, as in training.
"""

import contextlib
import copy
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from configurator import Config, check_ints, check_number
from data import batches
from data.batches import EVAL_SEED, get_batch, load_dataset, random_positions, windows_at
from data.sources import TaskSource, load_source
from data.tasks import encode_batch, eval_pairs, eval_problems
from diagnostics import attention_stats
from model import GPT
from rope import rope_inv_freq
from runtime import Precision, to_device
from training import TrainConfig, accumulate_gradients, configure_optimizers, optimizer_step

METHODS = ("linear", "ntk", "dynamic", "yarn", "longrope")
MAX_MULTIPLE = 8.0  # the longest evaluation length, in block sizes
EVAL_TOKENS = 16384  # tokens per evaluation forward pass
FT_SEED = 7919  # batch stream of the fine-tune, apart from the training one
DIAG_WINDOWS = 4  # sequences per length of the attention diagnostics
TASK_SEED, TASK_BATCH = 4242, 512  # the tasks' test sets; problems decoded in one batch


@dataclass(frozen=True)
class EvalConfig(Config):
    """How compare.py evaluates runs (its --key=value namespace, with ModelConfig and TrainConfig)."""

    # --- evaluation
    eval_lengths: tuple[float, ...] = (1, 1.25, 1.5, 2, 4, 8)  # multiples of block_size, each in (0, 8]
    eval_windows: int = 64  # cap on the number of 8L-token validation windows scored
    stride: int | None = None  # sliding-window stride in tokens; None -> block_size
    rope_methods: tuple[str, ...] = METHODS  # context extension applied at inference to rope runs; "": none
    finetune_iters: int = 0  # > 0: also fine-tune rope runs at 2L for this many steps
    finetune_lr: float = 1e-4  # constant learning rate of the fine-tune
    task_problems: int = 200  # tasks: test problems per size n

    def validate(self):
        check_ints(self, ("eval_windows",), 1, 2**20)
        check_ints(self, ("finetune_iters",), 0, 2**31)
        check_ints(self, ("task_problems",), 1, 100_000)
        if self.stride is not None:
            check_ints(self, ("stride",), 1, 2**31)
        check_number("finetune_lr", self.finetune_lr, 0, strict=True)
        if not self.eval_lengths:
            raise ValueError("eval_lengths must list at least one multiple of block_size, like 1,2,4")
        for m in self.eval_lengths:
            if not (isinstance(m, float) and 0 < m <= MAX_MULTIPLE):
                raise ValueError(
                    f"eval_lengths must be multiples of block_size in (0, {MAX_MULTIPLE:g}] like 1,2,4 (the "
                    f"scored text is made of {MAX_MULTIPLE:g}L-token windows), got {m!r}"
                )
        if unknown := set(self.rope_methods) - set(METHODS):
            raise ValueError(f"rope_methods: {sorted(unknown)} unknown; allowed are {list(METHODS)}")

    def lengths(self, block_size: int) -> list[int]:
        return sorted({max(1, round(m * block_size)) for m in self.eval_lengths})

    def settings(self, block_size: int) -> dict:
        """What a stored evaluation depends on; a change re-evaluates the run."""
        keys = ("eval_windows", "finetune_iters", "finetune_lr", "task_problems")
        fixed = {"lengths": self.lengths(block_size), "stride": self.stride or block_size}
        fixed["diag_windows"] = DIAG_WINDOWS  # evaluations from before the diagnostics are redone
        return fixed | {k: getattr(self, k) for k in keys} | {"rope_methods": ",".join(self.rope_methods)}


@torch.no_grad()
def loss_sum(model, batches, precision: Precision) -> torch.Tensor:
    """Sum of the mean losses of batches (x, y) or (x, y, positions) on the model's device (fp32 scalar),
    in eval mode; the model's mode is restored. train.py divides by the number of batches (over all
    ranks)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=next(model.parameters()).device)
    for batch in batches:
        with precision.autocast():
            total += model(*batch)[1].float()
    model.train(was_training)
    return total


@torch.no_grad()
def token_losses(model: GPT, x: torch.Tensor, y: torch.Tensor, *positions) -> torch.Tensor:
    """Cross-entropy of every next-token target: x, y (B, T) (and positions) -> (B, T) float32."""
    logits, _ = model(x, y, *positions)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)


def window_plan(n_tokens: int, T: int, stride: int) -> tuple[list[int], list[int]]:
    """Starts of windows of T tokens every `stride` (<= T) over tokens 0 .. n_tokens-1 (the last one
    flush with the end), and how many leading tokens of each an earlier window already scored."""
    if n_tokens < T:
        raise ValueError(f"need at least T={T} tokens to evaluate, got {n_tokens}")
    stride = min(stride, T)
    starts = list(range(0, n_tokens - T + 1, stride))
    if starts[-1] + T < n_tokens:
        starts.append(n_tokens - T)
    return starts, [0] + [prev + T - s for prev, s in itertools.pairwise(starts)]


@torch.no_grad()
def eval_windows(
    model: GPT, tokens: np.ndarray, T: int, stride: int, precision: Precision | None = None
) -> tuple[float, np.ndarray]:
    """Loss of `model` on tokens[1:], each predicted from what precedes it in its window (window_plan);
    `precision` None is float32. A model trained on randomized positions is evaluated on them too, as
    Ruoss et al. do: each window draws its sorted positions from [0, M), seeded by its index.

    Returns:
        The mean loss over scored tokens, and the mean loss at each window position, (T,) (NaN where
        nothing was scored; the per-position loss when stride >= T).
    """
    starts, skip = window_plan(len(tokens) - 1, T, stride)
    batch = max(1, min(EVAL_TOKENS // T, 2**26 // (T * model.config.vocab_size)))  # bounds (B, T, V) logits
    device = next(model.parameters()).device
    amp = precision.autocast() if precision else contextlib.nullcontext()
    total, count = np.zeros(T), np.zeros(T)
    M = model.config.random_positions
    for i in range(0, len(starts), batch):
        xy = windows_at(tokens, T, np.asarray(starts[i : i + batch]))  # (b, T) each
        if M is not None:
            xy = (*xy, random_positions(np.random.default_rng((EVAL_SEED, i)), len(xy[0]), T, M))
        with amp:
            losses = token_losses(model, *(t.to(device) for t in xy)).double().cpu().numpy()  # (b, T)
        scored = np.arange(T)[None, :] >= np.asarray(skip[i : i + batch])[:, None]
        total += (losses * scored).sum(0)
        count += scored.sum(0)
    with np.errstate(invalid="ignore"):
        return float(total.sum() / count.sum()), total / count


@contextlib.contextmanager
def rope_scaled(model: GPT, scaling: dict | None):
    """Swap a rope model's positional encoding for one with `scaling` (it holds no weights); None: as is."""
    original = model.transformer.wpe
    if scaling is not None:
        cfg = dataclasses.replace(model.config, rope_scaling=scaling)
        model.transformer.wpe = type(original)(cfg).to(next(model.parameters()).device)
    try:
        yield model
    finally:
        model.transformer.wpe = original


def method_scaling(method: str, factor: float, mcfg) -> dict:
    """rope.py's scaling dict for a context-extension method at `factor` times the training length of the
    rope model config `mcfg`. LongRoPE's factors come from a search on the model itself (Ding et al.
    2024), which this does not run: long_factor is the per-pair rescaling of YaRN at `factor` (one of the
    starting points of that search), short_factor 1, with LongRoPE's attention factor and switch at L."""
    if method in ("linear", "ntk"):
        return {"rope_type": method, "factor": factor}
    scaling = {"rope_type": method, "factor": factor, "original_max_position_embeddings": mcfg.block_size}
    if method != "longrope":
        return scaling
    d, base = mcfg.rope_dim or mcfg.head_size, mcfg.rope_base or 10000.0
    plain, yarn = rope_inv_freq(d, base)[0], rope_inv_freq(d, base, scaling | {"rope_type": "yarn"})[0]
    return scaling | {"short_factor": [1.0] * (d // 2), "long_factor": (plain / yarn).tolist()}


def eval_variant(model: GPT, region: np.ndarray, ev: EvalConfig, scaling_at=None, precision=None) -> dict:
    """Non-overlapping and sliding losses at every evaluation length ({str(T): loss or None}) and the
    per-position loss at the longest one; `scaling_at(T)` is the rope scaling to apply at length T."""
    L = model.config.block_size
    stride = ev.stride or L
    out = {"nonoverlap": {}, "sliding": {}, "per_position": None}
    for T in ev.lengths(L):
        if (model.transformer.wpe.max_len or T) < T:  # learned: no rows past block_size
            out["nonoverlap"][str(T)] = out["sliding"][str(T)] = None
            continue
        tokens = region[: (len(region) - 1) // T * T + 1]
        with rope_scaled(model, scaling_at(T) if scaling_at else None):
            loss, per_pos = eval_windows(model, tokens, T, T, precision)
            out["nonoverlap"][str(T)], out["per_position"] = loss, per_pos.tolist()
            sliding = loss if stride >= T else eval_windows(model, tokens, T, stride, precision)[0]
            out["sliding"][str(T)] = sliding
    return out


def diagnose(model: GPT, region: np.ndarray, lengths: list[int], precision: Precision) -> dict:
    """diagnostics.attention_stats at each length T the model can run ({str(T): stats}), on the first
    DIAG_WINDOWS non-overlapping windows of T tokens of the scored text (randomized positions drawn as in
    eval_windows)."""
    device, M, out = next(model.parameters()).device, model.config.random_positions, {}
    for T in lengths:
        if (model.transformer.wpe.max_len or T) < T:
            continue
        n = min(DIAG_WINDOWS, (len(region) - 1) // T)
        x = torch.from_numpy(region[: n * T].astype(np.int64)).view(n, T)
        pos = None if M is None else random_positions(np.random.default_rng((EVAL_SEED, 0)), n, T, M)
        batch = [batches.to_device((x, pos, None), str(device))]
        out[str(T)] = attention_stats(model, batch, model.config.block_size, precision)
    return out


def finetune(model: GPT, data: np.ndarray, tcfg: TrainConfig, ev: EvalConfig, precision: Precision) -> GPT:
    """Train on at 2L with training.py's step (the run's precision and grad_clip), constant lr, half the
    batch (the tokens per step of training); Chen et al. 2023 fine-tune 1000 steps, this is the same idea
    at the scale of a CPU run."""
    T = 2 * model.config.block_size
    device = str(next(model.parameters()).device)
    betas = (tcfg.beta1, tcfg.beta2)
    opt = configure_optimizers(model, tcfg.weight_decay, ev.finetune_lr, betas, precision.device_type)
    scaler = precision.grad_scaler()
    model.train()
    for it in range(ev.finetune_iters):
        x, y = get_batch(data, T, max(1, tcfg.batch_size // 2), (tcfg.data_seed, FT_SEED, it))
        batch = [(to_device(x, device), to_device(y, device))]
        loss = accumulate_gradients(model, batch, 1, precision, scaler).item()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the fine-tune diverged at step {it} (loss {loss}); lower --finetune_lr "
                f"(now {ev.finetune_lr:g}) or keep --grad_clip > 0"
            )
        optimizer_step(model.parameters(), opt, scaler, tcfg.grad_clip)
    return model.eval()


def val_region(tcfg: TrainConfig, meta: dict, block_size: int, ev: EvalConfig, data_dir=None):
    """(the scored held-out tokens, the tuning tokens, the train split) of the run's dataset prepared in
    `data_dir` (the caller's; None: data/): the validation split cut in two halves, the second held out for
    reports, the first for choosing hyper-parameters (`tune_loss`); of each, the first R = n * 8L tokens
    (module docstring). The two never overlap."""
    folder_meta, splits = load_dataset(tcfg.dataset, tcfg.tokenizer, data_dir, block_size)
    if folder_meta["source_sha256"] != meta["source_sha256"]:
        raise ValueError(f"dataset {tcfg.dataset!r} does not hold the text this run was trained on")
    val, tr = splits["val"], splits["train"]
    half, window = len(val) // 2, int(MAX_MULTIPLE) * block_size
    n = min(ev.eval_windows, (len(val) - half - 1) // window)
    if n < 1:
        raise ValueError(
            f"the val split has {len(val)} tokens, fewer than {2 * (window + 1)} (two halves of 8 * "
            "block_size + 1: held out and tuning) that the evaluation scores; lower --block_size or use a "
            "longer text"
        )
    return np.asarray(val[half : half + n * window + 1]), np.asarray(val[: n * window + 1]), tr


@torch.no_grad()
def task_accuracy(
    model: GPT, source: TaskSource, n: int, problems: list[tuple], precision: Precision
) -> np.ndarray:
    """Greedy answers to problems of size n (all with the same prompt and answer lengths), scored:
    (P, answer length) bool, True where the decoded token is the answer's. The decoding gets the ids the
    model trained with, at their evaluation offsets (data/sources.py), or, for randomized positions, sorted
    random positions seeded by the size and chunk."""
    device, task = next(model.parameters()).device, source.task
    P, A = len(problems[0][0]), len(problems[0][1])
    M, right = model.config.random_positions, []
    for i in range(0, len(problems), TASK_BATCH):
        chunk = problems[i : i + TASK_BATCH]
        prompts = torch.tensor([task.encode(p) for p, _ in chunk], device=device)  # (b, P)
        answers = torch.tensor([task.encode(a) for _, a in chunk])  # (b, A)
        pos, abacus = source.ids([n] * len(chunk), P + A, rng=None)
        if pos is None and M is not None:  # the same positions on every call
            pos = random_positions(np.random.default_rng((TASK_SEED, P, i)), len(chunk), P + A, M)
        pos, abacus = batches.to_device((pos, abacus), str(device))
        with precision.autocast():
            out = model.eval().generate(prompts, A, temperature=0, positions=pos, abacus=abacus)[:, P:].cpu()
        right.append((out == answers).numpy())
    return np.concatenate(right)


def evaluate_task(run: tuple, ev: EvalConfig, device="cpu") -> dict:
    """A task run's accuracy at every n = 1 .. n_eval: {"accuracy": {"exact": {n: mean}, "token": {n:
    mean}}, "n_train", "n_eval", "params", "eval_s", "eval_problems"}."""
    t0 = time.perf_counter()
    model, mcfg, tcfg, _ = run
    n_train, n_eval = tcfg.task_sizes()
    source = load_source(tcfg, mcfg)
    precision = Precision.of(tcfg.dtype, device)
    exact, token = {}, {}
    for n in range(1, n_eval + 1):
        problems = eval_problems(source.task, n, ev.task_problems, TASK_SEED)
        right = task_accuracy(model, source, n, problems, precision)
        exact[str(n)], token[str(n)] = float(right.all(1).mean()), float(right.mean())
    out = {"accuracy": {"exact": exact, "token": token}, "n_train": n_train, "n_eval": n_eval}
    out["diagnostics"] = {str(n): diagnose_task(model, source, n, precision) for n in (n_train, n_eval)}
    if source.task.operands == 2:
        out["operands"] = operand_grid(
            model, source, operand_sizes(n_train, n_eval), ev.task_problems, precision
        )
    return out | {
        "params": _params(model),
        "eval_s": time.perf_counter() - t0,
        "eval_problems": ev.task_problems,
    }


def diagnose_task(model: GPT, source: TaskSource, n: int, precision: Precision) -> dict:
    """diagnostics.attention_stats on DIAG_WINDOWS * 8 test problems of size n, whole (prompt and answer,
    teacher-forced), with the ids the model decodes them with; L = the longest training sequence."""
    problems = eval_problems(source.task, n, DIAG_WINDOWS * 8, TASK_SEED)
    x, _ = encode_batch(source.task, problems, sum(source.task.lengths(n)) - 1)
    pos, abacus = source.ids([n] * len(problems), x.size(1), rng=None)
    M = model.config.random_positions
    if pos is None and M is not None:
        pos = random_positions(np.random.default_rng((TASK_SEED, n)), *x.shape, M)
    device = next(model.parameters()).device
    batch = batches.to_device((x, pos, abacus), str(device))
    return attention_stats(model, [batch], source.train_len, precision)


def operand_sizes(n_train: int, n_eval: int) -> list[int]:
    """The digit counts of a task's operand grid: 6 spread over 1 .. n_eval, plus n_train and 2 n_train."""
    spread = np.linspace(1, n_eval, min(6, n_eval)).round()
    return sorted({int(k) for k in spread} | {n_train, min(2 * n_train, n_eval)})


def operand_grid(model: GPT, source: TaskSource, sizes: list[int], count: int, precision: Precision) -> dict:
    """Exact match over (digits of a, digits of b), McLeish et al.'s map: `count` // 4 problems (at least
    20) per cell, operands zero-padded to the longer one (so the cells of one max(na, nb) decode as one
    batch). {"sizes", "exact": rows a, columns b, "problems_per_cell"}."""
    per_cell, exact = max(20, count // 4), np.zeros((len(sizes), len(sizes)))
    cells = [(i, j) for i in range(len(sizes)) for j in range(len(sizes))]
    for n in sorted({max(na, nb) for na in sizes for nb in sizes}):
        mine = [(i, j) for i, j in cells if max(sizes[i], sizes[j]) == n]
        problems = [
            p for i, j in mine for p in eval_pairs(source.task, sizes[i], sizes[j], per_cell, TASK_SEED)
        ]
        right = task_accuracy(model, source, n, problems, precision).all(1).reshape(len(mine), per_cell)
        for (i, j), row in zip(mine, right, strict=True):
            exact[i, j] = row.mean()
    return {"sizes": sizes, "exact": exact.tolist(), "problems_per_cell": per_cell}


def _params(model: GPT) -> dict:
    return {
        "total": model.num_params(False),
        "non_embedding": model.num_params(True),
        "position": sum(p.numel() for p in model.position_parameters().values()),
    }


def evaluate_run(run: tuple, ev: EvalConfig, device="cpu", data_dir=None) -> dict:
    """Every evaluation of one run, `rundir.load_run`'s (model, model config, train config, meta) on
    `device`: {"eval": {variant: eval_variant(...)}, "params", "eval_s", "eval_tokens"}; variant "" is the
    model as trained, a method name the method applied at inference, "ft" / "<method>+ft" a copy
    fine-tuned at 2L. The dataset is prepared in `data_dir` (the caller's), never where the run was. A
    task run gets `evaluate_task`'s evaluation instead."""
    if run[2].task_sizes():
        return evaluate_task(run, ev, device)
    t0 = time.perf_counter()
    model, mcfg, tcfg, meta = run
    precision = Precision.of(tcfg.dtype, device)
    region, tune, train_data = val_region(tcfg, meta, mcfg.block_size, ev, data_dir)
    L = mcfg.block_size
    results = {"": eval_variant(model, region, ev, precision=precision)}
    tune_loss = eval_windows(model, tune, L, L, precision)[0]
    why = diagnose(model, region, ev.lengths(L), precision)
    extends = type(model.transformer.wpe).extends_context  # the scheme says whether rope.py's methods apply
    if extends and mcfg.rope_scaling is None and mcfg.random_positions is None:
        for m in ev.rope_methods:
            at = lambda T, m=m: method_scaling(m, T / L, mcfg) if T > L else None
            results[m] = eval_variant(model, region, ev, at, precision)
        for m in [None, *ev.rope_methods] if ev.finetune_iters else []:
            tuned = copy.deepcopy(model)
            with rope_scaled(tuned, method_scaling(m, 2.0, mcfg) if m else None):
                finetune(tuned, train_data, tcfg, ev, precision)
                results[f"{m}+ft" if m else "ft"] = eval_variant(tuned, region, ev, precision=precision)
    elapsed = time.perf_counter() - t0
    return {
        "eval": results,
        "tune_loss": tune_loss,
        "diagnostics": why,
        "params": _params(model),
        "eval_s": elapsed,
        "eval_tokens": len(region) - 1,
    }
