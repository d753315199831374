"""How much of an attention block's forward+backward time does RoPE take?

The block is model.py's CausalSelfAttention (qkv projection, RoPE on q and k, causal SDPA, output
projection) with pos_enc="rope", against the same block with pos_enc="none". RoPE's share is measured
two ways:
  alone:      the rope scheme's `rotate` of q and k, forward+backward, on the strided (2, B, nh, T, hs)
              view the block hands it, divided by the block with RoPE;
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import POS_ENCODINGS, CausalSelfAttention, ModelConfig

SIZES = [(12, 64, 4, 32), (8, 1024, 12, 64)]  # (B, T, n_head, head_dim): baby CPU size, GPT-2 small


def block(T, n_head, head_dim, pos_enc, device):
    """model.py's attention block and the positional encoding it is called with."""
    cfg = ModelConfig(block_size=T, n_head=n_head, n_embd=n_head * head_dim, pos_enc=pos_enc)
    return CausalSelfAttention(cfg).to(device), POS_ENCODINGS[pos_enc](cfg).to(device)


def bench(B, T, n_head, head_dim, iters, rounds, device, clock):
    torch.manual_seed(0)
    x = torch.randn(B, T, n_head * head_dim, device=device)
    with_rope, rope = block(T, n_head, head_dim, "rope", device)
    without, nope = block(T, n_head, head_dim, "none", device)
    without.load_state_dict(with_rope.state_dict())
    # the strided view CausalSelfAttention.forward hands to `rotate`: q and k of the fused projection
    qkv = with_rope.c_attn(x).detach().view(B, T, 3, n_head, head_dim).permute(2, 0, 3, 1, 4)
    qk = qkv.split((2, 1))[0].requires_grad_()  # (2, B, nh, T, hs)
    grad = torch.randn(qk.shape, device=device)

    def rope_step():
        qk.grad = None  # as in the block, where nothing accumulates into q and k
        rope.rotate(qk, 0).backward(grad)

    steps = {
        "attn+rope": lambda: with_rope(x, rope, None, 0, None, 0).sum().backward(),
        "attn": lambda: without(x, nope, None, 0, None, 0).sum().backward(),
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
            f"attention alone {r['attn']:.3f}, RoPE(q, k) {r['rope']:.3f} | RoPE/attention: "
            f"alone {r['rope'] / r['attn+rope']:.1%}, difference {1 - r['attn'] / r['attn+rope']:.1%}"
        )


if __name__ == "__main__":
    main()
