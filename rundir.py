"""The run directory: what train.py writes into `out_dir` and every tool reads back. Its one owner at a time
holds `.lock` (files.folder_lock): train.py, or compare.py's worker for a grid's run.

    config.json    resolved model + train config          env.json      git SHA, versions, device, argv
    metrics.jsonl  one JSON object per log or eval event (eval rows carry `val_loss`), appended
    ckpt.pt        the latest state: weights, optimizer, scaler, configs, dataset meta, RNG streams;
                   written atomically, read with torch.load(weights_only=True) (no pickle)
    summary.json   train()'s summary of the finished (or stopped) run
    compare.json   compare.py's record of a grid's run: label, seed, configs, summary, evaluation
"""

import dataclasses
import json
import pickle  # only for the exception type torch.load raises on a corrupt file
import sys
from pathlib import Path

import numpy as np
import torch

from configurator import make
from data.tokenizers import checkpoint_meta
from files import folder_lock, remove_stale_temps, write_atomic, write_json
from model import GPT, ModelConfig
from runtime import auto_device
from training import TrainConfig, model_at

CKPT, CONFIG, ENV, METRICS, SUMMARY = "ckpt.pt", "config.json", "env.json", "metrics.jsonl", "summary.json"
RECORD = "compare.json"
# Train keys a resume may change: where files go and what is only reported. Any other change would make
# the resumed run neither the old run nor a new one, so resume_checkpoint refuses it.
RESUMABLE_CHANGES = (
    "out_dir",
    "data_dir",
    "device",
    "compile",
    "resume",
    "overwrite",
    "max_iters",
    "eval_interval",
    "eval_iters",
    "log_interval",
    "sample_tokens",
    "log",
    "tensorboard_dir",
    "verbose",
)


def run_path(train_cfg: TrainConfig) -> Path:
    out = Path(train_cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} is a file, not a folder; choose another --out_dir")
    return out


def lock(run_dir):
    """Own `run_dir` for the block (created if missing); a second owner is refused at once, by name."""
    hint = "wait for it to end, stop it (then continue it with --resume=true), or choose another --out_dir"
    return folder_lock(run_dir, hint)


def open_run_dir(train_cfg: TrainConfig) -> Path:
    """Decide what happens to what the (locked) run directory holds: a run with a checkpoint is continued
    only with resume=true and started again only with overwrite=true (which says so), never silently; the
    logs of a start that died before its first checkpoint are replaced. Temporary files of writes cut short
    (kill -9) are removed: the caller holds the lock, so no live process is writing them."""
    out = run_path(train_cfg)
    old = _describe(out)
    if old and not (train_cfg.resume or train_cfg.overwrite):
        raise ValueError(
            f"{out} already holds a run ({old}); continue it with --resume=true, start it again with "
            "--overwrite=true (replaces its checkpoint and metrics), or choose another --out_dir"
        )
    remove_stale_temps(out)
    if train_cfg.overwrite:
        if old:
            print(f"overwrite: replacing the run in {out} ({old})")
        for name in (SUMMARY, RECORD):  # they would describe a run that is no longer there
            (out / name).unlink(missing_ok=True)
    return out


def _describe(out: Path) -> str | None:
    """What a run directory holds, in a few words, or None when it holds no run to keep."""
    if not (out / CKPT).is_file():
        return None
    try:
        summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
        return f"{CKPT}, iter {summary['iters']}, final val loss {summary['final_val_loss']:.4f}"
    except (OSError, ValueError, KeyError, TypeError):
        return CKPT


def save_checkpoint(
    run_dir,
    model: GPT,
    optimizer,
    scaler,
    train_cfg: TrainConfig,
    meta: dict,
    *,
    iter_num: int,
    best_val_loss: float,
    elapsed_s: float,
    rng: list[dict],
) -> None:
    """Write run_dir/ckpt.pt atomically: a crash mid-write leaves the previous checkpoint intact.
    `rng` holds every rank's {"torch": state, "cuda": state} so that a resume continues dropout exactly."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "model_config": model.config.to_dict(),
        "train_config": dataclasses.asdict(train_cfg),
        "meta": checkpoint_meta(meta),  # the tokenizer, so sample.py needs nothing but this file
        "iter_num": iter_num,  # iterations done
        "best_val_loss": best_val_loss,
        "elapsed_s": elapsed_s,
        "rng": rng,
    }
    write_atomic(Path(run_dir) / CKPT, lambda f: torch.save(state, f))


def read_checkpoint(path) -> tuple[dict, ModelConfig, TrainConfig]:
    """(checkpoint dict on the CPU, its model config, its train config) from `path`, read with
    weights_only=True. A file that is not a consistent nanorope checkpoint (truncated, corrupt, another
    program's, fields of the wrong kind, weights or tokenizer that do not fit its config) is a ValueError;
    devices never enter here (load_run moves the model afterwards), so a device problem is never reported
    as a bad file. Configs pass the same checks as a command line's (configurator.make)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        _check_schema(ckpt)
        model_cfg = make(ModelConfig, ckpt["model_config"], "its model_config")
        train_cfg = make(TrainConfig, ckpt["train_config"], "its train_config")
        _check_consistent(ckpt, model_cfg)
        return ckpt, model_cfg, train_cfg
    except (RuntimeError, EOFError, KeyError, TypeError, IndexError, ValueError, pickle.UnpicklingError) as e:
        detail = f"{type(e).__name__}: {e}" if isinstance(e, ValueError) else type(e).__name__
        raise ValueError(
            f"{path} is not a readable nanorope checkpoint ({detail}); retrain or restore it"
        ) from None


# What save_checkpoint writes, field by field: (type, what it must hold).
SCHEMA = {
    "model": (dict, "tensors by name"),
    "optimizer": (dict, "an optimizer state"),
    "scaler": (dict, "a dict"),
    "model_config": (dict, "a dict"),
    "train_config": (dict, "a dict"),
    "meta": (dict, "a dict"),
    "iter_num": (int, "an integer >= 0"),
    "best_val_loss": (float, "a number"),
    "elapsed_s": (float, "a number"),
    "rng": (list, "a list of RNG states"),
}


def _check_schema(ckpt) -> None:
    """ValueError naming the first field of a loaded checkpoint that is missing or not of its kind."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"it holds a {type(ckpt).__name__}, not a dict")
    for key, (kind, what) in SCHEMA.items():
        value = ckpt.get(key)
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        ok = ok and not isinstance(value, bool) and not (kind is int and value < 0)
        if key == "model":
            ok = ok and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())
        if key == "rng":
            ok = ok and all(isinstance(r, dict) and torch.is_tensor(r.get("torch")) for r in value)
        if not ok:
            raise ValueError(f"its {key!r} is {type(value).__name__}, not {what}")
    meta = ckpt["meta"]
    vocab, chars = meta.get("vocab_size"), meta.get("chars")
    if isinstance(vocab, bool) or not isinstance(vocab, int) or meta.get("tokenizer") not in ("char", "gpt2"):
        raise ValueError("its 'meta' has no tokenizer and vocab_size")
    if chars is not None and not (isinstance(chars, list) and all(isinstance(c, str) for c in chars)):
        raise ValueError("its 'meta' chars are not a list of characters")


def _check_consistent(ckpt: dict, model_cfg: ModelConfig) -> None:
    """Before any model is built: the config asks for about as many weights as the file holds (so a
    crafted n_embd cannot make us allocate gigabytes; exact shapes are load_state_dict's check) and the
    tokenizer covers the vocabulary."""
    C, L = model_cfg.n_embd, model_cfg.n_layer
    implied = (model_cfg.padded_vocab_size + model_cfg.block_size) * C + L * (12 * C * C + 13 * C) + 2 * C
    held = sum(t.numel() for t in ckpt["model"].values())
    if implied > 2 * held + 2**20:  # learned tables and biases make `implied` an upper bound
        raise ValueError(f"model_config implies ~{implied:,} weights but the file holds {held:,}")
    meta = ckpt["meta"]
    chars = meta.get("chars")
    if meta["vocab_size"] != model_cfg.vocab_size or (chars is not None and len(chars) != meta["vocab_size"]):
        raise ValueError(f"tokenizer of vocab_size {meta['vocab_size']} does not match the model's")


def resume_checkpoint(run_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, meta: dict) -> dict:
    """The checkpoint to resume from, after checking that it matches this model, corpus and max_iters and
    that the run is not finished."""
    path = Path(run_dir) / CKPT
    if not path.is_file():
        raise ValueError(f"resume=True but there is no checkpoint at {path}; drop --resume to start afresh")
    ckpt, _, _ = read_checkpoint(path)
    saved_train = ckpt["train_config"]
    changed = {
        k: (v, saved_train.get(k))
        for k, v in dataclasses.asdict(train_cfg).items()
        if k not in RESUMABLE_CHANGES and saved_train.get(k) != v
    }
    if changed:
        raise ValueError(
            f"resume: the train config differs from the checkpoint's, {{key: (given, saved)}} = {changed}; "
            f"a resumed run continues exactly, so only {', '.join(RESUMABLE_CHANGES)} may change; "
            "use a new out_dir for a different run"
        )
    saved = ckpt["model_config"]
    in_effect = model_at(model_cfg, train_cfg, ckpt["iter_num"])  # DroPE's checkpoints are NoPE models
    kernels = ("attention",)  # how attention is computed, not what: a run may resume on another kernel
    diff = {
        k: (v, saved.get(k)) for k, v in in_effect.to_dict().items() if saved.get(k) != v and k not in kernels
    }
    if diff:
        raise ValueError(
            f"resume: the model config differs from the checkpoint's, {{key: (given, saved)}} = {diff}; "
            "pass the run's preset and overrides again, or use a new out_dir"
        )
    saved_data = (ckpt["meta"]["source_sha256"], ckpt["meta"]["tokenizer"])
    if saved_data != (meta["source_sha256"], train_cfg.tokenizer):
        raise ValueError(
            f"resume: {path} was trained on {ckpt['meta']['source']} ({ckpt['meta']['tokenizer']})"
        )
    if ckpt["iter_num"] > train_cfg.max_iters:
        raise ValueError(
            f"resume: the checkpoint is at iter {ckpt['iter_num']} > max_iters={train_cfg.max_iters}"
        )
    if ckpt["iter_num"] == train_cfg.max_iters:
        raise ValueError(
            f"{run_dir} is finished (iter {ckpt['iter_num']} = max_iters); train it further with a larger "
            f"--max_iters (past lr_decay_iters the learning rate stays at min_lr), or sample it: "
            f"python sample.py --out_dir={run_dir}"
        )
    return ckpt


def load_run(run_dir, device="cpu") -> tuple[GPT, ModelConfig, TrainConfig, dict]:
    """Rebuild (model in eval mode on `device`, its config, the train config, the dataset's meta) from
    run_dir/ckpt.pt alone, read with weights_only=True."""
    path = Path(run_dir) / CKPT
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train one first: python train.py --out_dir={run_dir}"
        )
    device = auto_device(device)  # before reading: a missing GPU is not a bad checkpoint
    ckpt, model_cfg, train_cfg = read_checkpoint(path)
    model = GPT(model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # missing, unexpected or mis-shaped weights
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        msg = f"{path}: its weights do not fit its model_config ({first}); retrain or restore it"
        raise ValueError(msg) from None
    return model.to(device).eval(), model_cfg, train_cfg, ckpt["meta"]


def write_configs(run_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, env: dict) -> None:
    """config.json (the resolved configs) and env.json (`runtime.env_info`), creating the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)})
    write_json(run_dir / ENV, env)


def read_metrics(run_dir) -> list[dict]:
    """The rows of a run's metrics.jsonl, in order. A torn last line (a crash or a full disk mid-write) is
    dropped with a warning on stderr: the checkpoint, not the log, says where the run is. A bad line
    elsewhere is a ValueError naming the file and line."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise ValueError(f"{path} not found: {run_dir} is not a train.py run directory")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(f"{path}:{n} is not a JSON row; repair or delete that line") from None
            print(f"warning: {path}:{n}: dropped a torn last line (a write cut short)", file=sys.stderr)
    return rows


def tensorboard(train_cfg: TrainConfig, run_dir, purge_step: int = 0):
    """A TensorBoard SummaryWriter in tensorboard_dir (default run_dir/tensorboard) that hides the events of
    steps >= purge_step written before (a resume replays them; an overwrite starts at 0)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("log=tensorboard needs `pip install tensorboard`") from None
    return SummaryWriter(
        train_cfg.tensorboard_dir or str(Path(run_dir) / "tensorboard"), purge_step=purge_step
    )


class MetricsLog:
    """Appends rows to run_dir/metrics.jsonl, flushed one by one. Opened with `keep_before=it` (a resume
    at iteration it), rows of iterations >= it are dropped first: the resumed run logs them again. With a
    TensorBoard writer `board` every number of a row is also a scalar at step row["iter"]: eval rows under
    eval/ (eval/val_loss, eval/train_loss: the fixed-batch estimates), training steps under train/
    (train/loss: the step's own batch, train/lr, ...), so no tag mixes the two (the file is the record,
    TensorBoard a view of it)."""

    def __init__(self, run_dir, keep_before: int | None = None, board=None):
        path = Path(run_dir) / METRICS
        old = read_metrics(run_dir) if keep_before and path.exists() else []
        kept = "".join(json.dumps(r) + "\n" for r in old if r["iter"] < keep_before)
        write_atomic(path, lambda f: f.write(kept.encode("utf-8")))
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.board = board

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.board is not None:
            prefix = "eval/" if "val_loss" in row else "train/"
            for key, value in row.items():
                if key != "iter" and isinstance(value, int | float) and not isinstance(value, bool):
                    name = "loss" if (prefix, key) == ("train/", "train_loss") else key
                    self.board.add_scalar(prefix + name, value, row["iter"])
            self.board.flush()

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


def write_summary(run_dir, summary: dict) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def read_record(run_dir) -> dict | None:
    """compare.json of a grid's run, or None."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_record(run_dir, record: dict) -> None:
    write_json(Path(run_dir) / RECORD, record)


def read_summary(run_dir) -> dict:
    """summary.json, or for runs trained before it existed, the same keys rebuilt from metrics.jsonl."""
    path = Path(run_dir) / SUMMARY
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    rows = read_metrics(run_dir)
    evals, steps = [r for r in rows if "val_loss" in r], [r for r in rows if "ms_per_iter" in r]
    if not evals:
        raise ValueError(f"{Path(run_dir) / METRICS} has no eval row yet; train the run further first")
    summary = {
        "out_dir": str(run_dir),
        "iters": evals[-1]["iter"],
        "final_val_loss": evals[-1]["val_loss"],
        "final_train_loss": evals[-1]["train_loss"],
        "best_val_loss": min(r["val_loss"] for r in evals),
        "elapsed_s": rows[-1]["elapsed_s"],
    }
    for key in ("ms_per_iter", "tokens_per_sec"):
        summary[key] = float(np.median([r[key] for r in steps])) if steps else None
    return summary
