"""Would a CPU grid train faster with several runs of one shape batched into one model?

Issue 28 asks for the seeds of a grid entry to train as one model with stacked weights. This measures the
ceiling of that idea on this machine, for ours:learned (GPT-2 block, no biases): E sequential training
steps of E models (forward, loss, backward, fused AdamW, zero_grad), against one step of `Stacked`, the
same E models with their weights stacked on a leading dim (every matmul a bmm over the members, every head
of every member in one SDPA call, one fused AdamW over E-times-larger tensors). `Stacked` computes the
same losses and gradients as the E models (tests/test_bench_batched.py), so the two sides do the same
arithmetic; the steps alternate, order swapped every round, and medians are reported. Batching removes
per-call overhead, never floating-point work: the share of the sequential step spent in matrix
multiplies (torch.profiler, printed) bounds what any batching can gain on this machine.

    python -m scripts.bench_batched               # E = 3, baby shape, torch's threads
    python -m scripts.bench_batched --threads=1   # as each job of `compare.py --jobs=2` runs on 2 cores
    python -m scripts.bench_batched --device=cuda --members=8   # where it should pay (scripts.gpu_check)
"""

import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cli import parse_cli, run_main
from configurator import Config, check_ints
from model import GPT, ModelConfig
from training import configure_optimizers

VOCAB = 65  # Shakespeare-char's, as bench.py's baby shape


@dataclass(frozen=True)
class BenchBatchedConfig(Config):
    """scripts.bench_batched's keys; the defaults are bench.py's baby shape."""

    members: int = 3  # E: runs batched into one model (a grid entry's seeds)
    device: str = "cpu"  # cpu or cuda (fp32 on both; the matmul share is measured on CPU only)
    batch_size: int = 12  # rows per member
    block_size: int = 64  # T
    n_layer: int = 4  # blocks
    n_head: int = 4  # heads
    n_embd: int = 128  # width C
    threads: int = 0  # torch CPU threads (0: torch's default)
    rounds: int = 40  # timed steps of each side; medians are reported

    def validate(self):
        check_ints(
            self, ("members", "batch_size", "block_size", "n_layer", "n_head", "n_embd", "rounds"), 1, 10**6
        )
        check_ints(self, ("threads",), 0, 4096)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head, got {self.n_embd} and {self.n_head}")


class Stacked(nn.Module):
    """E GPTs (pos_enc=learned, block=gpt2, bias=False, dropout 0) as one module: each parameter stacked on
    a leading member dim, layers on the dim before it. forward(idx (E, B, T), targets (E, B, T)) returns
    the sum over members of each member's mean cross-entropy, so that its gradient with respect to member
    e's weights is model e's own."""

    def __init__(self, models: list[GPT]):
        super().__init__()
        cfg = models[0].config
        self.E, self.C, self.nh, self.V = len(models), cfg.n_embd, cfg.n_head, cfg.vocab_size
        ts, L = [m.transformer for m in models], cfg.n_layer

        def members(get, transpose=False):  # a copy, members on dim 0; Linear weights as (in, out) for bmm
            w = torch.stack([get(t).detach() for t in ts])
            return (w.mT if transpose else w).contiguous()

        def stack(get):
            return nn.Parameter(members(get))

        def layers(get, transpose=False):  # layers on dim 0, members on dim 1
            return nn.Parameter(
                torch.stack([members(lambda t, i=i: get(t.h[i]), transpose) for i in range(L)])
            )

        self.wte = stack(lambda t: t.wte.weight)  # (E, Vp, C)
        self.wpe = stack(lambda t: t.wpe.weight)  # (E, block_size, C)
        self.ln_1 = layers(lambda b: b.ln_1.weight[None])  # (L, E, 1, C)
        self.ln_2 = layers(lambda b: b.ln_2.weight[None])
        self.ln_f = stack(lambda t: t.ln_f.weight[None])  # (E, 1, C)
        self.c_attn = layers(lambda b: b.attn.c_attn.weight, transpose=True)  # (L, E, C, 3C)
        self.attn_proj = layers(lambda b: b.attn.c_proj.weight, transpose=True)  # (L, E, C, C)
        self.c_fc = layers(lambda b: b.mlp.c_fc.weight, transpose=True)  # (L, E, C, 4C)
        self.mlp_proj = layers(lambda b: b.mlp.c_proj.weight, transpose=True)  # (L, E, 4C, C)

    def forward(self, idx, targets):
        E, B, T = idx.shape
        C, nh = self.C, self.nh
        rows = idx + torch.arange(E, device=idx.device)[:, None, None] * self.wte.size(1)
        x = (self.wte.reshape(-1, C)[rows] + self.wpe[:, None, :T]).view(E, B * T, C)  # (E, BT, C)
        for i in range(self.c_attn.size(0)):
            h = F.layer_norm(x, (C,)) * self.ln_1[i]
            qkv = torch.bmm(h, self.c_attn[i]).view(E * B, T, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)  # (EB, nh, T, hs)
            x = x + torch.bmm(y.transpose(1, 2).reshape(E, B * T, C), self.attn_proj[i])
            h = F.layer_norm(x, (C,)) * self.ln_2[i]
            x = x + torch.bmm(F.gelu(torch.bmm(h, self.c_fc[i])), self.mlp_proj[i])
        x = F.layer_norm(x, (C,)) * self.ln_f
        logits = torch.bmm(x, self.wte.mT)[..., : self.V]  # (E, BT, V): tied head
        return F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1)) * E


def _models(cfg: BenchBatchedConfig) -> list[GPT]:
    mc = ModelConfig(
        vocab_size=VOCAB,
        block_size=cfg.block_size,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        dropout=0.0,
        bias=False,
        pos_enc="learned",
    )
    return [GPT(mc) for _ in range(cfg.members)]


def bench(cfg: BenchBatchedConfig) -> dict:
    """Median ms of E sequential steps and of one stacked step, the ratio, and (on CPU; None on CUDA) the
    sequential step's share of profiled CPU time in matrix multiplies."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda, but CUDA is not available here")
    dev = cfg.device
    torch.manual_seed(0)
    models = [m.to(dev) for m in _models(cfg)]
    stacked = Stacked(models)
    opts = [configure_optimizers(m, 0.1, 1e-3, (0.9, 0.99), dev) for m in models]
    stacked_opt = torch.optim.AdamW(stacked.parameters(), lr=1e-3, betas=(0.9, 0.99), fused=True)
    idx = torch.randint(0, VOCAB, (cfg.members, cfg.batch_size, cfg.block_size), device=dev)
    targets = torch.randint(0, VOCAB, idx.shape, device=dev)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def sequential():
        for m, opt, x, y in zip(models, opts, idx, targets, strict=True):
            m(x, y)[1].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def batched():
        stacked(idx, targets).backward()
        stacked_opt.step()
        stacked_opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up
        sequential()
        batched()
    times = {sequential: [], batched: []}
    for r in range(cfg.rounds):
        for step in (sequential, batched) if r % 2 else (batched, sequential):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[step].append(time.perf_counter() - t0)
    seq_ms, bat_ms = (statistics.median(times[s]) * 1e3 for s in (sequential, batched))
    return {
        "sequential_ms": seq_ms,
        "batched_ms": bat_ms,
        "ratio": bat_ms / seq_ms,
        "matmul_share": _matmul_share(sequential, min(cfg.rounds, 5)) if dev == "cpu" else None,
    }


def _matmul_share(step, steps: int) -> float:
    """The share of `steps` calls of `step`'s CPU time (torch.profiler, self time) in matrix multiplies."""
    with torch.profiler.profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return (
        sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
        / total
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, BenchBatchedConfig, presets=False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    r = bench(cfg)
    E = cfg.members
    print(
        f"B={cfg.batch_size} T={cfg.block_size} n_layer={cfg.n_layer} n_head={cfg.n_head} "
        f"n_embd={cfg.n_embd}; {cfg.device}, {torch.get_num_threads()} CPU threads; torch {torch.__version__}"
    )
    print(
        f"{E} sequential steps {r['sequential_ms']:.1f} ms, one stacked step of {E} "
        f"{r['batched_ms']:.1f} ms: {r['ratio']:.2f}x (medians of {cfg.rounds})"
    )
    if r["matmul_share"] is not None:
        print(
            f"matrix multiplies: {r['matmul_share']:.0%} of the sequential step's CPU time, so batching "
            f"can at best take it to {r['matmul_share']:.2f}x"
        )


if __name__ == "__main__":
    run_main(main)
