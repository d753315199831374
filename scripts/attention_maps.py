"""Attention maps of a trained run: every layer and head for one text, as one PNG grid per length, at lengths
inside and past the training length L.

    python -m scripts.attention_maps --out_dir=out/RUN [--prompt=TEXT] [--lengths=1,2,4] [--to=DIR]

The text is the prompt followed by the model's own greedy continuation up to each length T = m * L (the
model reads its own words, so no data is needed; `learned` has no positions past L). A task run's prompt
is a problem: the model answers it greedily with the ids it trained with, and the map is of the whole
problem, at its own length. Row i of a map is query i over keys j: the weights the model applies
(attention.weights: softmax, a sink's column dropped, or stick-breaking's), on a square-root colour scale so
that small weights stay visible; gray lines mark L. Writes DIR/attention_T<T>.png (DIR: out_dir/attention).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import torch
from matplotlib.colors import PowerNorm

from cli import parse_cli, run_main
from configurator import check_number
from data.batches import to_device
from data.sources import TaskSource, default_prompt, sampler
from data.tokenizers import get_tokenizer
from rundir import load_run
from runtime import RuntimeConfig


@dataclass(frozen=True)
class MapsConfig(RuntimeConfig):
    """scripts/attention_maps.py's keys."""

    # --- maps
    out_dir: str = "out/default"  # a train.py run directory holding ckpt.pt
    prompt: str | None = None  # the text's start; None: a newline, or for a task run one of its problems
    lengths: tuple[float, ...] = (1.0, 2.0)  # multiples of the training length L (text runs)
    to: str | None = None  # where the PNGs go; None: out_dir/attention

    def validate(self):
        super().validate()
        if not self.lengths:
            raise ValueError("lengths must list at least one multiple of the training length, like 1,2")
        for m in self.lengths:
            check_number("lengths", m, 0, 64, strict=True)


@torch.no_grad()
def maps(model, idx: torch.Tensor, positions=None, abacus=None) -> list[torch.Tensor]:
    """Every layer's attention weights for one sequence idx (1, T): [(nh, T, T)] per layer, float32."""
    seen = []
    model.eval()(idx, None, positions, abacus, observe=lambda layer, w: seen.append(w[0].float().cpu()))
    return seen


def draw(weights: list[torch.Tensor], L: int, title: str, path: Path) -> Path:
    """One grid: a row per layer, a column per head; query i down, key j across, ticks at 0, L and T - 1, a
    shared colour bar (square-root scale, so the many small weights stay visible)."""
    n_layer, nh = len(weights), weights[0].size(0)
    fig, axes = plt.subplots(n_layer, nh, figsize=(2.4 * nh + 0.6, 2.4 * n_layer), squeeze=False)
    T = weights[0].size(-1)
    ticks = sorted({0, T - 1} | ({L - 1} if T > L else set()))
    for layer, w in enumerate(weights):
        for h in range(nh):
            ax = axes[layer, h]
            image = ax.imshow(
                w[h], cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest"
            )
            if T > L:
                ax.axvline(L - 0.5, color="gray", lw=0.6)
                ax.axhline(L - 0.5, color="gray", lw=0.6)
            ax.set_xticks(ticks)
            ax.set_yticks(ticks)
            ax.tick_params(labelsize=6, length=2)
            ax.set_title(f"layer {layer}, head {h}", fontsize=7)
            if h == 0:
                ax.set_ylabel("query i", fontsize=7)
            if layer == n_layer - 1:
                ax.set_xlabel("key j", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def attention_maps(cfg: MapsConfig) -> list[Path]:
    """The PNGs of cfg.out_dir's run (module docstring)."""
    device, precision = cfg.setup()
    model, model_cfg, train_cfg, meta = load_run(cfg.out_dir, device)
    source, tok = sampler(train_cfg, model_cfg, meta), get_tokenizer(meta)
    to = Path(cfg.to or Path(cfg.out_dir) / "attention")
    to.mkdir(parents=True, exist_ok=True)
    prompt = default_prompt(meta) if cfg.prompt is None else cfg.prompt
    L, name = model_cfg.block_size, f"{cfg.out_dir} ({model_cfg.pos_enc})"
    with precision.autocast():
        if isinstance(source, TaskSource):
            n = source.size_of(prompt)
            text = source.sample(model, tok, prompt, sum(source.task.lengths(n)), temperature=0)[0]
            ids = to_device(source.ids([n], len(text), rng=None), str(device))
            w = maps(model, torch.tensor([tok.encode(text)], device=device), *ids)
            return [draw(w, source.train_len, f"{name}: {text}", to / f"attention_T{len(text)}.png")]
        idx = torch.tensor([tok.encode(prompt)], device=device)
        lengths = sorted({max(1, round(m * L)) for m in cfg.lengths})
        if (model.transformer.wpe.max_len or lengths[-1]) < lengths[-1]:
            raise ValueError(
                f"pos_enc={model_cfg.pos_enc!r} has no positions past {model.transformer.wpe.max_len}: use "
                "--lengths=1"
            )
        if idx.size(1) < lengths[-1]:
            idx = model.generate(idx, lengths[-1] - idx.size(1), temperature=0)
        out = []
        for T in lengths:
            title = f"{name}: T = {T} (L = {L}), {tok.decode(idx[0, :40].tolist())!r}..."
            out.append(draw(maps(model, idx[:, :T]), L, title, to / f"attention_T{T}.png"))
        return out


def main(argv: list[str] | None = None) -> list[Path]:
    argv = sys.argv[1:] if argv is None else argv
    (cfg,) = parse_cli(argv, __doc__, MapsConfig, presets=False)
    paths = attention_maps(cfg)
    print("\n".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    run_main(main)
