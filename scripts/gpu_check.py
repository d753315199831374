"""The GPU check: what a CPU machine cannot test, in one command on one CUDA device (about 6 minutes on an
A100 or H100), with a markdown report.

    python -m scripts.gpu_check [--report=out/gpu_check.md] [--train_iters=5000]

1. the tests that need CUDA (tests/test_runtime.py's precision policy), and every test of the attention
   kernels with the device present;
2. FlexAttention against SDPA on the GPU for every softmax scheme and option: logits and gradients of one
   training step (bf16 autocast), and the ms per training step of each kernel;
3. the shakespeare_char preset (config/shakespeare_char.py, nanoGPT's: val loss 1.4697 in ~3 min on an A100
   with learned positions), with compile and bf16 autocast: wall time, final val loss, tokens/s and MFU;
4. DDP over the GPUs present (torchrun, 2+ GPUs; skipped with one), 50 steps, against one process;
5. several runs as one stacked model (scripts.bench_batched, 8 baby-shape runs, fp32) against the same runs
   one after another: on CPU it is slower (docs/GRIDS.md), a GPU is where it should pay.
Every number goes in the report; nothing is asserted beyond the tests of step 1 and the tolerances of 2.
"""

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cli import parse_cli, run_main
from configurator import Config, check_ints
from model import GPT, ModelConfig
from positional import POS_ENCODINGS
from scripts.bench_batched import BenchBatchedConfig
from scripts.bench_batched import bench as bench_batched

ROOT = Path(__file__).resolve().parent.parent
SOFTMAX = [s for s in POS_ENCODINGS if POS_ENCODINGS[s].normalise == "softmax"]
OPTIONS = {
    "sink": dict(attn_sink=True),
    "ssmax": dict(ssmax=True),
    "SSSL": dict(window=64, window_pattern="SSSL"),
}


@dataclass(frozen=True)
class CheckConfig(Config):
    """scripts/gpu_check.py's keys."""

    # --- check
    report: str = "out/gpu_check.md"  # the markdown report (a JSON of the same numbers beside it)
    train_iters: int = 5000  # iterations of the shakespeare_char preset (nanoGPT's 5000)
    out_dir: str = "out/gpu_check"  # the preset's run directory (replaced)

    def validate(self):
        check_ints(self, ("train_iters",), 1, 10**6)


def shell(cmd: list[str], timeout: int = 900) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr)[-3000:], time.perf_counter() - t0


def kernels(device: str) -> list[dict]:
    """Flex vs SDPA per scheme and option: max |logit difference|, max relative gradient difference, and
    the median ms of a training step (forward, backward) with each, at the baby shape, bf16 autocast."""
    rows = []
    cases = [(s, {}) for s in SOFTMAX] + [(f"rope+{k}", v) for k, v in OPTIONS.items()]
    for name, options in cases:
        scheme = name.split("+")[0]
        cfg = ModelConfig(block_size=256, n_layer=4, n_head=4, n_embd=128, pos_enc=scheme, **options)
        torch.manual_seed(0)
        models = {k: GPT(dataclasses.replace(cfg, attention=k)).to(device) for k in ("sdpa", "flex")}
        models["flex"].load_state_dict(models["sdpa"].state_dict())
        compiled = {k: torch.compile(m) for k, m in models.items()}
        idx = torch.randint(0, 65, (12, 256), device=device)
        out, grads, ms = {}, {}, {}
        for k, m in compiled.items():
            with torch.autocast("cuda", torch.bfloat16):
                logits, loss = m(idx, idx)
            loss.backward()
            out[k], grads[k] = logits.float(), {n: p.grad.float() for n, p in models[k].named_parameters()}
            times = []
            for _ in range(10):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.autocast("cuda", torch.bfloat16):
                    m(idx, idx)[1].backward()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            ms[k] = 1e3 * sorted(times)[len(times) // 2]
        rel = max(
            float((grads["flex"][n] - g).norm() / g.norm().clamp_min(1e-12)) for n, g in grads["sdpa"].items()
        )
        diff = float((out["flex"] - out["sdpa"]).abs().max())
        rows.append(
            {"case": name, "logit_diff": diff, "grad_rel_diff": rel, **{f"{k}_ms": v for k, v in ms.items()}}
        )
    return rows


def train_preset(cfg: CheckConfig) -> dict:
    cmd = [
        sys.executable,
        "train.py",
        "config/shakespeare_char.py",
        f"--out_dir={cfg.out_dir}",
        "--overwrite=true",
    ]
    cmd += [f"--max_iters={cfg.train_iters}", f"--lr_decay_iters={cfg.train_iters}", "--compile=true"]
    cmd += ["--pos_enc=learned", "--dtype=bfloat16"]
    rc, tail, wall = shell(cmd, timeout=1200)
    summary = json.loads((ROOT / cfg.out_dir / "summary.json").read_text()) if rc == 0 else {}
    return {"rc": rc, "wall_s": wall, "summary": summary, "tail": tail if rc else ""}


def ddp() -> dict:
    n = torch.cuda.device_count()
    if n < 2:
        return {"skipped": f"{n} GPU: DDP needs 2 or more"}
    base = [
        "train.py",
        "config/shakespeare_char.py",
        "--max_iters=50",
        "--lr_decay_iters=50",
        "--eval_interval=50",
    ]
    runs = {}
    for procs in (1, n):
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}"]
        rc, tail, wall = shell([*launcher, *base, f"--out_dir=out/gpu_check_ddp{procs}", "--overwrite=true"])
        runs[procs] = {"rc": rc, "wall_s": wall, "tail": tail if rc else ""}
    return runs


def check(cfg: CheckConfig) -> dict:
    if not torch.cuda.is_available():
        raise ValueError("the GPU check needs a CUDA device; this machine has none")
    device = "cuda"
    results = {
        "device": torch.cuda.get_device_name(),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
    }
    rc, tail, wall = shell(
        [sys.executable, "-m", "pytest", "-q", "tests/test_runtime.py", "tests/test_flex.py"]
    )
    results["tests"] = {"rc": rc, "wall_s": wall, "tail": tail}
    results["kernels"] = kernels(device)
    results["preset"] = train_preset(cfg)
    results["ddp"] = ddp()
    results["batched"] = bench_batched(BenchBatchedConfig(members=8, device=device, rounds=20))
    return results


def markdown(r: dict) -> str:
    s = r["preset"]["summary"]
    lines = [
        f"# GPU check: {r['device']} x {r['gpus']}, torch {r['torch']}\n",
        f"Tests needing CUDA: rc {r['tests']['rc']} ({r['tests']['wall_s']:.0f} s)",
        f"```\n{r['tests']['tail'][-600:]}\n```\n",
        "## FlexAttention vs SDPA (baby shape at T = 256, batch 12, bf16 autocast, compiled)\n",
        "| case | max logit diff | max grad rel diff | sdpa ms/step | flex ms/step | flex / sdpa |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for k in r["kernels"]:
        speed = k["flex_ms"] / k["sdpa_ms"]
        lines.append(
            f"| {k['case']} | {k['logit_diff']:.2e} | {k['grad_rel_diff']:.2e} | {k['sdpa_ms']:.1f} | "
            f"{k['flex_ms']:.1f} | {speed:.2f}x |"
        )
    lines.append("\n## shakespeare_char preset (learned, compile, bf16)\n")
    if s:
        mfu = "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.1f}%"
        lines.append(
            f"{s['iters']} iters: final val loss {s['final_val_loss']:.4f} (nanoGPT: 1.4697), wall "
            f"{r['preset']['wall_s'] / 60:.1f} min, {s['tokens_per_sec']:,.0f} tokens/s, MFU {mfu}"
        )
    else:
        lines.append(f"failed: rc {r['preset']['rc']}\n```\n{r['preset']['tail']}\n```")
    lines.append("\n## DDP\n")
    lines.append("```\n" + json.dumps(r["ddp"], indent=1)[:2000] + "\n```")
    b = r["batched"]
    lines.append("\n## Several runs as one stacked model (scripts.bench_batched, 8 baby-shape runs, fp32)\n")
    lines.append(
        f"a step of each run, one after another: {b['sequential_ms']:.1f} ms; one stacked step: "
        f"{b['batched_ms']:.1f} ms: {b['ratio']:.2f}x"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, CheckConfig, presets=False)
    results = check(cfg)
    report = Path(cfg.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown(results))
    report.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return results


if __name__ == "__main__":
    run_main(main)
