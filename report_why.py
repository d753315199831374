"""The "why" section of compare.py's reports: the attention diagnostics of every run (diagnostics.py), mean
± std over seeds per entry, at each evaluation length (a task: at the trained and the largest evaluated
size), as tables, why.png (each quantity against length) and why_layers.png (mean distance per layer)."""

from pathlib import Path

import numpy as np

from diagnostics import KEYS, summarise
from plots import write_why_plots
from stats import summary

NAMES = {
    "entropy_norm": "entropy / log(keys seen)",
    "first": "mass on token 0",
    "distance": "mean distance",
    "beyond_L": "mass beyond L",
}


def aggregate_why(by_label: dict[str, list[dict]]) -> dict:
    """{"lengths": [...], "by_length": {label: {T: {quantity: [mean, std, n]}}}, "layers": {label: {T:
    [per-layer mean distance over heads: [mean, std, n]]}}}, for the runs that carry diagnostics."""
    by_length, layers = {}, {}
    for lab, rs in by_label.items():
        if not all(r.get("diagnostics") for r in rs):
            continue
        lengths = sorted({T for r in rs for T in r["diagnostics"]}, key=int)
        by_length[lab] = {
            T: {
                k: summary([summarise(r["diagnostics"][T])[k] for r in rs if T in r["diagnostics"]])
                for k in KEYS
            }
            for T in lengths
        }
        layers[lab] = {
            T: [summary(list(v)) for v in zip(*(_layer_means(r["diagnostics"][T]) for r in rs), strict=True)]
            for T in lengths
            if all(T in r["diagnostics"] for r in rs)
        }
    lengths = sorted({T for d in by_length.values() for T in d}, key=int)
    return {"lengths": lengths, "by_length": by_length, "layers": layers}


def _layer_means(stats: dict) -> list[float]:
    return np.nanmean(np.array(stats["distance"], dtype=float), axis=1).tolist()


def _fmt(st) -> str:
    return "n/a" if st is None else f"{st[0]:.3f}" + (f" ± {st[1]:.3f}" if st[2] > 1 else "")


def why_section(
    by_label: dict[str, list[dict]], L: int, out: Path, unit: str = "T"
) -> tuple[list[str], dict]:
    """The report's markdown lines and the aggregate; `unit` names the length axis (T tokens, or a task's
    size n) and L is its trained end (block_size, or n_train)."""
    why = aggregate_why(by_label)
    if not why["by_length"]:
        return [], why
    first, last = why["lengths"][0], why["lengths"][-1]
    cols = [(T, k) for T in dict.fromkeys((first, last)) for k in NAMES]
    header = ["entry", *(f"{NAMES[k]}, {unit}={T}" for T, k in cols)]
    rows = [[lab, *(_fmt(d.get(T, {}).get(k)) for T, k in cols)] for lab, d in why["by_length"].items()]
    plots = write_why_plots(why, out, L, unit)
    md = [
        "## Why: attention inside and past the training length\n",
        "Attention diagnostics (diagnostics.py) over layers and heads, mean ± std over seeds, at the "
        f"shortest and longest {unit} (trained up to {unit} = {L}): entropy normalised by the log of the "
        "keys a query sees (1 = uniform: attention fading), the mass on the first token (an attention sink), "
        "the mean distance attended to, and the mass on keys farther back than the training length "
        "(distances training never showed).\n",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "\n\n".join(f"![{p}]({p})" for p in plots),
        "",
    ]
    return md, why
