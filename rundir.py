"""The run directory: what train.py writes into `out_dir` and every tool reads back.

    config.json    resolved model + train config          env.json      git SHA, versions, device, argv
    metrics.jsonl  one JSON object per log or eval event (eval rows carry `val_loss`), appended
    ckpt.pt        the latest state: weights, optimizer, scaler, configs, dataset meta, RNG streams;
                   written atomically, read with torch.load(weights_only=True) (no pickle)
    summary.json   train()'s summary of the finished (or stopped) run
"""

import dataclasses
import json
import pickle  # only for the exception type torch.load raises on a corrupt file
from pathlib import Path

import numpy as np
import torch

from files import write_atomic, write_json
from model import GPT, ModelConfig
from training import TrainConfig

CKPT, CONFIG, ENV, METRICS, SUMMARY = "ckpt.pt", "config.json", "env.json", "metrics.jsonl", "summary.json"


def save_checkpoint(run_dir, model: GPT, optimizer, scaler, train_cfg: TrainConfig, meta: dict, *,
                    iter_num: int, best_val_loss: float, elapsed_s: float, rng: list[dict]) -> None:
    """Write run_dir/ckpt.pt atomically: a crash mid-write leaves the previous checkpoint intact.
    `rng` holds every rank's {"torch": state, "cuda": state} so that a resume continues dropout exactly."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "model_config": model.config.to_dict(),
        "train_config": dataclasses.asdict(train_cfg),
        "meta": meta,  # the tokenizer, so sample.py needs nothing but this file
        "iter_num": iter_num,  # iterations done
        "best_val_loss": best_val_loss,
        "elapsed_s": elapsed_s,
        "rng": rng,
    }
    write_atomic(Path(run_dir) / CKPT, lambda f: torch.save(state, f))


def read_checkpoint(path, device="cpu") -> tuple[dict, ModelConfig, TrainConfig]:
    """(checkpoint dict, its model config, its train config) from `path`, read with weights_only=True. A file
    that is not a readable nanorope checkpoint (truncated, corrupt, another program's) is a ValueError."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        return ckpt, ModelConfig(**ckpt["model_config"]), TrainConfig(**ckpt["train_config"])
    except (RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path} is not a readable nanorope checkpoint ({type(e).__name__}); retrain or restore it"
        ) from None


def resume_checkpoint(run_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, meta: dict) -> dict:
    """The checkpoint to resume from, after checking that it matches this model, corpus and max_iters."""
    path = Path(run_dir) / CKPT
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
    saved_data = (ckpt["meta"]["source_sha256"], ckpt["meta"]["tokenizer"])
    if saved_data != (meta["source_sha256"], train_cfg.tokenizer):
        raise ValueError(
            f"resume: {path} was trained on {ckpt['meta']['source']} ({ckpt['meta']['tokenizer']})"
        )
    if ckpt["iter_num"] > train_cfg.max_iters:
        raise ValueError(
            f"resume: the checkpoint is at iter {ckpt['iter_num']} > max_iters={train_cfg.max_iters}"
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
    ckpt, model_cfg, train_cfg = read_checkpoint(path, device)
    model = GPT(model_cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), model_cfg, train_cfg, ckpt["meta"]


def write_configs(run_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, env: dict) -> None:
    """config.json (the resolved configs) and env.json (`runtime.env_info`), creating the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)})
    write_json(run_dir / ENV, env)


def read_metrics(run_dir) -> list[dict]:
    """The rows of a run's metrics.jsonl, in order."""
    return [json.loads(r) for r in (Path(run_dir) / METRICS).read_text(encoding="utf-8").splitlines()]


class MetricsLog:
    """Appends rows to run_dir/metrics.jsonl, flushed one by one. Opened with `keep_before=it` (a resume
    at iteration it), rows of iterations >= it are dropped first: the resumed run logs them again."""

    def __init__(self, run_dir, keep_before: int | None = None):
        path = Path(run_dir) / METRICS
        old = path.read_text(encoding="utf-8").splitlines() if keep_before and path.exists() else []
        kept = "".join(r + "\n" for r in old if json.loads(r)["iter"] < keep_before)
        path.write_text(kept, encoding="utf-8")
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_summary(run_dir, summary: dict) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def read_summary(run_dir) -> dict:
    """summary.json, or for runs trained before it existed, the same keys rebuilt from metrics.jsonl."""
    path = Path(run_dir) / SUMMARY
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    rows = read_metrics(run_dir)
    evals, steps = [r for r in rows if "val_loss" in r], [r for r in rows if "ms_per_iter" in r]
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
