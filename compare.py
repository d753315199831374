"""Compare positional encodings: train a grid (schemes x seeds), measure length extrapolation and
per-position loss on the validation split, write report.md, results.json, CSVs and plots (compare_report.py).

    python compare.py config/ablation_cpu.py        # 5 schemes x 3 seeds, Tiny Shakespeare (char), CPU
    python compare.py --quick                        # = config/ablation_quick.py, about a minute
    python compare.py --eval-only out/RUN [out/RUN2 | GRID_DIR ...] [--key=value ...]

Every run is train.py's `train` with one config except `pos_enc` and the entry's own knobs, so all
schemes see the same batches, eval batches and init recipe; replicate k uses seed + k, data_seed + k.
Runs live in out_dir/<entry>-seed<k>/ (a train.py run dir plus compare.json, the record of the run); an
interrupted grid resumes: finished runs are skipped, an unfinished one continues from its checkpoint.

Evaluation (L = training block_size, T = evaluation length), on the validation split:
- Scored text: the first R = n * 8L tokens of val, n = min(eval_windows, len(val) // 8L); the same for
  every run, and for every T up to the last R mod T tokens.
- Non-overlapping (Press et al. 2022): consecutive windows of T tokens, each token scored once with the
  context its window gives it (0 .. T-1 tokens).
- Sliding window, stride s: windows of T tokens every s tokens; the first window scores all its tokens,
  each later one only those no earlier window scored (its last s), so every token is scored once, with
  T - s or more tokens of context after the first window. stride >= T is the non-overlapping evaluation.
- Per-position loss: mean loss at each position of the non-overlapping windows of the longest T.
- `learned` has no rows past L: n/a. RoPE runs are also evaluated with each context-extension method of
  rope.py applied at inference, untrained, with factor = T / L and original length L (at T <= L every
  method is the identity, so those cells repeat plain rope). With finetune_iters > 0, copies of each rope
  run are fine-tuned at 2L (plain, and each method at factor 2) and evaluated as they are.
Numbers are means over seeds ± sample standard deviation (ddof=1).
"""

import contextlib
import copy
import dataclasses
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from compare_report import read_metrics, slug, write_report
from configurator import check_ints, parse_config
from data.corpora import DownloadError
from data.prepare import DATA_DIR, load_splits, prepare
from model import GPT, POS_ENCODINGS, ModelConfig
from train import TrainConfig, auto_device, get_batch, load_run, train, windows_at, write_json

QUICK_PRESET = Path(__file__).resolve().parent / "config" / "ablation_quick.py"
METHODS = ("linear", "ntk", "dynamic", "yarn")
EVAL_TOKENS = 16384  # tokens per evaluation forward pass
FT_SEED = 7919  # batch stream of the fine-tune, apart from the training one


@dataclass(frozen=True)
class CompareConfig:
    """What compare.py adds to ModelConfig and TrainConfig (one flat --key=value namespace).

    Base-config knobs of one scheme (e.g. --rope_base) apply to the entries of that scheme only."""

    schemes: str = "learned,sinusoidal,rope,alibi,none"  # entries pos_enc[:knob=value...], e.g. rope:rope_dim=16
    n_seeds: int = 3  # replicates per entry
    eval_lengths: str = "1,1.25,1.5,2,4,8"  # multiples of block_size
    eval_windows: int = 64  # cap on the number of 8L-token validation windows scored
    stride: int | None = None  # sliding-window stride in tokens; None -> block_size
    rope_methods: str = "linear,ntk,dynamic,yarn"  # applied at inference to rope runs; "" for none
    finetune_iters: int = 0  # > 0: also fine-tune rope runs at 2L for this many steps
    finetune_lr: float = 1e-4  # constant learning rate of the fine-tune
    report_dir: str | None = None  # None: the grid's out_dir (--eval-only: the runs' common parent)

    def __post_init__(self):
        for entry in self.entries():
            parse_entry(entry)
        check_ints(self, ("n_seeds", "eval_windows"), 1)
        check_ints(self, ("finetune_iters",), 0)
        if self.stride is not None and (isinstance(self.stride, bool) or self.stride < 1):
            raise ValueError(f"stride must be a positive integer or None, got {self.stride!r}")
        if not self.finetune_lr > 0:
            raise ValueError(f"finetune_lr must be > 0, got {self.finetune_lr!r}")
        self.multiples()
        if set(self.methods()) - set(METHODS):
            raise ValueError(f"rope_methods={self.rope_methods!r}: allowed are {list(METHODS)}")

    def entries(self) -> list[str]:
        entries = [e.strip() for e in self.schemes.split(",") if e.strip()]
        if not entries:
            raise ValueError(f"schemes must list at least one entry, got {self.schemes!r}")
        return entries

    def multiples(self) -> list[float]:
        try:
            multiples = sorted({float(m) for m in self.eval_lengths.split(",") if m.strip()})
        except ValueError:
            multiples = []
        if not multiples or multiples[0] <= 0:
            raise ValueError(f"eval_lengths must be positive multiples of block_size like '1,2,4', got "
                             f"{self.eval_lengths!r}")
        return multiples

    def methods(self) -> list[str]:
        return [m.strip() for m in self.rope_methods.split(",") if m.strip()]

    def lengths(self, block_size: int) -> list[int]:
        return sorted({max(1, round(m * block_size)) for m in self.multiples()})

    def eval_settings(self, block_size: int) -> dict:
        """What a stored evaluation depends on; a change re-evaluates the run."""
        keys = ("eval_windows", "rope_methods", "finetune_iters", "finetune_lr")
        return {"lengths": self.lengths(block_size), "stride": self.stride or block_size} | {
            k: getattr(self, k) for k in keys}


def parse_entry(entry: str) -> tuple[str, dict]:
    """'rope:rope_base=500' -> ('rope', {'rope_base': 500.0}); values coerced and checked by ModelConfig."""
    name, *pairs = entry.strip().split(":")
    if name not in POS_ENCODINGS:
        raise ValueError(f"scheme {name!r} in {entry!r} is not one of {sorted(POS_ENCODINGS)}")
    knobs = [p.partition("=") for p in pairs]
    if any(not eq or key in ("pos_enc", "block_size") for key, eq, _ in knobs):
        raise ValueError(f"scheme entry {entry!r}: write pos_enc[:knob=value...] (block_size is shared)")
    (cfg,) = parse_config([f"--pos_enc={name}", *(f"--{k}={v}" for k, _, v in knobs)], ModelConfig)
    return name, {k: getattr(cfg, k) for k, _, _ in knobs}


def scheme_config(base: ModelConfig, entry: str) -> ModelConfig:
    """`base` with the entry's pos_enc and knobs; base knobs that the scheme does not use are dropped."""
    name, knobs = parse_entry(entry)
    unused = {k: None for cls in POS_ENCODINGS.values() for k in cls.knobs if k not in POS_ENCODINGS[name].knobs}
    return dataclasses.replace(base, pos_enc=name, **unused, **knobs)


def label_of(cfg: ModelConfig) -> str:
    """The entry of a run trained elsewhere: pos_enc plus the knobs it set."""
    knobs = [f"{k}={json.dumps(getattr(cfg, k), separators=(',', ':'))}"
             for k in POS_ENCODINGS[cfg.pos_enc].knobs if getattr(cfg, k) is not None]
    return ":".join([cfg.pos_enc, *knobs])


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def token_losses(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every next-token target: x, y (B, T) -> (B, T) float32."""
    logits, _ = model(x, y)
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
def eval_windows(model: GPT, tokens: np.ndarray, T: int, stride: int, device="cpu") -> tuple[float, np.ndarray]:
    """Loss of `model` on tokens[1:], each predicted from what precedes it in its window (window_plan).

    Returns:
        The mean loss over scored tokens, and the mean loss at each window position, (T,) (NaN where
        nothing was scored; the per-position loss when stride >= T).
    """
    starts, skip = window_plan(len(tokens) - 1, T, stride)
    batch = max(1, min(EVAL_TOKENS // T, 2**26 // (T * model.config.vocab_size)))  # bounds (B, T, V) logits
    amp = torch.autocast("cuda", torch.bfloat16) if str(device).startswith("cuda") else contextlib.nullcontext()
    total, count = np.zeros(T), np.zeros(T)
    for i in range(0, len(starts), batch):
        x, y = (t.to(device) for t in windows_at(tokens, T, np.asarray(starts[i : i + batch])))  # (b, T)
        with amp:
            losses = token_losses(model, x, y).double().cpu().numpy()  # (b, T)
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
        model.transformer.wpe = POS_ENCODINGS["rope"](cfg).to(next(model.parameters()).device)
    try:
        yield model
    finally:
        model.transformer.wpe = original


def method_scaling(method: str, factor: float, block_size: int) -> dict:
    """rope.py's scaling dict for a context-extension method at `factor` times the training length."""
    if method in ("linear", "ntk"):
        return {"rope_type": method, "factor": factor}
    return {"rope_type": method, "factor": factor, "original_max_position_embeddings": block_size}


def eval_variant(model: GPT, region: np.ndarray, cmp: CompareConfig, scaling_at=None, device="cpu") -> dict:
    """Non-overlapping and sliding losses at every evaluation length ({str(T): loss or None}) and the
    per-position loss at the longest one; `scaling_at(T)` is the rope scaling to apply at length T."""
    L = model.config.block_size
    stride = cmp.stride or L
    out = {"nonoverlap": {}, "sliding": {}, "per_position": None}
    for T in cmp.lengths(L):
        if (model.transformer.wpe.max_len or T) < T:  # learned: no rows past block_size
            out["nonoverlap"][str(T)] = out["sliding"][str(T)] = None
            continue
        tokens = region[: (len(region) - 1) // T * T + 1]
        with rope_scaled(model, scaling_at(T) if scaling_at else None):
            loss, per_pos = eval_windows(model, tokens, T, T, device)
            out["nonoverlap"][str(T)], out["per_position"] = loss, per_pos.tolist()
            out["sliding"][str(T)] = loss if stride >= T else eval_windows(model, tokens, T, stride, device)[0]
    return out


def finetune(model: GPT, data: np.ndarray, tcfg: TrainConfig, cmp: CompareConfig, device) -> GPT:
    """Train on at 2L, constant lr, half the batch (the tokens per step of training); Chen et al. 2023
    fine-tune 1000 steps, this is the same idea at the scale of a CPU run."""
    T = 2 * model.config.block_size
    betas = (tcfg.beta1, tcfg.beta2)
    opt = model.configure_optimizers(tcfg.weight_decay, cmp.finetune_lr, betas, torch.device(device).type)
    model.train()
    for it in range(cmp.finetune_iters):
        x, y = get_batch(data, T, max(1, tcfg.batch_size // 2), (tcfg.data_seed, FT_SEED, it))
        model(x.to(device), y.to(device))[1].backward()
        if tcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.eval()


def val_region(tcfg: TrainConfig, meta: dict, block_size: int, cmp: CompareConfig):
    """The scored validation tokens (module docstring) and the train split (for fine-tuning)."""
    folder = prepare(tcfg.dataset, tcfg.tokenizer, tcfg.data_dir or DATA_DIR)
    folder_meta, splits = load_splits(folder)
    if folder_meta["source_sha256"] != meta["source_sha256"]:
        raise ValueError(f"{folder} does not hold the text this run was trained on")
    val, tr = splits["val"], splits["train"]
    n = min(cmp.eval_windows, (len(val) - 1) // (8 * block_size))
    if n < 1:
        raise ValueError(f"the val split has {len(val)} tokens, fewer than 8 * block_size + 1 = {8 * block_size + 1}")
    return np.asarray(val[: n * 8 * block_size + 1]), tr


def evaluate_run(run: tuple, cmp: CompareConfig, device="cpu") -> dict:
    """Every evaluation of one run, `load_run`'s (model, model config, train config, meta) on `device`:
    {"eval": {variant: eval_variant(...)}, "params", "eval_s", "eval_tokens"}; variant "" is the model
    as trained, a method name the method applied at inference, "ft" / "<method>+ft" a copy fine-tuned at 2L."""
    t0 = time.perf_counter()
    model, mcfg, tcfg, meta = run
    region, train_data = val_region(tcfg, meta, mcfg.block_size, cmp)
    L = mcfg.block_size
    results = {"": eval_variant(model, region, cmp, device=device)}
    if mcfg.pos_enc == "rope" and mcfg.rope_scaling is None:
        for m in cmp.methods():
            at = lambda T, m=m: method_scaling(m, T / L, L) if T > L else None
            results[m] = eval_variant(model, region, cmp, at, device)
        for m in [None, *cmp.methods()] if cmp.finetune_iters else []:
            tuned = copy.deepcopy(model)
            with rope_scaled(tuned, method_scaling(m, 2.0, L) if m else None):
                finetune(tuned, train_data, tcfg, cmp, device)
                results[f"{m}+ft" if m else "ft"] = eval_variant(tuned, region, cmp, device=device)
    params = {"total": model.num_params(False), "non_embedding": model.num_params(True),
              "position": sum(p.numel() for p in model.transformer.wpe.parameters())}
    return {"eval": results, "params": params, "eval_s": time.perf_counter() - t0, "eval_tokens": len(region) - 1}


# ----------------------------------------------------------------------------- grid


def run_grid(model_cfg: ModelConfig, train_cfg: TrainConfig, cmp: CompareConfig, progress=True) -> list[dict]:
    """Train and evaluate every (entry, seed) not done yet; return the records (compare.json) of all."""
    records, jobs = [], list(itertools.product(cmp.entries(), range(cmp.n_seeds)))
    for entry, k in (bar := tqdm(jobs, desc="grid", disable=not progress, dynamic_ncols=True)):
        mcfg = scheme_config(model_cfg, entry)
        tcfg = dataclasses.replace(train_cfg, out_dir=str(Path(train_cfg.out_dir) / f"{slug(entry)}-seed{k}"),
                                   seed=train_cfg.seed + k, data_seed=train_cfg.data_seed + k, resume=False)
        bar.set_postfix_str(f"{entry} seed {tcfg.seed}")
        run_dir, configs = Path(tcfg.out_dir), {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg)}
        path = run_dir / "compare.json"
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if record and record["configs"] != configs:
            raise ValueError(f"{run_dir} holds a run with another config; use a new --out_dir or delete it")
        if record is None:
            summary = train(mcfg, dataclasses.replace(tcfg, resume=(run_dir / "ckpt.pt").is_file()),
                            progress=progress)
            if summary["interrupted"]:
                raise KeyboardInterrupt
            record = {"label": entry, "seed": tcfg.seed, "configs": configs, "summary": summary}
            write_json(path, record)
        if record.get("eval_settings") != (settings := cmp.eval_settings(mcfg.block_size)):
            device = auto_device(tcfg.device)
            record |= evaluate_run(load_run(run_dir, device), cmp, device) | {"eval_settings": settings}
            write_json(path, record)
        records.append(record)
    return records


def eval_only(paths: list[str], cmp: CompareConfig, train_cfg: TrainConfig, progress=True) -> list[dict]:
    """Evaluate runs trained before; a path is a run dir (with ckpt.pt) or a folder of run dirs."""
    dirs = []
    for p in map(Path, paths):
        found = [p] if (p / "ckpt.pt").is_file() else sorted(d for d in p.glob("*/") if (d / "ckpt.pt").is_file())
        if not found:
            raise ValueError(f"{p} is neither a run dir (with ckpt.pt) nor a folder of run dirs")
        dirs += found
    records, device = [], auto_device(train_cfg.device)
    for d in tqdm(dirs, desc="eval", disable=not progress, dynamic_ncols=True):
        run = load_run(d, device)  # read once: evaluate_run gets it too
        _, mcfg, tcfg, _ = run
        old = json.loads((d / "compare.json").read_text(encoding="utf-8")) if (d / "compare.json").is_file() else {}
        rows = read_metrics(d)
        evals, steps = [r for r in rows if "val_loss" in r], [r for r in rows if "ms_per_iter" in r]
        summary = old.get("summary") or {  # train.py's summary, rebuilt from metrics.jsonl
            "out_dir": str(d), "iters": evals[-1]["iter"], "final_val_loss": evals[-1]["val_loss"],
            "final_train_loss": evals[-1]["train_loss"], "best_val_loss": min(r["val_loss"] for r in evals),
            "elapsed_s": rows[-1]["elapsed_s"]} | {
            k: float(np.median([r[k] for r in steps])) if steps else None for k in ("ms_per_iter", "tokens_per_sec")}
        records.append({"label": old.get("label", label_of(mcfg)), "seed": tcfg.seed, "summary": summary,
                        "configs": {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg)}}
                       | evaluate_run(run, cmp, device))
    if len({r["configs"]["model"]["block_size"] for r in records}) > 1:
        raise ValueError("--eval-only runs must share one block_size (the table's rows are multiples of it)")
    return records


def main(argv: list[str] | None = None, progress: bool = True) -> dict:
    """CLI entry (module docstring); returns what results.json holds."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python compare.py", *argv])
    paths = None
    if "--eval-only" in argv:
        i = argv.index("--eval-only")
        j = next((n for n in range(i + 1, len(argv)) if argv[n].startswith("--")), len(argv))
        paths, argv = argv[i + 1 : j], argv[:i] + argv[j:]
        if not paths:
            raise ValueError("--eval-only needs run dirs: --eval-only out/RUN [out/RUN2 ...]")
    if "--quick" in argv:
        argv.remove("--quick")
        if argv and not argv[0].startswith("--"):
            raise ValueError(f"--quick is the preset {QUICK_PRESET}; give one or the other, not {argv[0]!r} too")
        argv.insert(0, str(QUICK_PRESET))
    model_cfg, train_cfg, cmp = parse_config(argv, ModelConfig, TrainConfig, CompareConfig)
    t0 = time.perf_counter()
    if paths:
        records = eval_only(paths, cmp, train_cfg, progress)
        out = cmp.report_dir or os.path.commonpath([Path(r["summary"]["out_dir"]).resolve().parent for r in records])
    else:
        records = run_grid(model_cfg, train_cfg, cmp, progress)
        out = cmp.report_dir or train_cfg.out_dir
    return write_report(records, cmp, Path(out), command, time.perf_counter() - t0)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FloatingPointError, DownloadError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("stopped; the same command resumes the grid (finished runs and checkpoints are kept)")
