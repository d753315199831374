"""Train a GPT on one corpus or task: python train.py [config/preset.py] [--key=value ...]

With no preset the defaults train the default run: a small RoPE char model on the embedded pydocs text.
Multi-GPU / multi-node: torchrun --standalone --nproc_per_node=8 train.py config/shakespeare_char.py

The run directory (`out_dir`, see rundir.py) gets config.json, env.json, metrics.jsonl, ckpt.pt and
summary.json; a process that trains into it holds its lock. Reproducibility: `seed` fixes the initial
weights and dropout, `data_seed` the batch order. The batch of iteration `it` (micro-step `m` of the global
accumulation) is drawn from np.random.default_rng((data_seed, it, m)) (data/batches.py), so `--resume`
replays exactly what an uninterrupted run would see, and a DDP run sees the same batches as one process
with the same global gradient_accumulation_steps. Validation uses one fixed set of batches, the same in
every eval of every run.
"""

import contextlib
import dataclasses
import json
import math
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import flex
import interop
import rundir
import training
from cli import Stopped, parse_cli, run_main
from data.batches import to_device
from data.sources import load_source
from data.tokenizers import get_tokenizer
from evaluate import loss_sum
from model import GPT, POSITION_OPTIONS, ModelConfig
from runtime import Processes, StopSignals, env_info, peak_bf16_flops
from training import TrainConfig


def scheme_line(model_cfg: ModelConfig, cfg: TrainConfig) -> str:
    """The scheme and every position option set away from its default, as the start line shows them:
    'rope + attn_sink=true, window=16, window_pattern=SSSL'; DroPE with its iteration."""
    fields = ModelConfig.__dataclass_fields__
    options = [
        f"{k}={json.dumps(v) if isinstance(v, bool | list | tuple) else v}"  # true, [3], as typed
        for k in POSITION_OPTIONS
        if (v := getattr(model_cfg, k)) != fields[k].default
    ]
    options += [f"dropped at iter {cfg.drope_iter} (DroPE)"] if cfg.drope_iter else []
    return " + ".join([model_cfg.pos_enc, ", ".join(options)] if options else [model_cfg.pos_enc])


class Run:
    """The state of one training job: model, optimizer, data, counters. `train` drives it; __init__ runs
    the named setup steps in order, and each other method is one step of nanoGPT's loop."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, procs: Processes, stack):
        self.cfg, self.procs, self.master = cfg, procs, procs.master
        self.device, self.precision = self._check_processes()
        # refused here, before a run dir exists: a hint to use another kernel must work when pasted
        flex.check_training(model_cfg.attention, torch.device(self.device), model_cfg.dropout)
        stack.enter_context(procs.started(self.device))
        model_cfg = self._load_data(model_cfg)
        model_cfg, init = self._init_from(model_cfg)
        self.out = self._own_run_dir(stack)
        ckpt = rundir.resume_checkpoint(self.out, model_cfg, cfg, self.meta) if cfg.resume else None
        self.start = ckpt["iter_num"] if ckpt else 0
        self.model_cfg = model_cfg  # as given; the model trains under model_at(model_cfg, cfg, it)
        self._build(training.model_at(model_cfg, cfg, self.start), init, ckpt)
        self._fixed_eval_batches()
        self._accounting(ckpt)
        self._open_logs(stack, ckpt)

    # --- setup steps -------------------------------------------------------------------------------------

    def _check_processes(self):
        """The device and precision of this process (under torchrun: its GPU)."""
        world = self.procs.world
        if self.cfg.gradient_accumulation_steps % world:
            raise ValueError(
                f"gradient_accumulation_steps={self.cfg.gradient_accumulation_steps} must be a multiple of "
                f"the number of processes, {world}"
            )
        self.gas = self.cfg.gradient_accumulation_steps // world  # micro-steps per process
        return self.cfg.setup(self.procs.device(self.cfg.device))

    def _load_data(self, model_cfg: ModelConfig) -> ModelConfig:
        """The data source (prepared on first use by the master); the model takes its vocabulary and, for a
        task, its block_size."""
        with self.procs.master_first():
            self.source = load_source(self.cfg, model_cfg)
        self.meta, self.T = self.source.meta, self.source.train_len  # T: the length of training sequences
        return dataclasses.replace(
            model_cfg, vocab_size=self.meta["vocab_size"], block_size=self.source.block_size
        )

    def _init_from(self, model_cfg: ModelConfig) -> tuple[ModelConfig, dict | None]:
        """With init_from: GPT-2's dimensions (checked against this run), and its weights unless resuming."""
        if not self.cfg.init_from:
            return model_cfg, None
        if self.meta["tokenizer"] != "gpt2":
            raise ValueError(f"init_from={self.cfg.init_from!r} needs GPT-2's vocabulary: --tokenizer=gpt2")
        model_cfg, load = interop.gpt2_config(self.cfg.init_from, model_cfg)
        if self.master:
            print(
                f"init_from {self.cfg.init_from}: GPT-2 with {model_cfg.n_layer} layers, {model_cfg.n_head}"
                f" heads, {model_cfg.n_embd} wide"
                + (model_cfg.pos_enc != "learned")
                * f"; its position table is dropped (pos_enc={model_cfg.pos_enc})"
            )
        return model_cfg, None if self.cfg.resume else load()

    def _own_run_dir(self, stack):
        """The master locks out_dir and decides what happens to what it holds; the others follow."""
        out = rundir.run_path(self.cfg)
        if self.master:
            stack.enter_context(rundir.lock(out))
        with self.procs.master_first():
            if self.master:
                rundir.open_run_dir(self.cfg)
        return out

    def _build(self, model_cfg: ModelConfig, init: dict | None, ckpt: dict | None) -> None:
        """Model (seeded by `seed`), optimizer and grad scaler, from GPT-2 weights or a checkpoint, and the
        RNG streams of dropout."""
        cfg, kind, rank = self.cfg, self.precision.device_type, self.procs.rank
        torch.manual_seed(cfg.seed)
        self.raw_model = GPT(model_cfg).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.optimizer = training.configure_optimizers(
            self.raw_model, cfg.weight_decay, cfg.learning_rate, betas, kind, cfg.pos_lr_mult
        )
        self.scaler = self.precision.grad_scaler()
        if init is not None and not ckpt:  # the scheme's own position parameters (t5, fire, ...) stay new
            missing, _ = self.raw_model.load_state_dict(init, strict=False)
            if any(not k.startswith("transformer.wpe.") for k in missing):
                raise ValueError(f"init_from={cfg.init_from!r} left weights unset: {missing[:5]}")
        if ckpt:
            self.raw_model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        if ckpt and len(ckpt["rng"]) == self.procs.world:  # dropout continues exactly where it stopped
            torch.set_rng_state(ckpt["rng"][rank]["torch"])
            if kind == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"][rank]["cuda"], self.device)
        elif ckpt or rank:  # distinct dropout streams per rank (resuming on another world size is not exact)
            torch.manual_seed(cfg.seed + rank + self.start)
        self._wrap()

    def _wrap(self) -> None:
        """The compiled model, and under DDP the wrapped one that trains."""
        self.model = self.eval_model = self.cfg.compiled(self.raw_model)
        if self.procs.ddp:  # eval_model stays unwrapped: evals are not synchronised passes; buffers are fixed
            ids = [self.device] if self.precision.device_type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids, broadcast_buffers=False)

    def _fixed_eval_batches(self) -> None:
        """The same batches every eval and every run; each rank takes its share."""
        self.eval_sets = {}
        rank, world = self.procs.rank, self.procs.world
        for split in ("val", "train"):
            fixed = self.source.eval_batches(split, self.cfg.batch_size, self.cfg.eval_iters)
            self.eval_sets[split] = [to_device(b, self.device) for b in fixed[rank::world]]

    def _accounting(self, ckpt: dict | None) -> None:
        """Tokens and FLOPs per iteration (all processes), the clock and the best loss so far."""
        cfg = self.cfg
        self.tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * self.T
        kind = self.precision.device_type
        name = torch.cuda.get_device_name(self.device) if kind == "cuda" else ""
        self.peak = self.procs.world * (peak_bf16_flops(name) or math.nan)
        self.flops_per_iter = self.raw_model.flops_per_token(self.T) * self.tokens_per_iter
        self.best = ckpt["best_val_loss"] if ckpt else math.inf
        self.t0 = time.perf_counter() - (ckpt["elapsed_s"] if ckpt else 0.0)
        self.last_eval, self.saved_at, self.step_times = (None, None), self.start, []

    def _open_logs(self, stack, ckpt: dict | None) -> None:
        """TensorBoard first (it is what can still fail), then config.json, env.json and metrics.jsonl, and
        the run's first console line."""
        self.metrics = None
        if not self.master:
            return
        cfg, model_cfg = self.cfg, self.model_cfg
        keep = self.start if ckpt else None
        board = rundir.tensorboard(cfg, self.out, purge_step=keep or 0) if cfg.log == "tensorboard" else None
        rundir.write_configs(self.out, model_cfg, cfg, env_info(self.device, self.procs.world))
        self.metrics = rundir.MetricsLog(self.out, keep_before=keep, board=board)
        stack.callback(self.metrics.close)
        if cfg.verbose:
            print(f"model: {json.dumps(model_cfg.to_dict())}\ntrain: {json.dumps(dataclasses.asdict(cfg))}")
        data = f"{cfg.dataset} ({self.meta['tokenizer']}, vocab {self.meta['vocab_size']:,})"
        resuming = f", resuming at iter {self.start}" if ckpt else ""
        print(
            f"{self.out}: {scheme_line(model_cfg, cfg)}, {self.raw_model.num_params() / 1e6:.2f}M "
            f"non-embedding parameters, {data}, {self.tokens_per_iter:,} tokens/iter, {cfg.max_iters} iters, "
            f"{self.procs.world} process(es) on {self.device} {self.precision.name}{resuming}",
            flush=True,
        )

    # --- the loop's steps --------------------------------------------------------------------------------

    def switch(self, it: int) -> None:
        """At drope_iter, drop the positional encoding (training.model_at); before the eval of that
        iteration, which so measures the model without it before any recalibration."""
        target = training.model_at(self.model_cfg, self.cfg, it)
        if target != self.raw_model.config:
            self.raw_model.switch_scheme(target)
            self._wrap()
            self.log(f"iter {it}: pos_enc {self.model_cfg.pos_enc} dropped (DroPE)", iter=it, event="drope")

    def log(self, message: str | None, **row) -> None:
        """A row of metrics.jsonl and, if `message`, a console line (master only)."""
        if self.master:
            self.metrics.write(row | {"elapsed_s": time.perf_counter() - self.t0})
            if message:
                tqdm.write(message)

    def evaluate(self, it: int) -> None:
        """Mean loss on the fixed (val, train) batches, over all ranks; a non-finite one stops the run."""
        splits = ("val", "train")  # this rank's share of the eval_iters batches of each
        sums = torch.stack([loss_sum(self.eval_model, self.eval_sets[s], self.precision) for s in splits])
        if self.procs.ddp:
            dist.all_reduce(sums)
        self.last_eval = tuple((sums / self.cfg.eval_iters).tolist())
        if not all(map(math.isfinite, self.last_eval)):
            raise FloatingPointError(
                f"eval loss (val, train) = {self.last_eval} at iter {it}; stopped. "
                f"{self.out / rundir.CKPT} keeps the last good state (iter {self.saved_at})"
            )
        self.best = min(self.best, self.last_eval[0])

    def log_eval(self, it: int) -> None:
        """The eval's row of metrics.jsonl and its console line (the checkpoint is saved by then)."""
        val, tr = self.last_eval
        minutes = (time.perf_counter() - self.t0) / 60
        message = f"iter {it}: val loss {val:.4f}, train loss {tr:.4f} ({minutes:.1f} min, saved ckpt.pt)"
        self.log(message, iter=it, val_loss=val, train_loss=tr)

    def save(self, it: int) -> None:
        """ckpt.pt with every rank's RNG state, so that a resume (DDP too) continues exactly."""
        rng = {"torch": torch.get_rng_state()}
        if self.precision.device_type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        rngs = [rng]
        if self.procs.ddp:
            rngs = [None] * self.procs.world
            dist.all_gather_object(rngs, rng)
        if self.master:
            elapsed = time.perf_counter() - self.t0
            rundir.save_checkpoint(
                self.out,
                self.raw_model,
                self.optimizer,
                self.scaler,
                self.cfg,
                self.meta,
                iter_num=it,
                best_val_loss=self.best,
                elapsed_s=elapsed,
                rng=rngs,
            )
        self.saved_at = it

    def step(self, it: int, stop: StopSignals) -> tuple[float, float, float, bool]:
        """One optimizer step at iteration `it`: (mean train loss, lr, seconds, whether any rank has been
        asked to stop by the end of its forward and backward passes)."""
        lr = training.get_lr(it, self.cfg)
        training.set_lr(self.optimizer, lr)
        t_step = time.perf_counter()
        rank, gas = self.procs.rank, self.gas
        micro_batches = (  # seed: the micro-step's index in the global accumulation
            to_device(
                self.source.batch((self.cfg.data_seed, it, rank * gas + m), self.cfg.batch_size), self.device
            )
            for m in range(gas)
        )
        loss = training.accumulate_gradients(
            self.model, micro_batches, gas, self.precision, self.scaler, self.cfg.task_buckets
        )
        # one small all-reduce: mean loss (logged, NaN check) and stop flag, so that all ranks agree
        stats = torch.stack([loss, torch.tensor(float(stop.requested), device=self.device)])
        if self.procs.ddp:
            dist.all_reduce(stats)
        loss_val, n_stop = stats.tolist()  # a device sync: the NaN check and the timings need it
        loss_val /= self.procs.world
        if not math.isfinite(loss_val):
            raise FloatingPointError(
                f"train loss is {loss_val} at iter {it}; stopped. {self.out / rundir.CKPT} keeps the last "
                f"good state (iter {self.saved_at}). Try a lower --learning_rate, more --warmup_iters or "
                "--grad_clip=1"
            )
        training.optimizer_step(self.raw_model.parameters(), self.optimizer, self.scaler, self.cfg.grad_clip)
        self.step_times.append(time.perf_counter() - t_step)
        return loss_val, lr, self.step_times[-1], n_stop > 0

    def summary(self, it: int, interrupted: bool) -> dict:
        """The run's summary (train's return value, summary.json); medians skip the first, warm-up step."""
        times = self.step_times[1:] or self.step_times
        step = float(np.median(times)) if times else math.nan
        mfu = self.flops_per_iter / step / self.peak
        return {
            "out_dir": str(self.out),
            "iters": it,
            "final_val_loss": self.last_eval[0],
            "final_train_loss": self.last_eval[1],
            "best_val_loss": self.best,
            "tokens_per_sec": self.tokens_per_iter / step if times else None,
            "ms_per_iter": 1000 * step if times else None,
            "mfu": mfu if math.isfinite(mfu) else None,
            "elapsed_s": time.perf_counter() - self.t0,
            "num_params": self.raw_model.num_params(),
            "interrupted": interrupted,
            "sample": None,
        }

    def sample(self) -> str:
        """`sample_tokens` tokens from the source's prompt (a newline; a task's problem), seeded by `seed`, at
        temperature 0.8."""
        torch.manual_seed(self.cfg.seed)
        with self.precision.autocast():
            tok, prompt = get_tokenizer(self.meta), self.source.sample_prompt()
            return self.source.sample(self.raw_model.eval(), tok, prompt, self.cfg.sample_tokens)[0]


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Run one training job in `train_cfg.out_dir`, resuming from its ckpt.pt when `train_cfg.resume`.

    `model_cfg.vocab_size` is replaced by the dataset's (meta.json). Under torchrun (RANK set) this is
    DDP: NCCL on CUDA, gloo on the CPU. Evaluation happens at iter 0, every eval_interval and at max_iters,
    and each eval overwrites ckpt.pt with the current state (the latest, not the best). Ctrl-C, SIGTERM or
    SIGHUP saves a checkpoint and returns with `interrupted` set to the signal's number. A non-finite loss
    raises FloatingPointError and leaves the last good checkpoint in place.

    Returns:
        A summary: out_dir, iters (completed), final_val_loss and final_train_loss (the last eval, on the
        fixed batches), best_val_loss, tokens_per_sec and ms_per_iter (medians over training steps, evals
        excluded; tokens of all processes), mfu (CUDA with a known peak, else None), elapsed_s, num_params
        (non-embedding), interrupted (False, or the signal's number), sample (the text printed at the end,
        or None).
    """
    cfg, procs = train_cfg, Processes.from_env()
    with contextlib.ExitStack() as stack:
        run = Run(model_cfg, cfg, procs, stack)
        stop = stack.enter_context(StopSignals())
        quiet = not (progress and run.master and sys.stderr.isatty())
        bar = tqdm(total=cfg.max_iters, initial=run.start, disable=quiet, dynamic_ncols=True, leave=False)
        stack.enter_context(bar)
        it, stopping = run.start, False
        while True:
            run.switch(it)
            at_eval = it % cfg.eval_interval == 0 or it == cfg.max_iters
            if at_eval:
                run.evaluate(it)
            if at_eval or stopping:
                run.save(it)
            if at_eval:
                run.log_eval(it)
            if it >= cfg.max_iters or stopping:
                break
            loss, lr, dt, stopping = run.step(it, stop)
            tok_s, mfu = run.tokens_per_iter / dt, run.flops_per_iter / dt / run.peak
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
            if it % cfg.log_interval == 0:
                msg = f"iter {it}: loss {loss:.4f}, lr {lr:.2e}, {1000 * dt:.1f} ms, {tok_s:,.0f} tok/s"
                extra = {"mfu": mfu} if math.isfinite(mfu) else {}
                msg += f", mfu {100 * mfu:.1f}%" if extra else ""
                row = dict(iter=it, train_loss=loss, lr=lr, tokens_per_sec=tok_s, ms_per_iter=1000 * dt)
                run.log(msg if cfg.verbose else None, **row, **extra)
            it += 1
        bar.close()

        summary = run.summary(it, stopping and (stop.signum or 2))
        if run.master:
            if stopping:
                print(f"stopped at iter {it}; {run.out / rundir.CKPT} saved")
            else:
                print(
                    f"done: {run.out}, {it} iters in {summary['elapsed_s'] / 60:.1f} min, final val loss "
                    f"{summary['final_val_loss']:.4f} (best {summary['best_val_loss']:.4f})",
                    flush=True,
                )
                if cfg.sample_tokens:
                    summary["sample"] = run.sample()
                    rule = "---------- sample (temperature 0.8, top_k 200) ----------"
                    print(f"{rule}\n{summary['sample']}", flush=True)
            rundir.write_summary(run.out, summary)
    return summary


def main(argv: list[str] | None = None) -> dict:
    """CLI: `[preset.py] [--key=value ...]`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return train(*parse_cli(argv, __doc__, ModelConfig, TrainConfig))


def _command():
    summary = main()
    if summary["interrupted"]:
        raise Stopped(summary["interrupted"])


if __name__ == "__main__":
    run_main(_command, "continue with --resume=true")
