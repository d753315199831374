"""Sample from a trained run: python sample.py --out_dir=out/default [--prompt=TEXT] [--key=value ...]

The model is rebuilt from the run's ckpt.pt alone (its model config, weights and tokenizer state; read
with weights_only=True) and decodes with the KV cache of `GPT.generate` (model.generate_text), under
the run's precision policy (runtime.Precision).
"""

import math
import sys
from dataclasses import dataclass

import torch

from configurator import check_ints, parse_cli, run_main
from data.tokenizers import get_tokenizer
from model import generate_text
from rundir import load_run
from runtime import DTYPES, Precision, auto_device, is_device

MAX_NEW_TOKENS, MAX_SAMPLES = 100_000, 256


@dataclass(frozen=True)
class SampleConfig:
    """sample.py's keys (nanoGPT's names)."""

    out_dir: str = "out/default"  # a train.py run directory holding ckpt.pt
    prompt: str = "\n"  # start text
    max_new_tokens: int = 500
    temperature: float = 0.8  # 0 = greedy
    top_k: int | None = 200  # None or 0: sample from the whole vocabulary
    num_samples: int = 1
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    dtype: str = "auto"  # auto = bfloat16 on CUDA if supported (else float16), float32 elsewhere

    def __post_init__(self):
        # bounds: past them the token buffer and KV cache outgrow any machine this repo is meant for
        check_ints(self, ("max_new_tokens",), 0, MAX_NEW_TOKENS)
        check_ints(self, ("num_samples",), 1, MAX_SAMPLES)
        check_ints(self, ("seed",), 0, 2**63 - 1)
        if not 0 <= self.temperature < math.inf:
            allowed = "a finite number >= 0 (0 = greedy)"
            raise ValueError(f"temperature must be {allowed}, got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 0):
            raise ValueError(f"top_k must be an integer >= 0 or none, got {self.top_k!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.device != "auto" and not is_device(self.device):
            allowed = "'auto' or a torch device (cpu, cuda:1, mps)"
            raise ValueError(f"device must be {allowed}, got {self.device!r}")


def sample(cfg: SampleConfig) -> list[str]:
    """Load cfg.out_dir/ckpt.pt and return `generate_text`'s samples. Characters outside a `char`
    vocabulary raise ValueError."""
    device = auto_device(cfg.device)
    model, _, _, meta = load_run(cfg.out_dir, device)
    torch.manual_seed(cfg.seed)
    with Precision.of(cfg.dtype, device).autocast():
        return generate_text(
            model, get_tokenizer(meta), cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k or None,
            cfg.num_samples,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> list[str]:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, SampleConfig, presets=False)
    texts = sample(cfg)
    for text in texts:
        print(text, "-" * 40, sep="\n", flush=True)
    return texts


if __name__ == "__main__":
    run_main(main)
