"""Sample from a trained run: python sample.py out/RUN [--prompt TEXT] [--max_new_tokens N] ...

The model is rebuilt from the run's ckpt.pt alone (its model config, weights and tokenizer state; read
with weights_only=True) and decodes with the KV cache of `GPT.generate`.
"""

import argparse
import contextlib
import sys

import torch

from data.corpora import DownloadError
from data.tokenizers import get_tokenizer
from model import GPT
from train import auto_device, load_run


def generate_text(
    model: GPT, tok, prompt: str, max_new_tokens: int, temperature=0.8, top_k=200, num_samples=1
) -> list[str]:
    """`num_samples` continuations of `prompt`, each returned with the prompt in front.

    The model never sees more than block_size positions, whatever its scheme: relative schemes could
    run further, but past the training length they degrade (that is what compare.py measures, not what
    a sample should show). Once the text outgrows block_size, decoding restarts from its last
    block_size // 2 tokens, so the cache is refilled once per half block instead of once per token
    (nanoGPT's cropping).
    """
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: give at least one character, e.g. --prompt=$'\\n'")
    block, keep = model.config.block_size, max(1, model.config.block_size // 2)
    device = next(model.parameters()).device
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    while max_new_tokens > 0:
        ctx = idx if idx.size(1) < block else idx[:, -keep:]
        n = min(max_new_tokens, block + 1 - ctx.size(1))  # generate feeds ctx + n - 1 <= block positions
        out = model.generate(ctx, n, temperature=temperature, top_k=top_k)
        idx = torch.cat((idx, out[:, ctx.size(1) :]), dim=1)
        max_new_tokens -= n
    return [tok.decode(row.tolist()) for row in idx]


def sample(
    run_dir,
    prompt: str = "\n",
    max_new_tokens: int = 500,
    temperature: float = 0.8,
    top_k: int | None = 200,
    num_samples: int = 1,
    seed: int = 1337,
    device: str = "cpu",
) -> list[str]:
    """Load run_dir/ckpt.pt and return `generate_text`'s samples; temperature 0 is greedy, top_k None
    samples from the whole vocabulary. Characters outside a `char` vocabulary raise ValueError."""
    if max_new_tokens < 0 or num_samples < 1:
        raise ValueError(
            f"need max_new_tokens >= 0 and num_samples >= 1, got {max_new_tokens}, {num_samples}"
        )
    model, _, _, meta = load_run(run_dir, device)
    torch.manual_seed(seed)
    kind = torch.device(device).type
    use_bf16 = kind == "cuda" and torch.cuda.is_bf16_supported()
    amp = torch.autocast(kind, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    with amp:
        return generate_text(
            model, get_tokenizer(meta), prompt, max_new_tokens, temperature, top_k, num_samples
        )


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description="Sample from a run trained by train.py.")
    parser.add_argument("run_dir", help="a train.py out_dir holding ckpt.pt")
    parser.add_argument("--prompt", default="\n", help="start text (default: a newline)")
    parser.add_argument("--max_new_tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=200, help="0 = no top-k filtering")
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="auto", help="auto = cuda > mps > cpu")
    args = parser.parse_args(argv)
    device = auto_device(args.device)
    texts = sample(
        args.run_dir,
        args.prompt,
        args.max_new_tokens,
        args.temperature,
        args.top_k or None,
        args.num_samples,
        args.seed,
        device,
    )
    for text in texts:
        print(text, "-" * 40, sep="\n", flush=True)
    return texts


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, DownloadError) as e:
        sys.exit(f"error: {e}")
