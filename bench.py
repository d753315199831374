"""Training-step speed and memory of every positional encoding, side by side with the Hugging Face peers.

One training step = forward + loss + backward + AdamW step + zero_grad(set_to_none=True), on the same
random tokens for every model. Models: ours with each scheme in `model.POS_ENCODINGS`, and (with
--peers) `transformers`' GPT2LMHeadModel (same dims, exact GELU, learned positions) and
LlamaForCausalLM (same layers/heads/width/context, RoPE theta 10000, tied embeddings; it differs from
ours by RMSNorm, a SwiGLU MLP of about the same parameter count, and no biases). Peers get their
fastest training settings: SDPA attention, dropout 0, use_cache=False. Every model uses the same
AdamW (`training.configure_optimizers`, fused).

Timing: after warm-up, the models take turns, one step each per round, the order rotated every
round, so drifts in CPU clock or load hit all of them alike; each step is timed alone and the
median is reported. Peak memory: on CUDA, this model's parameters + optimizer state + the step's
peak allocation; on CPU, the growth of the peak RSS of a fresh process that trains only this model.

    python bench.py                          # CPU: baby and small shapes, float32
    python bench.py --device=cuda            # baby + GPT-2 small shape, bf16 autocast, MFU
    python bench.py --shape=small --compile  # torch.compile every model (peers too)
"""

import gc
import multiprocessing
import os
import re
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from cli import parse_cli, run_main
from configurator import check_ints
from grid import parse_entry
from model import GPT, ModelConfig
from positional import POS_ENCODINGS
from runtime import Precision, RuntimeConfig, auto_device, peak_bf16_flops
from training import configure_optimizers, optimizer_step


@dataclass(frozen=True)
class BenchConfig(RuntimeConfig):
    """bench.py's keys (device: auto, cpu or cuda)."""

    # --- bench
    shape: str = "all"  # baby, small or all
    steps: int = 20  # timed steps per model
    warmup: int = 3  # untimed steps per model
    peers: bool = True  # also time transformers' GPT-2 and Llama
    options: bool = True  # also rope with each attention option (sink, SSMax, SSSL) and learned@math (MATH)
    memory: bool = True  # measure peak memory

    def validate(self):
        super().validate()
        check_ints(self, ("steps",), 1, 100_000)
        check_ints(self, ("warmup",), 0, 100_000)
        choices = {"device": ("auto", "cpu", "cuda"), "shape": ("baby", "small", "all")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.compile and self.warmup < 1:
            raise ValueError("compile=true needs warmup >= 1: the first step of each model compiles it")


@dataclass(frozen=True)
class Shape:
    batch_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int


# baby: nanoGPT's Shakespeare-char model; small: a CPU-sized GPT-2 shape, on CUDA GPT-2 small (124M)
# itself at nanoGPT's bench.py batch. The vocabulary is Shakespeare-char's, or GPT-2's padded to 64.
SHAPES = {
    "cpu": {"baby": Shape(12, 64, 4, 4, 128, 65), "small": Shape(8, 256, 6, 6, 384, 65)},
    "cuda": {"baby": Shape(12, 64, 4, 4, 128, 65), "small": Shape(12, 1024, 12, 12, 768, 50304)},
}


@dataclass
class Result:
    name: str
    params: int
    flops_per_token: float
    step_times: list[float]  # seconds
    tokens_per_step: int
    peak_mib: float | None = None
    mfu: float | None = None

    @property
    def ms(self) -> float:
        return 1e3 * statistics.median(self.step_times)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / statistics.median(self.step_times)

    @property
    def iqr_pct(self) -> float:
        """Interquartile range of the step times, % of the median: the run's noise."""
        if len(self.step_times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.step_times, n=4)
        return 100 * (q3 - q1) / statistics.median(self.step_times)


# attention options on rope, each against ours:rope (compare.py entry syntax)
OPTIONS = ("rope:attn_sink=true", "rope:ssmax=true", "rope:window=16:window_pattern=SSSL")
# learned with SDPA held to its math kernel, which every scheme whose bias needs a gradient (t5, kerple, fire,
# cope, fox) gets on CPU: the speed those schemes cannot pass without a fused kernel that has a backward
MATH = "ours:learned@math"


def model_names(peers: bool, options: bool = False) -> list[str]:
    names = [f"ours:{p}" for p in POS_ENCODINGS]
    names += ([f"ours:{o}" for o in OPTIONS] + [MATH]) if options else []
    return [*names, "hf:gpt2", "hf:llama"] if peers else names


def peer_of(name: str) -> str | None:
    """The Hugging Face model a row is compared with: Llama for RoPE, GPT-2 (learned) for the others."""
    if name.startswith("hf:"):
        return None
    if name.startswith("ours:rope:"):
        return "ours:rope"
    if name == MATH:
        return "ours:learned"
    return "hf:llama" if name == "ours:rope" else "hf:gpt2"


def llama_intermediate_size(n_embd: int) -> int:
    """SwiGLU width giving about our MLP's 8 C^2 weights with 3 matrices: 8/3 C, rounded to a multiple
    of 8."""
    return 8 * round(n_embd / 3)


def build(name: str, shape: Shape) -> torch.nn.Module:
    """`ours:<pos_enc>`, `hf:gpt2` or `hf:llama` with the shape's dimensions, dropout 0, on the CPU."""
    torch.manual_seed(0)
    dims = dict(vocab_size=shape.vocab_size, n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd)
    if name.startswith("ours:"):
        scheme, knobs, _ = parse_entry(name[5:].removesuffix("@math"))
        return GPT(ModelConfig(block_size=shape.block_size, dropout=0.0, pos_enc=scheme, **knobs, **dims))
    no_tokens = dict(bos_token_id=None, eos_token_id=None, use_cache=False, attn_implementation="sdpa")
    if name == "hf:gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            n_positions=shape.block_size,
            activation_function="gelu",  # exact GELU, as ours
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **dims,
            **no_tokens,
        )
        model = GPT2LMHeadModel(cfg)
        model.loss_type = "ForCausalLM"  # what HF falls back to anyway, minus a warning per model
        return model
    if name == "hf:llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=shape.vocab_size,
            hidden_size=shape.n_embd,
            num_hidden_layers=shape.n_layer,
            num_attention_heads=shape.n_head,
            intermediate_size=llama_intermediate_size(shape.n_embd),
            max_position_embeddings=shape.block_size,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            attention_dropout=0.0,
            **no_tokens,
        )
        return LlamaForCausalLM(cfg)
    raise ValueError(f"unknown model {name!r}; known: {model_names(peers=True)}")


def flops_per_token(model: torch.nn.Module, shape: Shape) -> float:
    """Training FLOPs per token, the formula of `GPT.flops_per_token` applied to any model: 6 per matmul
    weight (all parameters but embedding tables, plus the output head) + 12 * n_layer * C * T."""
    if isinstance(model, GPT):
        return model.flops_per_token(shape.block_size)
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    weights = (
        sum(p.numel() for p in model.parameters()) - tables + model.get_output_embeddings().weight.numel()
    )
    return 6.0 * weights + 12.0 * shape.n_layer * shape.n_embd * shape.block_size


class Trainer:
    """One model, its AdamW and its training step on a fixed batch."""

    def __init__(self, name: str, shape: Shape, device: str, dtype: str, compile: bool):
        self.name, self.device, self.precision = name, device, Precision.of(dtype, device)
        self.raw = build(name, shape).to(device).train()
        # configure_optimizers only reads parameters(), so the peers get exactly our optimizer
        self.optimizer = configure_optimizers(self.raw, 0.1, 6e-4, (0.9, 0.95), device)
        self.model = torch.compile(self.raw) if compile else self.raw
        self.scaler = self.precision.grad_scaler()
        self.params = sum(p.numel() for p in self.raw.parameters())  # tied weights once
        self.flops = flops_per_token(self.raw, shape)

    def loss(self, idx, targets):
        if self.name.startswith("ours:"):
            return self.model(idx, targets)[1]
        return self.model(input_ids=idx, labels=idx).loss  # HF shifts the labels inside (B x (T-1) targets)

    def step(self, idx, targets) -> None:
        kernel = sdpa_kernel(SDPBackend.MATH) if self.name.endswith("@math") else nullcontext()
        with self.precision.autocast(), kernel:
            loss = self.loss(idx, targets)
        self.scaler.scale(loss).backward()
        optimizer_step(self.raw.parameters(), self.optimizer, self.scaler, grad_clip=0.0)

    def static_bytes(self) -> int:
        tensors = [*self.raw.parameters(), *self.raw.buffers()]
        tensors += [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)


def make_batch(shape: Shape, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1337)
    x = torch.randint(shape.vocab_size, (shape.batch_size, shape.block_size + 1), generator=g)
    return x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device)  # (B, T) each


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(trainers: list[Trainer], batch, steps: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step for each trainer: `warmup` untimed steps each, then `steps` rounds in which
    every trainer times one step, the order rotated by one each round (so no model always follows
    the same one, and a burst of load or a clock change is shared by all)."""
    device = trainers[0].device
    for t in trainers:
        for _ in range(warmup):
            t.step(*batch)
    times = {t.name: [] for t in trainers}
    for r in range(steps):
        k = r % len(trainers)
        for t in trainers[k:] + trainers[:k]:
            sync(device)
            t0 = time.perf_counter()
            t.step(*batch)
            sync(device)
            times[t.name].append(time.perf_counter() - t0)
    return times


def cuda_peak_mib(trainer: Trainer, batch) -> float:
    """Parameters + buffers + optimizer state + the peak a step allocates on top (grads, activations)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    trainer.step(*batch)
    torch.cuda.synchronize()
    return (trainer.static_bytes() + torch.cuda.max_memory_allocated() - before) / 2**20


def _proc_status_kib(key: str) -> int:
    return int(
        re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE).group(1)
    )


def cpu_peak_rss_mib(name: str, shape: Shape, dtype_name: str, compile: bool) -> float | None:
    """Growth of this process's peak RSS while building `name` and training it for 2 steps; meant to
    run in a fresh process (`run` spawns one per model) so no other model's memory is counted.

    A 1-layer, 1-sequence copy of the model trains one step first, so one-time runtime costs (thread
    pools, oneDNN kernels, imports: ~130 MiB) stay out of the number. Linux only (VmHWM in
    /proc/self/status, reset through /proc/self/clear_refs), None elsewhere; getrusage's ru_maxrss
    would not do, as Linux carries it over from the parent process across fork and exec."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    stub = replace(shape, batch_size=1, block_size=min(shape.block_size, 16), n_layer=1)
    warm = Trainer(name, stub, "cpu", dtype_name, compile)
    warm.step(*make_batch(stub, "cpu"))
    del warm
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _proc_status_kib("VmRSS")
    trainer = Trainer(name, shape, "cpu", dtype_name, compile)
    batch = make_batch(shape, "cpu")
    for _ in range(2):
        trainer.step(*batch)
    return (_proc_status_kib("VmHWM") - before) / 1024


def cpu_peak_rss_fresh(names: list[str], shape: Shape, dtype_name: str, compile: bool) -> list[float | None]:
    """`cpu_peak_rss_mib` of each model, each in a fresh process (spawned: a forked child would share
    the parent's heap, and freed memory reused there would not show as growth)."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.starmap(cpu_peak_rss_mib, [(n, shape, dtype_name, compile) for n in names], chunksize=1)


def run(
    shape: Shape,
    device: str,
    dtype_name: str,
    steps: int,
    warmup: int,
    compile: bool = False,
    peers: bool = True,
    memory: bool = True,
    options: bool = False,
) -> list[Result]:
    """Benchmark every model at one shape; Results in `model_names(peers)` order."""
    if compile:
        # Our models share GPT.forward: a fresh cache per shape keeps each scheme's graph static and
        # under dynamo's recompile limit (past it, dynamo silently runs the model eagerly).
        torch._dynamo.reset()
    trainers = [Trainer(n, shape, device, dtype_name, compile) for n in model_names(peers, options)]
    batch = make_batch(shape, device)
    times = time_steps(trainers, batch, steps, warmup)
    tokens = shape.batch_size * shape.block_size
    results = [Result(t.name, t.params, t.flops, times[t.name], tokens) for t in trainers]
    peak = peak_bf16_flops(torch.cuda.get_device_name()) if device == "cuda" else None
    for t, r in zip(trainers, results, strict=True):
        if memory and device == "cuda":
            r.peak_mib = cuda_peak_mib(t, batch)
        if peak is not None and dtype_name == "bfloat16":
            r.mfu = r.tokens_per_s * r.flops_per_token / peak
    del trainers
    if memory and device == "cpu":  # after the timing, so the probes never compete with it
        mibs = cpu_peak_rss_fresh([r.name for r in results], shape, dtype_name, compile)
        for r, mib in zip(results, mibs, strict=True):
            r.peak_mib = mib
    return results


def format_table(results: list[Result]) -> str:
    """Markdown table: one row per model, ratios of tokens/s against ours:learned and the row's peer."""
    by_name = {r.name: r for r in results}
    base = by_name.get("ours:learned")
    lines = [
        "| model | params | MFLOP/token | ms/step | IQR | tokens/s | vs ours:learned | vs peer | peak MiB "
        "| MFU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        peer = by_name.get(peer_of(r.name) or "")
        cells = [
            r.name,
            f"{r.params / 1e6:.2f}M",
            f"{r.flops_per_token / 1e6:.1f}",
            f"{r.ms:.1f}",
            f"{r.iqr_pct:.0f}%",
            f"{r.tokens_per_s:,.0f}",
            f"{r.tokens_per_s / base.tokens_per_s:.2f}x" if base else "-",
            f"{r.tokens_per_s / peer.tokens_per_s:.2f}x vs {peer.name}" if peer else "-",
            "n/a" if r.peak_mib is None else f"{r.peak_mib:,.0f}",
            "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_checks(results: list[Result]) -> str:
    """The README's targets, measured (no pass/fail gate: timings are too noisy to assert on)."""
    s = {r.name: r.tokens_per_s for r in results}
    checks = []
    if "hf:gpt2" in s:
        checks.append(f"ours:learned / hf:gpt2 = {s['ours:learned'] / s['hf:gpt2']:.2f}x")
    if "hf:llama" in s:
        checks.append(f"ours:rope / hf:llama = {s['ours:rope'] / s['hf:llama']:.2f}x")
    for name in ("rope", "alibi"):
        cost = 100 * (1 - s[f"ours:{name}"] / s["ours:learned"])
        direction = "fewer" if cost >= 0 else "more"
        checks.append(f"{name}: {abs(cost):.1f}% {direction} tokens/s than learned")
    return "; ".join(checks)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, BenchConfig, presets=False)
    auto = "cuda" if torch.cuda.is_available() else "cpu"  # SHAPES has no mps entry
    device = auto if cfg.device == "auto" else auto_device(cfg.device)
    dtype = Precision.of(cfg.dtype, device).name
    if cfg.peers:
        try:
            import transformers
        except ImportError:
            raise ValueError("peers=true needs `pip install transformers`; or pass --peers=false") from None
    if device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls, every model alike

    hardware = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {os.cpu_count()} cores"
    versions = f"torch {torch.__version__}"
    if cfg.peers:
        versions += f", transformers {transformers.__version__}"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"{hardware}; {versions}; {torch.get_num_threads()} threads, OMP_WAIT_POLICY {wait_policy}")
    print(f"load average {'n/a' if load is None else ' / '.join(f'{x:.2f}' for x in load)} (1/5/15 min)")
    if device == "cpu" and load and load[0] >= (os.cpu_count() or 1) and wait_policy == "unset":
        print(
            "note: the machine is busy; OpenMP threads spin while they wait, get descheduled and make "
            "steps several times slower, unevenly. Rerun when idle, or with OMP_WAIT_POLICY=PASSIVE."
        )
    print(f"dtype {dtype}, compile {cfg.compile}; median of {cfg.steps} steps after {cfg.warmup} warm-up\n")
    names = ["baby", "small"] if cfg.shape == "all" else [cfg.shape]
    for name in names:
        shape = SHAPES[device][name]
        results = run(
            shape, device, dtype, cfg.steps, cfg.warmup, cfg.compile, cfg.peers, cfg.memory, cfg.options
        )
        print(f"{name}: {shape}, {shape.batch_size * shape.block_size:,} tokens/step")
        print(format_table(results))
        print(format_checks(results) + "\n", flush=True)


if __name__ == "__main__":
    run_main(main)
