"""Train a GPT on one corpus: python train.py [config/preset.py] [--key=value ...]

With no preset, config/default.py is used (a small RoPE char model on the embedded pydocs corpus).
Multi-GPU / multi-node: torchrun --standalone --nproc_per_node=8 train.py config/shakespeare_char.py

A run directory (`out_dir`) holds config.json (resolved model + train config), env.json (git SHA,
versions, device), metrics.jsonl (one JSON object per log or eval event; eval rows carry `val_loss`)
and ckpt.pt (the latest state, written atomically, read with torch.load(weights_only=True)).

Reproducibility: `seed` fixes the initial weights and dropout, `data_seed` the batch order. The batch
of iteration `it` (micro-step `m` of the global accumulation) is drawn from
np.random.default_rng((data_seed, it, m)), a pure function, so `--resume` replays exactly what an
uninterrupted run would see, and a DDP run sees the same batches as one process with the same global
gradient_accumulation_steps. Validation uses a fixed set of batches (EVAL_SEED), identical in every
eval of every run, so schemes are compared on the same data.
"""

import contextlib
import dataclasses
import json
import math
import os
import pickle  # only for the exception type torch.load raises on a corrupt file
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from configurator import check_ints, parse_config
from data.corpora import DownloadError, write_atomic
from data.prepare import DATA_DIR, load_splits, prepare
from data.tokenizers import get_tokenizer
from model import GPT, ModelConfig

REPO = Path(__file__).resolve().parent
DEFAULT_PRESET = REPO / "config" / "default.py"
EVAL_SEED = 1234  # fixed validation (and train-estimate) batches, shared by every run
DTYPES = ("auto", "float32", "bfloat16", "float16")
# Dense bf16 tensor-core peak FLOP/s for MFU, by substring of the CUDA device name, first match wins
# (vendor datasheets; so "H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
]


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
    device: str = "auto"  # auto = cuda > mps > cpu; or any torch device string
    dtype: str = "auto"  # auto = bfloat16 on CUDA if supported (else float16), float32 elsewhere
    compile: bool = False
    resume: bool = False  # continue from out_dir/ckpt.pt
    sample_tokens: int = 200  # tokens to sample at the end (0: none)

    def __post_init__(self):
        ge_1 = ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval")
        ge_0 = ("max_iters", "warmup_iters", "lr_decay_iters", "seed", "data_seed", "sample_tokens")
        check_ints(self, ge_1, 1)
        check_ints(self, ge_0, 0)
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
                self.device == "auto" or _is_device(self.device),
                "'auto' or a torch device: cpu, cuda:1, mps",
            ),
            "out_dir": (bool(self.out_dir), "non-empty"),
            "dataset": (bool(self.dataset), "a corpus name or a path to a text file"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device by its name, None when it is not in PEAK_BF16_FLOPS."""
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in device_name), None)


def _is_device(name: str) -> bool:
    try:
        torch.device(name)
    except RuntimeError:
        return False
    return True


# ----------------------------------------------------------------------------- data


def windows_at(data: np.ndarray, block_size: int, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of block_size + 1 tokens at `starts` as (x, y) int64 CPU tensors, (B, T) each."""
    buf = torch.from_numpy(data[starts[:, None] + np.arange(block_size + 1)].astype(np.int64))  # (B, T+1)
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # inputs, next-token targets: (B, T) each


def get_batch(data: np.ndarray, block_size: int, batch_size: int, seed) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (x, y) of int64 token ids, (B, T) each on the CPU, y shifted by one. The window
    starts depend only on `seed` (an int or a tuple of ints for np.random.default_rng)."""
    starts = np.random.default_rng(seed).integers(0, len(data) - block_size, size=batch_size)
    return windows_at(data, block_size, starts)


def fixed_eval_batches(data: np.ndarray, block_size: int, batch_size: int, n_batches: int, seed: int):
    """`n_batches` (x, y) CPU batches of shape (batch_size, block_size), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    return [
        windows_at(data, block_size, rng.integers(0, len(data) - block_size, size=batch_size))
        for _ in range(n_batches)
    ]


def get_lr(it: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, cosine decay to min_lr at lr_decay_iters, then min_lr (nanoGPT)."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.lr_decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


# ----------------------------------------------------------------------------- helpers


def auto_device(device: str = "auto") -> str:
    """`device` itself, or for "auto" the best available: cuda > mps > cpu."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def _resolve_device(cfg: TrainConfig) -> tuple[str, torch.dtype]:
    """(device, compute dtype) for the `auto` settings; a torchrun process takes the GPU of its LOCAL_RANK."""
    device = auto_device(cfg.device)
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={cfg.device!r} but CUDA is not available; use --device=cpu or --device=auto"
        )
    if kind == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "float32" if kind != "cuda" else "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return device, getattr(torch, dtype)


def _load_data(cfg: TrainConfig, block_size: int, ddp: bool, master: bool) -> tuple[dict, dict]:
    """Prepare the dataset on first use (rank 0; the others wait); return meta and memory-mapped splits."""
    if ddp and not master:
        dist.barrier()
    folder = prepare(cfg.dataset, cfg.tokenizer, cfg.data_dir or DATA_DIR)
    if ddp and master:
        dist.barrier()
    meta, splits = load_splits(folder)
    for split, data in splits.items():
        if len(data) < block_size + 1:
            raise ValueError(
                f"the {split} split of dataset {cfg.dataset!r} has {len(data)} tokens but block_size="
                f"{block_size} needs at least {block_size + 1}; lower --block_size or use a longer text"
            )
    return meta, splits


def _load_checkpoint(path: Path, model_cfg: ModelConfig, cfg: TrainConfig, meta: dict) -> dict:
    """The checkpoint to resume from, after checking that it matches this model, corpus and max_iters."""
    if not path.is_file():
        raise ValueError(f"resume=True but there is no checkpoint at {path}; drop --resume to start afresh")
    ckpt, _, _ = read_checkpoint(path)
    saved = ckpt["model_config"]
    diff = {k: (v, saved.get(k)) for k, v in model_cfg.to_dict().items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            f"resume: the model config differs from the checkpoint's, {{key: (given, saved)}} = {diff}; "
            "pass the run's preset and overrides again, or use a new out_dir"
        )
    if (ckpt["meta"]["source_sha256"], ckpt["meta"]["tokenizer"]) != (meta["source_sha256"], cfg.tokenizer):
        raise ValueError(
            f"resume: {path} was trained on {ckpt['meta']['source']} ({ckpt['meta']['tokenizer']})"
        )
    if ckpt["iter_num"] > cfg.max_iters:
        raise ValueError(f"resume: the checkpoint is at iter {ckpt['iter_num']} > max_iters={cfg.max_iters}")
    return ckpt


def _env_info(device: str, world_size: int) -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_sha": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),  # tracked files changed since that commit
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "device": device,
        "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
        "world_size": world_size,
        "argv": sys.argv,
    }


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (`write_atomic`)."""
    text = json.dumps(obj, indent=2) + "\n"
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


class _StopSignals:
    """While active, SIGINT (Ctrl-C) and SIGTERM only set `requested`; the loop then saves and stops at the
    end of the iteration. A second signal acts as usual (Ctrl-C twice kills)."""

    def __init__(self):
        self.requested, self.previous = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signum, self.previous[signum])
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this iteration", flush=True)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------- training


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Run one training job in `train_cfg.out_dir`, resuming from its ckpt.pt when `train_cfg.resume`.

    `model_cfg.vocab_size` is replaced by the dataset's (meta.json). Under torchrun (RANK set) this is
    DDP: NCCL on CUDA, gloo on the CPU. Evaluation happens at iter 0, every eval_interval and at max_iters,
    and each eval overwrites ckpt.pt with the current state (the latest, not the best). Ctrl-C or SIGTERM
    saves a checkpoint and returns with `interrupted` set. A non-finite loss raises FloatingPointError and
    leaves the last good checkpoint in place.

    Returns:
        A summary: out_dir, iters (completed), final_val_loss and final_train_loss (the last eval, on the
        fixed batches), best_val_loss, tokens_per_sec and ms_per_iter (medians over training steps, evals
        excluded; tokens of all processes), mfu (CUDA with a known peak, else None), elapsed_s, num_params
        (non-embedding), interrupted, sample (the text printed at the end, or None).
    """
    cfg = train_cfg
    ddp = "RANK" in os.environ  # launched by torchrun
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    master = rank == 0
    if cfg.gradient_accumulation_steps % world:
        raise ValueError(
            f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple of the number "
            f"of processes, {world}"
        )
    gas = cfg.gradient_accumulation_steps // world  # micro-steps per process
    device, ptdtype = _resolve_device(cfg)
    device_type = torch.device(device).type
    out, T = Path(cfg.out_dir), model_cfg.block_size
    ckpt_path = out / "ckpt.pt"
    with contextlib.ExitStack() as stack:
        if ddp and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
            stack.callback(dist.destroy_process_group)
        if device_type == "cuda":
            torch.cuda.set_device(device)
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls left outside autocast
        meta, splits = _load_data(cfg, T, ddp, master)
        model_cfg = dataclasses.replace(model_cfg, vocab_size=meta["vocab_size"])
        ckpt = _load_checkpoint(ckpt_path, model_cfg, cfg, meta) if cfg.resume else None
        start = ckpt["iter_num"] if ckpt else 0

        torch.manual_seed(cfg.seed)
        raw_model = GPT(model_cfg).to(device)
        betas = (cfg.beta1, cfg.beta2)
        optimizer = raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, betas, device_type)
        scaler = torch.amp.GradScaler(device_type, enabled=ptdtype == torch.float16)
        if ckpt:
            raw_model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
        if ckpt and len(ckpt["rng"]) == world:  # dropout continues exactly where it stopped
            torch.set_rng_state(ckpt["rng"][rank]["torch"])
            if device_type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"][rank]["cuda"], device)
        elif ckpt or rank:  # distinct dropout streams per rank (resuming on another world size is not exact)
            torch.manual_seed(cfg.seed + rank + start)
        model = eval_model = torch.compile(raw_model) if cfg.compile else raw_model
        if ddp:  # eval_model stays unwrapped: evals are not synchronised passes. Buffers are deterministic.
            model = DDP(
                model, device_ids=[device] if device_type == "cuda" else None, broadcast_buffers=False
            )

        def to_device(t: torch.Tensor) -> torch.Tensor:  # pinned memory: the copy overlaps queued GPU work
            return t.pin_memory().to(device, non_blocking=True) if device_type == "cuda" else t.to(device)

        amp = torch.autocast(device_type, dtype=ptdtype, enabled=ptdtype != torch.float32)
        eval_sets = {}  # the same batches every eval and every run; each rank takes its share
        for split, data in splits.items():
            batches = fixed_eval_batches(data, T, cfg.batch_size, cfg.eval_iters, EVAL_SEED)[rank::world]
            eval_sets[split] = [(to_device(x), to_device(y)) for x, y in batches]

        @torch.no_grad()
        def evaluate() -> tuple[float, float]:  # mean loss on the fixed (val, train) batches
            eval_model.eval()
            sums = torch.zeros(2, device=device)
            for i, split in enumerate(("val", "train")):
                for x, y in eval_sets[split]:
                    with amp:
                        sums[i] += eval_model(x, y)[1].float()
            if ddp:
                dist.all_reduce(sums)
            eval_model.train()
            return tuple((sums / cfg.eval_iters).tolist())

        def save(it: int) -> None:
            rng = {"torch": torch.get_rng_state()}
            if device_type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            rngs = [rng]
            if ddp:  # every rank's dropout state, so that a DDP resume is exact too
                rngs = [None] * world
                dist.all_gather_object(rngs, rng)
            if master:
                state = {
                    "model": raw_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "model_config": model_cfg.to_dict(),
                    "train_config": dataclasses.asdict(cfg),
                    "meta": meta,  # the tokenizer, so sample.py needs nothing but this file
                    "iter_num": it,  # iterations done
                    "best_val_loss": best,
                    "elapsed_s": time.perf_counter() - t0,
                    "rng": rngs,
                }
                # atomic: a crash mid-write leaves the previous checkpoint intact
                write_atomic(ckpt_path, lambda f: torch.save(state, f))

        metrics = None
        if master:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "config.json", {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg)})
            write_json(out / "env.json", _env_info(device, world))
            path = out / "metrics.jsonl"
            old = path.read_text(encoding="utf-8").splitlines() if ckpt and path.exists() else []
            # a resumed run continues the log; rows from after the checkpoint will be replayed, drop them
            path.write_text("".join(r + "\n" for r in old if json.loads(r)["iter"] < start), encoding="utf-8")
            metrics = stack.enter_context(open(path, "a", encoding="utf-8"))

        def log(message: str, **row) -> None:
            if master:
                metrics.write(json.dumps(row | {"elapsed_s": time.perf_counter() - t0}) + "\n")
                metrics.flush()
                tqdm.write(message)

        tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * T  # all processes
        name = torch.cuda.get_device_name(device) if device_type == "cuda" else ""
        peak = world * (peak_bf16_flops(name) or math.nan)
        flops_per_iter = raw_model.flops_per_token(T) * tokens_per_iter  # for MFU, once: not per step
        if master:
            print(f"model: {json.dumps(model_cfg.to_dict())}\ntrain: {json.dumps(dataclasses.asdict(cfg))}")
            print(
                f"{raw_model.num_params() / 1e6:.2f}M non-embedding parameters, "
                f"{tokens_per_iter:,} tokens/iter, {world} process(es) on {device}, {str(ptdtype)[6:]}"
                + (f", resuming at iter {start}" if ckpt else "")
            )

        best = ckpt["best_val_loss"] if ckpt else math.inf
        t0 = time.perf_counter() - (ckpt["elapsed_s"] if ckpt else 0.0)
        last_eval, saved_at, step_times, stopping, it = (None, None), start, [], False, start
        stop = stack.enter_context(_StopSignals())
        quiet = not (progress and master and sys.stderr.isatty())
        bar = stack.enter_context(tqdm(total=cfg.max_iters, initial=start, disable=quiet, dynamic_ncols=True))
        while True:
            if it % cfg.eval_interval == 0 or it == cfg.max_iters:
                last_eval = evaluate()
                if not all(map(math.isfinite, last_eval)):
                    raise FloatingPointError(
                        f"eval loss (val, train) = {last_eval} at iter {it}; stopped. "
                        f"{ckpt_path} keeps the last good state (iter {saved_at})"
                    )
                best = min(best, last_eval[0])
                msg = f"iter {it}: val loss {last_eval[0]:.4f}, train loss {last_eval[1]:.4f}"
                log(msg, iter=it, val_loss=last_eval[0], train_loss=last_eval[1])
            if it % cfg.eval_interval == 0 or it == cfg.max_iters or stopping:
                save(it)
                saved_at = it
            if it >= cfg.max_iters or stopping:
                break

            lr = get_lr(it, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t_step = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for micro in range(gas):
                seed = (cfg.data_seed, it, rank * gas + micro)  # micro-step index in the global accumulation
                x, y = map(to_device, get_batch(splits["train"], T, cfg.batch_size, seed))
                if ddp:  # all-reduce gradients only on the last micro-step
                    model.require_backward_grad_sync = micro == gas - 1
                with amp:
                    _, loss = model(x, y)
                loss_sum += loss.detach().float()
                scaler.scale(loss / gas).backward()
            # one small all-reduce: mean loss (logged, NaN check) and stop flag, so that all ranks agree
            stats = torch.stack([loss_sum / gas, torch.tensor(float(stop.requested), device=device)])
            if ddp:
                dist.all_reduce(stats)
            loss_val, n_stop = stats.tolist()  # a device sync: the NaN check and the timings need it
            loss_val, stopping = loss_val / world, n_stop > 0
            if not math.isfinite(loss_val):
                raise FloatingPointError(
                    f"train loss is {loss_val} at iter {it}; stopped. {ckpt_path} keeps the last good state "
                    f"(iter {saved_at}). Try a lower --learning_rate, more --warmup_iters or --grad_clip=1"
                )
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

            dt = time.perf_counter() - t_step
            step_times.append(dt)
            tok_s, mfu = tokens_per_iter / dt, flops_per_iter / dt / peak
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
            if it % cfg.log_interval == 0:
                msg = f"iter {it}: loss {loss_val:.4f}, lr {lr:.2e}, {1000 * dt:.1f} ms, {tok_s:,.0f} tok/s"
                extra = {"mfu": mfu} if math.isfinite(mfu) else {}
                msg += f", mfu {100 * mfu:.1f}%" if extra else ""
                row = dict(iter=it, train_loss=loss_val, lr=lr, tokens_per_sec=tok_s, ms_per_iter=1000 * dt)
                log(msg, **row, **extra)
            it += 1
        bar.close()

        step = float(np.median(step_times[1:] or step_times)) if step_times else math.nan  # [1:]: warm-up
        mfu = flops_per_iter / step / peak
        summary = {
            "out_dir": str(out),
            "iters": it,
            "final_val_loss": last_eval[0],
            "final_train_loss": last_eval[1],
            "best_val_loss": best,
            "tokens_per_sec": tokens_per_iter / step if step_times else None,
            "ms_per_iter": 1000 * step if step_times else None,
            "mfu": mfu if math.isfinite(mfu) else None,
            "elapsed_s": time.perf_counter() - t0,
            "num_params": raw_model.num_params(),
            "interrupted": stopping,
            "sample": None,
        }
        if master:
            print(f"summary: {json.dumps({k: v for k, v in summary.items() if k != 'sample'})}")
        if stopping and master:
            print(f"stopped at iter {it}; continue with --resume ({ckpt_path})")
        elif master and cfg.sample_tokens:
            from sample import generate_text  # here, not at the top: sample.py imports this module

            tok = get_tokenizer(meta)
            prompt = "\n" if "\n" in meta.get("chars", "\n") else tok.decode([0])
            torch.manual_seed(cfg.seed)
            with amp:
                summary["sample"] = generate_text(raw_model.eval(), tok, prompt, cfg.sample_tokens)[0]
            print(f"---------- sample (temperature 0.8, top_k 200) ----------{summary['sample']}", flush=True)
    return summary


def read_checkpoint(path: Path, device="cpu") -> tuple[dict, ModelConfig, TrainConfig]:
    """(checkpoint dict, its model config, its train config) from `path`, read with weights_only=True. A file
    that is not a readable nanorope checkpoint (truncated, corrupt, another program's) is a ValueError."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        return ckpt, ModelConfig(**ckpt["model_config"]), TrainConfig(**ckpt["train_config"])
    except (RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path} is not a readable nanorope checkpoint ({type(e).__name__}); retrain or restore it"
        ) from None


def load_run(run_dir, device="cpu") -> tuple[GPT, ModelConfig, TrainConfig, dict]:
    """Rebuild (model in eval mode on `device`, its config, the train config, the dataset's meta) from
    run_dir/ckpt.pt alone, read with weights_only=True."""
    path = Path(run_dir) / "ckpt.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train one first: python train.py --out_dir={run_dir}"
        )
    ckpt, model_cfg, train_cfg = read_checkpoint(path, device)
    model = GPT(model_cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), model_cfg, train_cfg, ckpt["meta"]


def main(argv: list[str] | None = None) -> dict:
    """CLI: `[preset.py] [--key=value ...]`; without a preset, config/default.py."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__.split("\n\n")[0] + "\n\nkeys (defaults; presets in config/ override them):")
        for t in (ModelConfig, TrainConfig):
            print("  " + ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(t)))
        raise SystemExit(0)
    if not argv or argv[0].startswith("--"):
        argv.insert(0, str(DEFAULT_PRESET))
    return train(*parse_config(argv, ModelConfig, TrainConfig))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FloatingPointError, DownloadError) as e:
        sys.exit(f"error: {e}")
