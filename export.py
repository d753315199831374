"""Export a trained run to a Hugging Face model directory: python export.py --out_dir=out/RUN [--hf_dir=DIR]

Writes config.json, model.safetensors and the tokenizer (tokenizer.json), which
`transformers.AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` load:
learned -> GPT2LMHeadModel, rope -> GPTNeoXForCausalLM (Llama-style blocks: LlamaForCausalLM), alibi ->
MptForCausalLM; interop.py says how, and refuses what has no transformers counterpart. Needs transformers.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from configurator import parse_cli, run_main
from interop import hf_tokenizer, to_hf
from rundir import load_run


@dataclass(frozen=True)
class ExportConfig:
    """export.py's keys."""

    out_dir: str = "out/default"  # the run directory (ckpt.pt)
    hf_dir: str | None = None  # where the model goes; None: <out_dir>/hf
    overwrite: bool = False  # replace what hf_dir holds


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    (cfg,) = parse_cli(argv, __doc__, ExportConfig, presets=False)
    dest = Path(cfg.hf_dir) if cfg.hf_dir else Path(cfg.out_dir) / "hf"
    if dest.exists() and any(dest.iterdir()) and not cfg.overwrite:
        raise ValueError(f"{dest} is not empty; choose another --hf_dir or pass --overwrite=true")
    model, _, _, meta = load_run(cfg.out_dir, "cpu")
    hf = to_hf(model)  # refuses what transformers cannot hold before anything is written
    tokenizer = hf_tokenizer(meta)
    hf.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    n = sum(p.numel() for p in hf.parameters())
    print(f"wrote {dest}: {type(hf).__name__}, {n:,} parameters, and its tokenizer; load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({str(dest)!r})")  # fmt: skip
    return dest


if __name__ == "__main__":
    run_main(main)
