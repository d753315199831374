"""How much of an attention block's forward+backward time does RoPE take?

The block is model.py's CausalSelfAttention (qkv projection, RoPE on q and k, causal SDPA, output
projection) with pos_enc="rope", against the same block with pos_enc="none". RoPE's share is measured
two ways:
  alone:      the rope scheme's `rotate` of q and k, forward+backward, on the strided (B, 2 nh, T, hs)
              view the block hands it, divided by the block with RoPE;
  difference: (block with RoPE - block without) / block with RoPE.
Steps of all three are interleaved over several rounds, so that load from other processes hits
them alike; each number is the median over all timed steps.

    python -m scripts.bench_rope                  # the two sizes of issue 2, CPU, wall clock
    python -m scripts.bench_rope --clock=process  # CPU time of this process: steadier on a busy machine
    python -m scripts.bench_rope --device=cuda
"""

import statistics
import sys
import time
from dataclasses import dataclass

import torch

from attention import CausalSelfAttention
from cli import parse_cli, run_main
from configurator import Config, check_ints
from model import ModelConfig
from positional import POS_ENCODINGS, Positions

SIZES = [(12, 64, 4, 32), (8, 1024, 12, 64)]  # (B, T, n_head, head_dim): baby CPU size, GPT-2 small


@dataclass(frozen=True)
class BenchRopeConfig(Config):
    """scripts.bench_rope's keys."""

    device: str = "cpu"  # cpu, cuda, cuda:N or mps
    clock: str = "wall"  # wall or process (CPU time of this process)
    threads: int = 0  # torch CPU threads (0: torch's default)
    rounds: int = 3  # timing rounds per setting; the median is reported

    def validate(self):
        check_ints(self, ("threads",), 0, 4096)
        check_ints(self, ("rounds",), 1, 10_000)
        if self.clock not in ("wall", "process"):
            raise ValueError(f"clock must be 'wall' or 'process', got {self.clock!r}")


def block(T, n_head, head_dim, pos_enc, device):
    """model.py's attention block and the positional encoding it is called with."""
    cfg = ModelConfig(block_size=T, n_head=n_head, n_embd=n_head * head_dim, pos_enc=pos_enc)
    return CausalSelfAttention(cfg, layer=0).to(device), POS_ENCODINGS[pos_enc](cfg).to(device)


def bench(B, T, n_head, head_dim, iters, rounds, device, clock):
    torch.manual_seed(0)
    x = torch.randn(B, T, n_head * head_dim, device=device)
    with_rope, rope = block(T, n_head, head_dim, "rope", device)
    without, nope = block(T, n_head, head_dim, "none", device)
    without.load_state_dict(with_rope.state_dict())
    # the strided view CausalSelfAttention.forward hands to `rotate`: q and k of the fused projection
    qkv = with_rope.c_attn(x).detach().view(B, T, 3 * n_head, head_dim).transpose(1, 2)
    qk = qkv.split((2 * n_head, n_head), dim=1)[0].requires_grad_()  # (B, 2 nh, T, hs)
    grad = torch.randn(qk.shape, device=device)
    pos = Positions(T, T)

    def rope_step():
        qk.grad = None  # as in the block, where nothing accumulates into q and k
        rope.rotate(qk, pos, 0).backward(grad)

    steps = {
        "attn+rope": lambda: with_rope(x, rope, None, pos).sum().backward(),
        "attn": lambda: without(x, nope, None, pos).sum().backward(),
        "rope": rope_step,
    }
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for i in range(iters + 1):  # the first step of each round warms up
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = clock()
                step()
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times[name].append(1e3 * (clock() - t0))
    return {name: statistics.median(ms) for name, ms in times.items()}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, BenchRopeConfig, presets=False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    clock = time.perf_counter if cfg.clock == "wall" else time.process_time
    print(
        f"torch {torch.__version__}, {cfg.device}, {torch.get_num_threads()} CPU threads, "
        f"{cfg.clock} clock; forward+backward medians in ms"
    )
    for B, T, nh, hs in SIZES:
        iters = 50 if T <= 128 else 3
        r = bench(B, T, nh, hs, iters, cfg.rounds, cfg.device, clock)
        print(
            f"B={B} T={T} n_head={nh} head_dim={hs}: attention+RoPE {r['attn+rope']:.3f}, "
            f"attention alone {r['attn']:.3f}, RoPE(q, k) {r['rope']:.3f} | RoPE/attention: "
            f"alone {r['rope'] / r['attn+rope']:.1%}, difference {1 - r['attn'] / r['attn+rope']:.1%}"
        )


if __name__ == "__main__":
    run_main(main)
