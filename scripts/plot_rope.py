"""Plot what each RoPE scaling method does to the frequencies -> docs/rope_frequencies.png.

    python -m scripts.plot_rope [--out=docs/rope_frequencies.png]

Example setting: head dim 64 (GPT-2 small), base 10000, trained on 1024 tokens, extended 4x.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from cli import parse_cli, run_main
from configurator import Config
from rope import rope_inv_freq

ROOT = Path(__file__).resolve().parent.parent
D, BASE, ORIG, FACTOR = 64, 10000.0, 1024, 4.0
METHODS = {  # label -> (scaling, seq_len for dynamic)
    "none": (None, None),
    "linear (PI)": ({"rope_type": "linear", "factor": FACTOR}, None),
    "ntk (static)": ({"rope_type": "ntk", "factor": FACTOR}, None),
    "dynamic, at 2x length": (
        {"rope_type": "dynamic", "factor": FACTOR, "original_max_position_embeddings": ORIG},
        2 * ORIG,
    ),
    "dynamic, at 4x length": (
        {"rope_type": "dynamic", "factor": FACTOR, "original_max_position_embeddings": ORIG},
        4 * ORIG,
    ),
    "yarn": ({"rope_type": "yarn", "factor": FACTOR, "original_max_position_embeddings": ORIG}, None),
    "llama3": (
        {
            "rope_type": "llama3",
            "factor": FACTOR,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": ORIG,
        },
        None,
    ),
}


@dataclass(frozen=True)
class PlotConfig(Config):
    """scripts.plot_rope's keys."""

    out: str = str(ROOT / "docs" / "rope_frequencies.png")  # the PNG to write


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = parse_cli(argv, __doc__, PlotConfig, presets=False)

    plain, _ = rope_inv_freq(D, BASE)
    pairs = range(D // 2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, (scaling, seq_len) in METHODS.items():
        inv_freq, attn = rope_inv_freq(D, BASE, scaling, seq_len)
        style = "--" if label.startswith("dynamic") else "-"
        name = label if attn == 1.0 else f"{label} (cos/sin x {attn:.3f})"
        left.plot(pairs, (2 * math.pi / inv_freq).tolist(), style, label=name)
        right.plot(pairs, (inv_freq / plain).tolist(), style, label=name)
    for y, text in [(ORIG, "trained length"), (FACTOR * ORIG, "target length")]:
        left.axhline(y, color="gray", lw=0.8, ls=":")
        left.text(0, y * 1.15, text, fontsize=8, color="gray")
    left.set(yscale="log", xlabel="pair index i", ylabel="wavelength 2π / inv_freq_i (tokens)")
    left.set_title("wavelength of each rotating pair", fontsize=10)
    right.set(xlabel="pair index i", ylabel="scaled / original inv_freq")
    right.set_title(f"frequency kept (1) vs. interpolated (1/{FACTOR:g})", fontsize=10)
    right.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"RoPE scaling methods: d={D}, base={BASE:g}, {ORIG} -> {FACTOR * ORIG:g} tokens", fontsize=11
    )
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
