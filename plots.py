"""compare.py's plots (matplotlib is optional: without it every function returns [] and the reports say
how to get the plots): training curves, loss by evaluation length and by position, task accuracy by size.
Inputs are report.py's aggregates (mean, std, n over seeds)."""

import textwrap
from pathlib import Path

import numpy as np

from rundir import read_metrics


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plot_colors(labels: list[str], variants: list[str]) -> tuple[dict, dict]:
    """One colour per scheme and context-extension method, from tab20's strong shades (matplotlib's default
    ten) then its light ones; a fine-tuned variant takes its method's colour, dashed."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    palette = tab20[0::2] + tab20[1::2]
    plain = [n for n in labels + variants if not n.endswith("+ft")]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(plain)}
    colors |= {n: colors[n.removesuffix("+ft")] for n in variants if n.endswith("+ft")}
    styles = {name: "--" if name.endswith("+ft") else "-" for name in colors}
    return colors, styles


def write_plots(records: list[dict], agg: dict, out: Path, L: int) -> list[str]:
    """curves.png, extrapolation.png, per_position.png (means over seeds); [] without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return []
    ext, labels = agg["extrapolation"], agg["labels"]
    variants = [n for n in ext["nonoverlap"] if "+" in n]
    colors, styles = _plot_colors(labels, variants)
    rows = [("schemes", labels)] * (len(labels) > 1 or not variants)
    rows += [("RoPE context extension", [n.split("+")[0] for n in variants[:1]] + variants)] * bool(variants)
    low = min(st[0] for cells in ext["nonoverlap"].values() for st in cells.values() if st)
    files = []

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for lab in labels:
        runs = []
        for rec in records:
            if rec["label"] == lab:
                runs.append([r for r in read_metrics(rec["run_dir"]) if "val_loss" in r])
        n = min(map(len, runs))
        its = [r["iter"] for r in runs[0][:n]]
        for key, style in (("val_loss", "-"), ("train_loss", ":")):
            mean = np.mean([[r[key] for r in rs[:n]] for rs in runs], 0)
            ax.plot(its, mean, style, color=colors[lab], label=lab if key == "val_loss" else None)
    ax.set(
        xlabel="iteration",
        ylabel="loss (solid: val, dotted: train)",
        title="Training (mean over seeds)",
        ylim=(low - 0.1, low + 1.5),
    )
    ax.legend()
    files.append(_save(fig, out / "curves.png"))

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.6 * len(rows)), squeeze=False)
    for (title, names), ax_row in zip(rows, axes, strict=True):
        for kind, ax in zip(ext, ax_row, strict=True):
            for name in names:
                pts = [(int(T) / L, *st[:2]) for T, st in ext[kind][name].items() if st]
                x, m, s = np.array(pts).T
                ax.errorbar(
                    x, m, yerr=s, marker="o", ms=3, capsize=2, color=colors[name], ls=styles[name], label=name
                )
            kind_name = kind.replace("nonoverlap", "non-overlapping")
            ax.set(
                xscale="log",
                xlabel="evaluation length T / L",
                ylabel="val loss",
                ylim=(low - 0.05, low + 1.0),
                title=f"{title}, {kind_name}",
            )
            ax.set_xticks(x, [f"{v:g}" for v in x])
            ax.minorticks_off()
        ax_row[1].legend(fontsize=7)
    files.append(_save(fig, out / "extrapolation.png"))

    fig, axes = plt.subplots(1, len(rows), figsize=(5.2 * len(rows), 3.8), squeeze=False)
    bins = max(1, L // 4)  # mean over L/4 positions: one position alone is too noisy to read
    for (title, names), ax in zip(rows, axes[0], strict=True):
        for name in names:
            m = np.array(agg["per_position"][name]["mean"])
            m = m[: len(m) // bins * bins].reshape(-1, bins).mean(1)
            ax.plot((np.arange(len(m)) + 0.5) * bins, m, color=colors[name], ls=styles[name], label=name)
        ax.axvline(L, color="gray", lw=0.8)
        ax.set(
            xlabel="position in window (gray: L)",
            ylabel=f"val loss, mean of {bins} positions",
            title=title,
            ylim=(low - 0.4, low + 1.5),
        )
        ax.legend(fontsize=7)
    files.append(_save(fig, out / "per_position.png"))
    return files


def _save(fig, path: Path) -> str:
    if fig.get_layout_engine() is None:  # figures with a colorbar lay themselves out (constrained)
        fig.tight_layout()
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return path.name


def write_task_plot(agg: dict, out: Path) -> list[str]:
    """accuracy.png: exact match and per-token accuracy against n (mean ± std), a line past n_train."""
    plt = _pyplot()
    if plt is None:
        return []
    colors, _ = _plot_colors(agg["labels"], [])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    kinds = (("exact", "exact match"), ("token", "per-token accuracy"))
    for (kind, title), ax in zip(kinds, axes, strict=True):
        for lab in agg["labels"]:
            pts = np.array([(int(n), st[0], st[1]) for n, st in agg["accuracy"][kind][lab].items() if st])
            ax.errorbar(
                pts[:, 0],
                pts[:, 1],
                yerr=pts[:, 2],
                marker="o",
                ms=3,
                capsize=2,
                color=colors[lab],
                label=lab,
            )
        ax.axvline(agg["n_train"] + 0.5, color="gray", lw=0.8)
        ax.set(xlabel="problem size n (gray: largest trained)", ylabel=title, ylim=(-0.03, 1.03), title=title)
    axes[1].legend(fontsize=7)
    return [_save(fig, out / "accuracy.png")]


def write_operand_plot(agg: dict, out: Path) -> list[str]:
    """operands.png: exact match over (digits of a, digits of b), one map per entry, as McLeish et al. plot
    it; the trained sizes boxed."""
    plt = _pyplot()
    if plt is None or not agg["operands"]:
        return []
    maps = agg["operands"]
    cols = min(4, len(maps))
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False, layout="constrained"
    )
    for ax, (lab, grid) in zip(axes.flat, maps.items(), strict=False):  # spare axes are turned off
        sizes, n = grid["sizes"], sum(k <= agg["n_train"] for k in grid["sizes"])
        image = ax.imshow(grid["exact"], vmin=0, vmax=1, cmap="viridis", origin="lower")
        ax.add_patch(plt.Rectangle((-0.5, -0.5), n, n, fill=False, ec="white", lw=1.5))
        ax.set(xticks=range(len(sizes)), yticks=range(len(sizes)), xlabel="digits of b")
        ax.set_title(textwrap.fill(lab, 34), fontsize=8)  # an entry's label with its options is long
        ax.set_xticklabels(sizes, fontsize=7)
        ax.set_yticklabels(sizes, fontsize=7)
        ax.set_ylabel("digits of a")
    for ax in axes.flat[len(maps) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="exact match")
    return [_save(fig, out / "operands.png")]


def write_lr_plot(tuning: dict, out: Path) -> list[str]:
    """lr_tuning.png: each entry's tuning loss (mean over its tuning seeds) against the learning rate, its
    chosen rate marked."""
    plt = _pyplot()
    if plt is None or not tuning:
        return []
    colors, _ = _plot_colors(list(tuning), [])
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for entry, t in tuning.items():
        lrs = sorted(t["tune_loss"], key=float)
        ax.plot(
            [float(x) for x in lrs],
            [np.mean(t["tune_loss"][x]) for x in lrs],
            marker="o",
            ms=3,
            color=colors[entry],
            label=entry,
        )
        ax.plot(
            [t["chosen"]],
            [np.mean(t["tune_loss"][f"{t['chosen']:g}"])],
            marker="*",
            ms=10,
            color=colors[entry],
        )
    ax.set(
        xscale="log",
        xlabel="peak learning rate",
        ylabel="loss at L, tuning half of val",
        title="Learning rate per entry (star: chosen)",
    )
    ax.legend(fontsize=7)
    return [_save(fig, out / "lr_tuning.png")]


def write_budget_plot(agg: dict, out: Path, L: int) -> list[str]:
    """budget.png: held-out loss at L and at the longest length against the iterations trained, per entry
    (mean ± std over seeds)."""
    plt = _pyplot()
    points = {}
    for lab in agg["labels"]:
        if "@" in lab:
            entry, budget = lab.split("@")
            points.setdefault(entry, []).append((int(budget), agg["extrapolation"]["nonoverlap"][lab]))
    if plt is None or not points:
        return []
    colors, _ = _plot_colors(list(points), [])
    lengths = list(next(iter(points.values()))[0][1])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for T, ax in zip((str(L), lengths[-1]), axes, strict=True):
        for entry, pts in points.items():
            pts = sorted((b, st[T][0], st[T][1]) for b, st in pts if st[T])
            if pts:  # learned has no rows past L
                x, m, s = np.array(pts).T
                ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, color=colors[entry], label=entry)
        ax.set(
            xscale="log",
            xlabel="iterations (learning rate decayed over each)",
            ylabel="held-out loss",
            title=f"T = {T} ({int(T) // L}L)",
        )
        budgets = sorted({b for pts in points.values() for b, _ in pts})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
    axes[0].legend(fontsize=7)  # every entry has a loss at L; past it learned has none
    return [_save(fig, out / "budget.png")]


def write_why_plots(why: dict, out: Path, L: int, unit: str = "T") -> list[str]:
    """why.png: each diagnostic against length per entry (mean ± std over seeds, a line at L); why_layers.png:
    the mean distance per layer at the shortest and longest length."""
    plt = _pyplot()
    if plt is None:
        return []
    labels = list(why["by_length"])
    colors, _ = _plot_colors(labels, [])
    keys = (("entropy_norm", "entropy / log(keys seen)"), ("first", "mass on token 0"))
    keys += (("distance", "mean distance (tokens)"), ("beyond_L", "mass beyond L"))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for (key, title), ax in zip(keys, axes, strict=True):
        for lab in labels:
            pts = [(int(T), st[key][0], st[key][1]) for T, st in why["by_length"][lab].items() if st[key]]
            if pts:
                x, y, e = np.array(pts).T
                ax.errorbar(x, y, yerr=e, marker="o", ms=3, capsize=2, color=colors[lab], label=lab)
        ax.axvline(L, color="gray", lw=0.8)
        ax.set(xlabel=f"{unit} (gray: L)", title=title)
    axes[0].legend(fontsize=6)
    names = [_save(fig, out / "why.png")]
    ends = list(dict.fromkeys((why["lengths"][0], why["lengths"][-1])))
    fig, axes = plt.subplots(1, len(ends), figsize=(5 * len(ends), 3.6), squeeze=False)
    for T, ax in zip(ends, axes[0], strict=True):
        for lab in labels:
            layers = why["layers"].get(lab, {}).get(T)
            if layers and all(layers):
                y, e = np.array([st[0] for st in layers]), np.array([st[1] for st in layers])
                ax.errorbar(
                    np.arange(len(y)), y, yerr=e, marker="o", ms=3, capsize=2, color=colors[lab], label=lab
                )
        ax.set(xlabel="layer", ylabel="mean distance (tokens)", title=f"{unit} = {T}")
    axes[0, 0].legend(fontsize=6)
    return [*names, _save(fig, out / "why_layers.png")]
