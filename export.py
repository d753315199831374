"""Export a trained run to a Hugging Face model directory: python export.py --out_dir=out/RUN [--hf_dir=DIR]

Writes config.json, model.safetensors and the tokenizer (tokenizer.json), which
`transformers.AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` load:
learned -> GPT2LMHeadModel, rope -> GPTNeoXForCausalLM (Llama-style blocks: LlamaForCausalLM), alibi ->
MptForCausalLM; interop.py says how, and refuses what has no transformers counterpart. Needs transformers.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from cli import parse_cli, run_main
from configurator import Config
from files import replace_folder
from interop import hf_tokenizer, to_hf
from rundir import CKPT, METRICS, load_run


@dataclass(frozen=True)
class ExportConfig(Config):
    """export.py's keys."""

    # --- export
    out_dir: str = "out/default"  # the run directory (ckpt.pt)
    hf_dir: str | None = None  # where the model goes, a folder of its own; None: <out_dir>/hf
    overwrite: bool = False  # replace an earlier export in hf_dir (never a run or other files)


def destination(cfg: ExportConfig) -> Path:
    """hf_dir, after checking that writing there loses nothing: never a run directory, never a folder of
    other files; an earlier export only with overwrite."""
    dest = Path(cfg.hf_dir) if cfg.hf_dir else Path(cfg.out_dir) / "hf"
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"hf_dir {str(dest)!r} is a file; choose another --hf_dir")
    names = {p.name for p in dest.iterdir()} if dest.is_dir() else set()
    if dest.resolve() == Path(cfg.out_dir).resolve() or names & {CKPT, METRICS}:
        raise ValueError(
            f"{dest} holds a nanorope run; an export goes into a folder of its own, e.g. "
            f"--hf_dir={Path(cfg.out_dir) / 'hf'}"
        )
    if names and not cfg.overwrite:
        raise ValueError(
            f"{dest} is not empty; choose another --hf_dir or replace the export there with --overwrite=true"
        )
    if names and "config.json" not in names:
        raise ValueError(
            f"{dest} holds files that are not an export ({', '.join(sorted(names)[:3])}); "
            "choose another --hf_dir"
        )
    return dest


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    (cfg,) = parse_cli(argv, __doc__, ExportConfig, presets=False)
    dest = destination(cfg)
    model, _, _, meta = load_run(cfg.out_dir, "cpu")
    hf = to_hf(model)  # refuses what transformers cannot hold before anything is written
    tokenizer = hf_tokenizer(meta)

    def write(folder: Path) -> None:
        hf.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    replace_folder(dest, write)
    if cfg.overwrite:
        print(f"overwrite: replaced the export in {dest}")
    n = sum(p.numel() for p in hf.parameters())
    print(
        f"wrote {dest}: {type(hf).__name__}, {n:,} parameters, and its tokenizer; load it with "
        f"transformers.AutoModelForCausalLM.from_pretrained({str(dest)!r})"
    )
    return dest


if __name__ == "__main__":
    run_main(main)
