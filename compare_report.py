"""compare.py's report: mean ± std over seeds, "within the spread" statements, report.md, results.json,
per-position CSVs and plots (matplotlib optional). Input: the records compare.py writes per run
(compare.json); see compare.py for how the numbers are measured."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from train import write_json


def slug(name: str) -> str:
    """File-name form of an entry label (run dirs, CSVs): other characters than [A-Za-z0-9.+-] -> _."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")


def read_metrics(run_dir) -> list[dict]:
    """The rows of a train.py run's metrics.jsonl."""
    return [json.loads(r) for r in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _stats(values) -> list | None:
    """[mean, std (ddof=1; 0 for one value), n], or None (n/a) if any value is None."""
    if not values or any(v is None for v in values):
        return None
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)]


def _cell(st, best=False) -> str:
    text = "n/a" if st is None else f"{st[0]:.3f}" + (f" ± {st[1]:.3f}" if st[2] > 1 else "")
    return f"**{text}**" if best else text


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in [header, ["---"] * len(header), *rows]) + "\n"


def _within_spread(where: str, stats: dict) -> list[str]:
    """Groups of neighbours in the ranking whose means differ by less than the sum of their stds."""
    ranked = sorted((st[0], name, st) for name, st in stats.items() if st and st[2] > 1)
    groups = []
    for i, item in enumerate(ranked):
        prev = ranked[i - 1][2] if i else None
        if prev and item[0] - prev[0] < prev[1] + item[2][1]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [f"{where}: " + " ≈ ".join(f"{n} {_cell(st)}" for _, n, st in g) for g in groups if len(g) > 1]


def aggregate(records: list[dict]) -> dict:
    """Mean, std and n over seeds of every number, keyed by entry and variant ('rope', 'rope+yarn', ...)."""
    by_label = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    keys = ("final_val_loss", "best_val_loss", "final_train_loss", "tokens_per_sec", "ms_per_iter", "elapsed_s")
    training = {lab: {k: _stats([r["summary"].get(k) for r in rs]) for k in keys} | {
        "eval_s": _stats([r["eval_s"] for r in rs]), "params": rs[0]["params"], "seeds": [r["seed"] for r in rs]}
        for lab, rs in by_label.items()}
    ext, per_position = {"nonoverlap": {}, "sliding": {}}, {}
    for lab, rs in by_label.items():
        for variant in rs[0]["eval"]:
            name, evs = "+".join(filter(None, (lab, variant))), [r["eval"][variant] for r in rs]
            for kind in ext:
                ext[kind][name] = {T: _stats([e[kind][T] for e in evs]) for T in evs[0][kind]}
            curves = np.array([e["per_position"] for e in evs])  # (seeds, T)
            per_position[name] = {"mean": curves.mean(0).tolist(), "std": curves.std(0, ddof=len(rs) > 1).tolist(),
                                  "seed": [r["seed"] for r in rs], "by_seed": curves.tolist()}
    return {"labels": list(by_label), "training": training, "extrapolation": ext, "per_position": per_position}


def write_report(records: list[dict], cmp, out: Path, command: str, wall_s: float) -> dict:
    """report.md, results.json, per_position_<name>.csv and PNG plots in `out`; prints the main tables."""
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(records)
    ext, labels, training = agg["extrapolation"], agg["labels"], agg["training"]
    L, tcfg = records[0]["configs"]["model"]["block_size"], records[0]["configs"]["train"]
    busy_s = sum(r["summary"]["elapsed_s"] + r["eval_s"] for r in records)
    notes = _within_spread("final val loss at L", {lab: training[lab]["final_val_loss"] for lab in labels})
    groups = [("Positional encodings", labels)] + [
        (f"RoPE context extension ({lab}; factor T / L at inference, +ft: fine-tuned at 2L)",
         [lab, *(n for n in ext["nonoverlap"] if n.startswith(lab + "+"))])
        for lab in labels if any(n.startswith(lab + "+") for n in ext["nonoverlap"])]
    tables = []
    for kind, how in (("nonoverlap", "non-overlapping windows"), ("sliding", f"sliding window, stride {cmp.stride or L}")):
        for title, names in groups:
            rows = []
            for T in ext[kind][names[0]]:
                cells = {n: ext[kind][n][T] for n in names}
                best = min((st[0] for st in cells.values() if st), default=None)
                rows.append([f"{T} ({int(T) / L:g}L)", *(_cell(st, st is not None and st[0] == best) for st in cells.values())])
                if title == groups[0][0] or int(T) > L:  # at T <= L the methods repeat plain rope
                    notes += _within_spread(f"{how}, T={T}", cells)
            tables.append(f"### {title}: {how}\n\n" + _table(["eval length T", *names], rows))
    train_rows = [[lab, *(_cell(t[k]) for k in ("final_val_loss", "best_val_loss", "final_train_loss")),
                   f"{t['params']['non_embedding']:,} / {t['params']['position']:,}",
                   *(f"{t[k][0]:,.{p}f}" if t[k] else "n/a" for k, p in
                     (("tokens_per_sec", 0), ("ms_per_iter", 1), ("elapsed_s", 0), ("eval_s", 0)))]
                  for lab, t in training.items()]
    for name, pp in agg["per_position"].items():
        header = ["position", "mean", "std", *(f"seed_{s}" for s in pp["seed"])]
        rows = [header, *([p, *v] for p, v in enumerate(zip(pp["mean"], pp["std"], *pp["by_seed"], strict=True)))]
        (out / f"per_position_{slug(name)}.csv").write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    plots = write_plots(records, agg, out, L)
    md = [f"# Positional-encoding comparison\n\n`{command}`\n",
          f"Dataset {tcfg['dataset']} ({tcfg['tokenizer']}), training length L = {L}, {tcfg['max_iters']} iters, "
          f"{len(training[labels[0]]['seeds'])} seed(s) per scheme: mean ± sample std over seeds. Wall time "
          f"{wall_s / 60:.1f} min (this invocation; training + evaluation summed over runs: {busy_s / 60:.1f} min). Extrapolation scored on the first {records[0]['eval_tokens']:,} validation "
          "tokens (fewer when T does not divide them); lowest mean per row in bold.\n",
          "## Training (loss at L on train.py's fixed eval batches)\n",
          _table(["scheme", "final val loss", "best val loss", "final train loss", "params (non-emb / position)",
                  "tokens/s", "ms/iter", "train s/run", "eval s/run"], train_rows),
          "## Length extrapolation (val loss)\n", *tables,
          "## Differences smaller than the spread over seeds\n",
          "\n".join(f"- {n}" for n in notes) or "None: neighbours in every ranking differ by more than their spread.",
          "\n## Plots\n",
          "\n\n".join(f"![{p}]({p})" for p in plots) if plots else
          "matplotlib is not installed, so no plots: pip install matplotlib, then rerun (finished runs are reused).",
          ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    results = {"command": command, "wall_s": wall_s, "busy_s": busy_s, "block_size": L, "compare": dataclasses.asdict(cmp),
               **agg, "within_spread": notes, "runs": records}
    write_json(out / "results.json", results)
    print("\n".join([*md[2:5], tables[0], f"{len(notes)} differences smaller than the spread; report: "
                     f"{out / 'report.md'}" + ("" if plots else f"\n{md[-2]}")]))
    return results


def write_plots(records: list[dict], agg: dict, out: Path, L: int) -> list[str]:
    """curves.png, extrapolation.png, per_position.png (means over seeds); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ext, labels = agg["extrapolation"], agg["labels"]
    variants = [n for n in ext["nonoverlap"] if "+" in n]
    colors = {name: f"C{i % 10}" for i, name in enumerate(n for n in labels + variants if not n.endswith("+ft"))}
    colors |= {n: colors[n.removesuffix("+ft")] for n in variants if n.endswith("+ft")}  # dashed, same colour
    styles = {name: "--" if name.endswith("+ft") else "-" for name in colors}
    rows = [("schemes", labels)] * (len(labels) > 1 or not variants)
    rows += [("RoPE context extension", [n.split("+")[0] for n in variants[:1]] + variants)] * bool(variants)
    low = min(st[0] for cells in ext["nonoverlap"].values() for st in cells.values() if st)
    files = []

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for lab in labels:
        runs = [[r for r in read_metrics(rec["summary"]["out_dir"]) if "val_loss" in r] for rec in records if rec["label"] == lab]
        n = min(map(len, runs))
        for key, style in (("val_loss", "-"), ("train_loss", ":")):
            ax.plot([r["iter"] for r in runs[0][:n]], np.mean([[r[key] for r in rs[:n]] for rs in runs], 0), style,
                    color=colors[lab], label=lab if key == "val_loss" else None)
    ax.set(xlabel="iteration", ylabel="loss (solid: val, dotted: train)", title="Training (mean over seeds)",
           ylim=(low - 0.1, low + 1.5))
    ax.legend()
    files.append(_save(fig, out / "curves.png"))

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.6 * len(rows)), squeeze=False)
    for (title, names), ax_row in zip(rows, axes, strict=True):
        for kind, ax in zip(ext, ax_row, strict=True):
            for name in names:
                pts = [(int(T) / L, *st[:2]) for T, st in ext[kind][name].items() if st]
                x, m, s = np.array(pts).T
                ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, color=colors[name], ls=styles[name], label=name)
            ax.set(xscale="log", xlabel="evaluation length T / L", ylabel="val loss", ylim=(low - 0.05, low + 1.0),
                   title=f"{title}, {kind.replace('nonoverlap', 'non-overlapping')}")
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
        ax.set(xlabel="position in window (gray: L)", ylabel=f"val loss, mean of {bins} positions", title=title,
               ylim=(low - 0.4, low + 1.5))
        ax.legend(fontsize=7)
    files.append(_save(fig, out / "per_position.png"))
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name
