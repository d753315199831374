"""How much of an attention block's forward+backward time does RoPE take?

The block is the attention half of a GPT layer: qkv projection, RoPE on q and k, causal SDPA,
output projection. RoPE's share is measured two ways:
  alone:      RoPE(q) + RoPE(k), forward+backward, on the strided views the block hands it,
              divided by the block with RoPE;
  difference: (block with RoPE - block without) / block with RoPE.
Steps of all three are interleaved over several rounds, so that load from other processes hits
them alike; each number is the median over all timed steps.

    python scripts/bench_rope.py                  # the two sizes of issue 2, CPU, wall clock
    python scripts/bench_rope.py --clock process  # CPU time of this process: steadier on a busy machine
    python scripts/bench_rope.py --device cuda
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rope import RotaryEmbedding

SIZES = [(12, 64, 4, 32), (8, 1024, 12, 64)]  # (B, T, n_head, head_dim): baby CPU size, GPT-2 small


class Attention(nn.Module):
    def __init__(self, n_head: int, head_dim: int, T: int, use_rope: bool):
        super().__init__()
        C = n_head * head_dim
        self.n_head, self.use_rope = n_head, use_rope
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.rotary = RotaryEmbedding(head_dim, max_seq_len=T)

    def qkv(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        return [t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v)]  # (B, nh, T, hs)

    def forward(self, x):
        q, k, v = self.qkv(x)
        if self.use_rope:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(x.shape))


def bench(B, T, n_head, head_dim, iters, rounds, device, clock):
    torch.manual_seed(0)
    x = torch.randn(B, T, n_head * head_dim, device=device)
    with_rope = Attention(n_head, head_dim, T, use_rope=True).to(device)
    without = Attention(n_head, head_dim, T, use_rope=False).to(device)
    without.load_state_dict(with_rope.state_dict())
    q, k, _ = (t.detach().requires_grad_() for t in with_rope.qkv(x))  # strided, as inside the block
    grad = torch.randn_like(q)

    def rope_step():
        q.grad = k.grad = None  # as in the block, where nothing accumulates into q and k
        torch.autograd.backward([with_rope.rotary(q), with_rope.rotary(k)], [grad, grad])

    steps = {
        "attn+rope": lambda: with_rope(x).sum().backward(),
        "attn": lambda: without(x).sum().backward(),
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "process"], default="wall")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} CPU threads, "
        f"{args.clock} clock; forward+backward medians in ms"
    )
    for B, T, nh, hs in SIZES:
        iters = 50 if T <= 128 else 3
        r = bench(B, T, nh, hs, iters, args.rounds, args.device, clock)
        print(
            f"B={B} T={T} n_head={nh} head_dim={hs}: attention+RoPE {r['attn+rope']:.3f}, "
            f"attention alone {r['attn']:.3f}, RoPE(q)+RoPE(k) {r['rope']:.3f} | RoPE/attention: "
            f"alone {r['rope'] / r['attn+rope']:.1%}, difference {1 - r['attn'] / r['attn+rope']:.1%}"
        )


if __name__ == "__main__":
    main()
