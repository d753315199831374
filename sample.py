"""Sample from a trained run: python sample.py --out_dir=out/default [--prompt=TEXT] [--key=value ...]

The model is rebuilt from the run's ckpt.pt alone (its model config, weights and tokenizer state; read
with weights_only=True) and decodes with the KV cache of `GPT.generate` (model.generate_text), under
the run's precision policy (runtime.Precision).
"""

import sys
from dataclasses import dataclass

import torch

from cli import parse_cli, run_main
from configurator import check_ints, check_number
from data.sources import default_prompt, sampler
from data.tokenizers import get_tokenizer
from rundir import load_run
from runtime import RuntimeConfig

MAX_NEW_TOKENS, MAX_SAMPLES = 100_000, 256


@dataclass(frozen=True)
class SampleConfig(RuntimeConfig):
    """sample.py's keys (nanoGPT's names)."""

    # --- sample
    out_dir: str = "out/default"  # a train.py run directory holding ckpt.pt
    prompt: str | None = None  # start text; None: a newline, or for a task run one of its problems
    max_new_tokens: int = 500  # tokens generated per sample
    temperature: float = 0.8  # 0 = greedy
    top_k: int | None = 200  # None or 0: sample from the whole vocabulary
    num_samples: int = 1  # samples drawn, one after another
    seed: int = 1337  # torch's seed for the draws

    def validate(self):
        super().validate()
        # bounds: past them the token buffer and KV cache outgrow any machine this repo is meant for
        check_ints(self, ("max_new_tokens",), 0, MAX_NEW_TOKENS)
        check_ints(self, ("num_samples",), 1, MAX_SAMPLES)
        check_ints(self, ("seed",), 0, 2**63 - 1)
        check_number("temperature", self.temperature, 0)
        if self.top_k is not None:
            check_ints(self, ("top_k",), 0, 2**31)


def sample(cfg: SampleConfig) -> list[str]:
    """Load cfg.out_dir/ckpt.pt and return its samples (model.generate_text; a task run answers its problem
    with the ids it trained with). Characters outside a `char` vocabulary raise ValueError (for a task run,
    with what its prompts look like)."""
    device, precision = cfg.setup()
    model, model_cfg, train_cfg, meta = load_run(cfg.out_dir, device)
    source = sampler(train_cfg, model_cfg, meta)
    prompt = default_prompt(meta) if cfg.prompt is None else cfg.prompt
    torch.manual_seed(cfg.seed)
    try:
        with precision.autocast():
            top_k = cfg.top_k or None
            return source.sample(
                model,
                get_tokenizer(meta),
                prompt,
                cfg.max_new_tokens,
                cfg.temperature,
                top_k,
                cfg.num_samples,
            )
    except ValueError as e:
        if meta["dataset"].startswith("task:") and "not in this" in str(e):
            example = default_prompt(meta)
            raise ValueError(
                f"{e}; a {meta['dataset']} prompt is a problem such as --prompt={example!r}"
            ) from None
        raise


def main(argv: list[str] | None = None) -> list[str]:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, SampleConfig, presets=False)
    texts = sample(cfg)
    for text in texts:
        print(text, "-" * 40, sep="\n", flush=True)
    return texts


if __name__ == "__main__":
    run_main(main)
