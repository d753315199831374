"""What a training run is and what one step does: TrainConfig, the learning-rate schedule, gradient
accumulation under the run's precision, and the clipped optimizer step. train.py's loop and the
fine-tune of evaluate.py both train through these, with the same precision policy and clipping."""

import math
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import check_ints, check_number
from data import batches
from data.tasks import OPTIONS, get_task
from model import ModelConfig
from positional import POS_ENCODINGS
from runtime import Precision, RuntimeConfig

DROPPED = "none"  # what DroPE leaves
MAX_SEED = 2**63 - 1  # seeds stay valid for torch.manual_seed after compare.py and DDP add small offsets
ADDITION_KEYS = tuple(f"task_{option}" for option in OPTIONS)  # data.tasks.get_task's options, in its order
MAX_TASK_N = 1000  # the largest problem size of a task (addition at 1000 digits: 3,004 tokens)


@dataclass(frozen=True)
class TrainConfig(RuntimeConfig):
    """Everything about a training run except the model. The defaults are the default run (nanoGPT's "baby
    GPT on a CPU" on the embedded pydocs text); nanoGPT's where it has one."""

    # --- run
    out_dir: str = "out/default"  # the run directory (one run; locked while a process trains into it)
    resume: bool = False  # continue from out_dir/ckpt.pt
    overwrite: bool = False  # start again in an out_dir that holds a run (replaces its checkpoint, metrics)
    init_from: str | None = None  # a Hugging Face GPT-2 (directory or hub name): start from its weights
    seed: int = 1337  # init and dropout
    # --- data
    dataset: str = "pydocs"  # pydocs, shakespeare, verdict, a UTF-8 .txt file's path, task:NAME (compare.py:
    # task:A,B,... for a grid per task)
    tokenizer: str = "char"  # char or gpt2 (tasks: char)
    data_dir: str | None = None  # where prepared datasets live; None -> <repo>/data
    data_seed: int = 0  # batch order
    batch_order: str = "random"  # random windows every step (nanoGPT), or epochs: every non-overlapping
    # window once per epoch in a shuffled order, the last partial batch dropped (the book's DataLoader)
    task_n_train: int | None = None  # tasks: problem sizes 1 .. this in training; None -> 16
    task_n_eval: int | None = None  # tasks: the largest size evaluated (the model's block_size fits it);
    # None -> 3 * task_n_train (at most the task's own limit)
    task_plain: bool = False  # task:addition writes the sum most significant digit first
    task_hints: bool = False  # task:addition with index hints (Zhou et al. 2024), data/tasks.py
    task_marks: bool = False  # task:addition writes each operand after an end mark and a zero, aligned with
    # the answer's end mark and carry-out digit under coupled ids: .0042+.0785=7280. (data/tasks.py)
    task_width: int = 0  # task:addition writes both operands with at least this many digits (the sum one
    # more): every size up to it in one layout (minGPT's adder); 0: each problem at its own size
    task_lsb: bool = False  # task:addition writes the operands units first too (McLeish et al. 2024)
    task_positions: str = "sequential"  # token t at t (or random_positions), or coupled (Cho et al. 2024)
    task_buckets: int = 1  # tasks: each batch's forward and backward in this many groups of rows of similar
    # size, trimmed to their longest: the same gradient (to float rounding), less padding (data.batches)
    # --- optimisation
    batch_size: int = 12  # sequences per micro-step per process
    gradient_accumulation_steps: int = 1  # global: split over DDP processes, so tokens/iter stay fixed
    max_iters: int = 2000  # optimizer steps
    learning_rate: float = 1e-3  # peak, after warmup
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_iters: int = 100  # linear warmup to learning_rate
    lr_decay_iters: int = 2000  # cosine reaches min_lr here (nanoGPT: ~max_iters)
    weight_decay: float = 0.1  # on matrices and embeddings only
    pos_lr_mult: float = 1.0  # learning rate of position parameters (t5's table, ...) / the others'
    drope_iter: int | None = None  # DroPE: from this iteration on, no positional encoding (model_at)
    beta1: float = 0.9  # AdamW's
    beta2: float = 0.99  # nanoGPT's small-model value (GPT-2 size: 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    # --- evaluation and logging
    eval_interval: int = 250  # also evaluates at iter 0 and at max_iters; each eval saves ckpt.pt
    eval_iters: int = 20  # fixed batches per split per eval
    log_interval: int = 50  # iterations between rows of metrics.jsonl (and console lines with verbose)
    sample_tokens: int = 300  # tokens to sample at the end (0: none)
    log: str = "jsonl"  # jsonl (metrics.jsonl, always written), or tensorboard as well
    tensorboard_dir: str | None = None  # log=tensorboard: the events' folder; None -> out_dir/tensorboard
    verbose: bool = False  # print the resolved configs and a line per log_interval (else: per eval only)

    def validate(self):
        super().validate()
        ge_1 = ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval")
        check_ints(self, ge_1, 1, 2**31)
        check_ints(self, ("max_iters", "warmup_iters", "lr_decay_iters", "sample_tokens"), 0, 2**31)
        check_ints(self, ("seed", "data_seed"), 0, MAX_SEED)
        check_number("learning_rate", self.learning_rate, 0, strict=True)
        check_number("min_lr", self.min_lr, 0, self.learning_rate)
        check_number("weight_decay", self.weight_decay, 0)
        check_number("pos_lr_mult", self.pos_lr_mult, 0, 1e4, strict=True)
        check_number("grad_clip", self.grad_clip, 0)  # 0 disables clipping
        for name in ("beta1", "beta2"):
            check_number(name, getattr(self, name), 0, 1)
            if getattr(self, name) == 1:
                raise ValueError(f"{name} must be < 1, got 1")
        if self.warmup_iters > self.lr_decay_iters:
            raise ValueError(
                f"warmup_iters={self.warmup_iters} must be <= lr_decay_iters={self.lr_decay_iters}"
            )
        if self.drope_iter is not None:
            check_ints(self, ("drope_iter",), 1, max(1, self.max_iters - 1))
        if self.resume and self.overwrite:
            raise ValueError("resume=true continues the run in out_dir, overwrite=true replaces it: pick one")
        choices = {
            "tokenizer": ("char", "gpt2"),
            "batch_order": ("random", "epochs"),
            "log": ("jsonl", "tensorboard"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.tensorboard_dir is not None and self.log != "tensorboard":
            raise ValueError(
                "tensorboard_dir is where log=tensorboard writes; add --log=tensorboard or drop it"
            )
        for name in ("out_dir", "dataset"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty")
        if self.dataset.startswith("task:"):  # one spelling: task:copy,reverse (no spaces)
            object.__setattr__(self, "dataset", "task:" + ",".join(self.task_names()))
        self.task_sizes()

    def task_names(self) -> list[str]:
        """The tasks of dataset=task:NAME (or task:A,B,... for compare.py), [] for a corpus."""
        if not self.dataset.startswith("task:"):
            return []
        return [t.strip() for t in self.dataset.removeprefix("task:").split(",") if t.strip()]

    def addition_options(self, name: str) -> dict:
        """The task_* options task `name` gets, in get_task's order: this config's for addition, the defaults
        for any other task (a grid of task:copy,addition sets them for addition only)."""
        source = self if name == "addition" else TrainConfig
        return {key: getattr(source, key) for key in ADDITION_KEYS}

    def task(self, name: str):
        """data.tasks' Task of `name` with this config's options (those of addition for addition only)."""
        return get_task(name, *self.addition_options(name).values())

    def task_sizes(self) -> tuple[int, int] | None:
        """(n_train, n_eval) of a task dataset, None for a corpus; ValueError for task_* values that do not
        fit (set for a corpus, sizes out of a task's range or past MAX_TASK_N)."""
        names = self.task_names()
        if not names:
            options = (self.task_n_train, self.task_n_eval, self.task_positions, self.task_buckets)
            options += tuple(getattr(self, k) for k in ADDITION_KEYS)
            if options != (None, None, "sequential", 1, *[False] * len(ADDITION_KEYS)):
                raise ValueError(f"task_* keys are for dataset=task:NAME, not dataset={self.dataset!r}")
            return None
        if len(set(names)) != len(names):
            raise ValueError(f"dataset={self.dataset!r} lists a task twice")
        for option in ADDITION_KEYS:
            if getattr(self, option) and "addition" not in names:
                raise ValueError(f"{option} is an option of task:addition, not of dataset={self.dataset!r}")
        if self.task_positions not in ("sequential", "coupled"):
            raise ValueError(f"task_positions must be 'sequential' or 'coupled', got {self.task_positions!r}")
        check_ints(self, ("task_buckets",), 1, self.batch_size)
        if self.task_positions == "coupled" and self.task_hints:
            raise ValueError("task_positions=coupled and task_hints both align the digits: pick one")
        tasks = [self.task(name) for name in names]
        if self.task_positions == "coupled":
            for task in tasks:
                task.significance(1)  # a task without digits refuses by name
        if self.tokenizer != "char":
            raise ValueError(f"a task has its own characters: use tokenizer='char', not {self.tokenizer!r}")
        limit = min(task.max_n or MAX_TASK_N for task in tasks)
        check_ints(self, ("task_width",), 0, limit)
        if self.task_n_train is not None:
            check_ints(self, ("task_n_train",), 1, limit)
        n_train = 16 if self.task_n_train is None else self.task_n_train
        n_eval = min(3 * n_train, limit) if self.task_n_eval is None else self.task_n_eval
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or not n_train <= n_eval <= limit:
            raise ValueError(
                f"task_n_eval must be an integer in [task_n_train={n_train}, {limit}], got {n_eval!r}"
            )
        return n_train, n_eval


def configure_optimizers(
    model, weight_decay: float, learning_rate: float, betas, device_type: str, pos_lr_mult: float = 1.0
):
    """AdamW over `model`'s parameters with weight decay on matrices and embeddings only (not on biases or
    norm gains). Position parameters (`GPT.position_parameters`, if any) form their own groups whose
    learning rate is `pos_lr_mult` times the others' (each group's `lr_mult`; `set_lr` applies it). Fused
    (one kernel for all parameters) on CPU and CUDA, as `transformers`' Trainer defaults to: on CPU the
    unfused AdamW loops over parameters in Python, ~6% of a step at the baby size."""
    position = {id(p) for p in getattr(model, "position_parameters", dict)().values()}  # peers have none
    groups = []
    for mult, ids in ((1.0, lambda p: id(p) not in position), (pos_lr_mult, lambda p: id(p) in position)):
        params = [p for p in model.parameters() if p.requires_grad and ids(p)]
        for decay, keep in ((weight_decay, lambda p: p.dim() >= 2), (0.0, lambda p: p.dim() < 2)):
            chosen = [p for p in params if keep(p)]
            if chosen:
                groups.append(
                    {"params": chosen, "weight_decay": decay, "lr_mult": mult, "lr": learning_rate * mult}
                )
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type in ("cpu", "cuda"))


def set_lr(optimizer, lr: float) -> None:
    """The learning rate of every group: `lr` times the group's multiplier."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def model_at(model_cfg: ModelConfig, cfg: TrainConfig, it: int) -> ModelConfig:
    """The model config in effect from iteration `it` on. With `drope_iter`, DroPE (Gelberg et al. 2025):
    the run trains with its scheme until then, and from then on with none, every weight kept, at the same
    block_size (the paper's recalibration at the original length, max_iters - drope_iter steps); its
    checkpoints from then on are NoPE models. Only a scheme without parameters can be dropped."""
    if cfg.drope_iter is None:
        return model_cfg
    if not POS_ENCODINGS[model_cfg.pos_enc].parameter_free or model_cfg.pos_enc == DROPPED:
        free = sorted(n for n, c in POS_ENCODINGS.items() if c.parameter_free and n != DROPPED)
        raise ValueError(
            f"drope_iter drops a positional encoding that holds no parameters (so that every weight stays): "
            f"pos_enc in {free}, not {model_cfg.pos_enc!r}"
        )
    return model_cfg if it < cfg.drope_iter else model_cfg.with_scheme(DROPPED)


def get_lr(it: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, cosine decay to min_lr at lr_decay_iters, then min_lr (nanoGPT)."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.lr_decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


def accumulate_gradients(
    model, micro_batches, n_micro: int, precision: Precision, scaler, groups: int = 1
) -> torch.Tensor:
    """Forward and backward of `n_micro` micro-batches (x, y[, positions[, abacus]]), (B, T) each on the
    model's device, each in `groups` groups of rows by length (batches.by_length), their losses scaled by
    their shares and 1 / n_micro (and by the grad scaler); returns the micro-batches' mean loss (fp32,
    detached). Under DDP the gradients are all-reduced on the last backward only."""
    loss_sum = None
    for micro, batch in enumerate(micro_batches):
        parts = batches.by_length(batch, groups)
        for k, (part, share) in enumerate(parts):
            if isinstance(model, DDP):
                model.require_backward_grad_sync = micro == n_micro - 1 and k == len(parts) - 1
            with precision.autocast():
                _, loss = model(*part)
            loss = loss * share
            loss_sum = loss.detach().float() if loss_sum is None else loss_sum + loss.detach().float()
            scaler.scale(loss / n_micro).backward()
    return loss_sum / n_micro


def optimizer_step(params, optimizer, scaler, grad_clip: float) -> None:
    """Clip the global gradient norm of `params` to grad_clip (0: no clipping), step, zero the grads."""
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
