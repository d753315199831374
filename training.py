"""What a training run is and what one step does: TrainConfig, the learning-rate schedule, gradient
accumulation under the run's precision, and the clipped optimizer step. train.py's loop and the
fine-tune of evaluate.py both train through these, with the same precision policy and clipping."""

import math
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import check_ints
from runtime import DTYPES, Precision, is_device

MAX_SEED = 2**63 - 1  # seeds stay valid for torch.manual_seed after compare.py and DDP add small offsets


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run except the model. Defaults are nanoGPT's where it has one."""

    out_dir: str = "out"
    dataset: str = "pydocs"  # pydocs, shakespeare, verdict or a path to a UTF-8 .txt file
    tokenizer: str = "char"  # char or gpt2
    data_dir: str | None = None  # where prepared datasets live; None -> <repo>/data
    batch_size: int = 12  # sequences per micro-step per process
    gradient_accumulation_steps: int = 1  # global: split over DDP processes, so tokens/iter stay fixed
    max_iters: int = 2000
    learning_rate: float = 1e-3  # peak, after warmup
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_iters: int = 100
    lr_decay_iters: int = 2000  # cosine reaches min_lr here (nanoGPT: ~max_iters)
    weight_decay: float = 0.1  # on matrices and embeddings only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    eval_interval: int = 250  # also evaluates at iter 0 and at max_iters
    eval_iters: int = 20  # fixed batches per split per eval
    log_interval: int = 10
    seed: int = 1337  # init and dropout
    data_seed: int = 0  # batch order
    device: str = "auto"  # auto = cuda > mps > cpu; or cpu, cuda, cuda:N, mps
    dtype: str = "auto"  # auto = bfloat16 on CUDA if supported (else float16), float32 elsewhere
    compile: bool = False
    resume: bool = False  # continue from out_dir/ckpt.pt
    overwrite: bool = False  # start again in an out_dir that holds a run (replaces its checkpoint, metrics)
    sample_tokens: int = 200  # tokens to sample at the end (0: none)

    def __post_init__(self):
        ge_1 = ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval")
        ge_0 = ("max_iters", "warmup_iters", "lr_decay_iters", "sample_tokens")
        check_ints(self, ge_1, 1)
        check_ints(self, ge_0, 0)
        check_ints(self, ("seed", "data_seed"), 0, MAX_SEED)
        for name in ("learning_rate", "min_lr", "weight_decay", "grad_clip", "beta1", "beta2"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume=true continues the run in out_dir, overwrite=true replaces it: pick one")
        checks = {
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "min_lr": (0 <= self.min_lr <= self.learning_rate, f"in [0, learning_rate={self.learning_rate}]"),
            "warmup_iters": (
                self.warmup_iters <= self.lr_decay_iters,
                f"<= lr_decay_iters={self.lr_decay_iters}",
            ),
            "beta1": (0 <= self.beta1 < 1, "in [0, 1)"),
            "beta2": (0 <= self.beta2 < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "grad_clip": (self.grad_clip >= 0, ">= 0 (0 disables clipping)"),
            "tokenizer": (self.tokenizer in ("char", "gpt2"), "'char' or 'gpt2'"),
            "dtype": (self.dtype in DTYPES, f"one of {DTYPES}"),
            "device": (
                self.device == "auto" or is_device(self.device),
                "'auto' or a torch device: cpu, cuda:1, mps",
            ),
            "out_dir": (bool(self.out_dir), "non-empty"),
            "dataset": (bool(self.dataset), "a corpus name or a path to a text file"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")


def get_lr(it: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, cosine decay to min_lr at lr_decay_iters, then min_lr (nanoGPT)."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.lr_decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


def accumulate_gradients(model, micro_batches, n_micro: int, precision: Precision, scaler) -> torch.Tensor:
    """Forward and backward of `n_micro` micro-batches (x, y) or (x, y, positions), (B, T) each on the
    model's device, their losses scaled by 1 / n_micro (and by the grad scaler); returns their mean loss
    (fp32, detached). Under DDP the gradients are all-reduced on the last micro-step only."""
    loss_sum = None
    for micro, batch in enumerate(micro_batches):
        if isinstance(model, DDP):
            model.require_backward_grad_sync = micro == n_micro - 1
        with precision.autocast():
            _, loss = model(*batch)
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
