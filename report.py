"""compare.py's report: mean ± std over seeds, "within the spread" statements, report.md, results.json,
per-position CSVs and plots (matplotlib optional). Input: the records compare.py writes per run
(compare.json); evaluate.py says how the numbers are measured."""

import itertools
import re
from pathlib import Path

import numpy as np

from files import write_json, write_text
from plots import write_plots, write_task_plot

TRAIN_KEYS = (
    "final_val_loss",
    "best_val_loss",
    "final_train_loss",
    "tokens_per_sec",
    "ms_per_iter",
    "elapsed_s",
)


def slug(name: str) -> str:
    """File-name form of an entry label (run dirs, CSVs): other characters than [A-Za-z0-9.+-] -> _."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")


def _stats(values) -> list | None:
    """[mean, std (ddof=1; 0 for one value), n], or None (n/a) if any value is None."""
    if not values or any(v is None for v in values):
        return None
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)]


def _cell(st, best=False) -> str:
    text = "n/a" if st is None else f"{st[0]:.3f}" + (f" ± {st[1]:.3f}" if st[2] > 1 else "")
    return f"**{text}**" if best else text


def _mean(st, places: int) -> str:
    """The mean alone, with thousands separators (timings, speeds), or n/a."""
    return "n/a" if st is None else f"{st[0]:,.{places}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in lines) + "\n"


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


def _by_label(records: list[dict]) -> tuple[dict, dict]:
    """The records grouped by entry, and each entry's training numbers (mean, std, n over seeds)."""
    by_label, training = {}, {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    for lab, rs in by_label.items():
        training[lab] = {k: _stats([r["summary"].get(k) for r in rs]) for k in TRAIN_KEYS}
        training[lab] |= {
            "eval_s": _stats([r["eval_s"] for r in rs]),
            "params": rs[0]["params"],
            "seeds": [r["seed"] for r in rs],
        }
    return by_label, training


def aggregate(records: list[dict]) -> dict:
    """Mean, std and n over seeds of every number, keyed by entry and variant ('rope', 'rope+yarn', ...)."""
    by_label, training = _by_label(records)
    ext, per_position = {"nonoverlap": {}, "sliding": {}}, {}
    for lab, rs in by_label.items():
        for variant in rs[0]["eval"]:
            name, evs = "+".join(filter(None, (lab, variant))), [r["eval"][variant] for r in rs]
            for kind in ext:
                ext[kind][name] = {T: _stats([e[kind][T] for e in evs]) for T in evs[0][kind]}
            curves = np.array([e["per_position"] for e in evs])  # (seeds, T)
            per_position[name] = {
                "mean": curves.mean(0).tolist(),
                "std": curves.std(0, ddof=len(rs) > 1).tolist(),
                "seed": [r["seed"] for r in rs],
                "by_seed": curves.tolist(),
            }
    return {
        "labels": list(by_label),
        "training": training,
        "extrapolation": ext,
        "per_position": per_position,
    }


def _groups(labels: list[str], ext: dict) -> list[tuple[str, list[str]]]:
    """The tables' column groups: all schemes, then each rope entry with its context-extension variants."""
    groups = [("Positional encodings", labels)]
    for lab in labels:
        variants = [n for n in ext["nonoverlap"] if n.startswith(lab + "+")]
        if variants:
            title = f"RoPE context extension ({lab}; factor T / L at inference, +ft: fine-tuned at 2L)"
            groups.append((title, [lab, *variants]))
    return groups


def _extrapolation_tables(ext: dict, labels: list[str], L: int, stride: int) -> tuple[list[str], list[str]]:
    """The markdown tables of val loss by evaluation length, and their "within the spread" notes."""
    groups, tables, notes = _groups(labels, ext), [], []
    kinds = (("nonoverlap", "non-overlapping windows"), ("sliding", f"sliding window, stride {stride}"))
    for kind, how in kinds:
        for title, names in groups:
            rows = []
            for T in ext[kind][names[0]]:
                cells = {n: ext[kind][n][T] for n in names}
                best = min((st[0] for st in cells.values() if st), default=None)
                marked = [_cell(st, st is not None and st[0] == best) for st in cells.values()]
                rows.append([f"{T} ({int(T) / L:g}L)", *marked])
                if title == groups[0][0] or int(T) > L:  # at T <= L the methods repeat plain rope
                    notes += _within_spread(f"{how}, T={T}", cells)
            tables.append(f"### {title}: {how}\n\n" + _table(["eval length T", *names], rows))
    return tables, notes


def _training_rows(training: dict) -> list[list]:
    rows = []
    for lab, t in training.items():
        losses = [_cell(t[k]) for k in ("final_val_loss", "best_val_loss", "final_train_loss")]
        params = f"{t['params']['non_embedding']:,} / {t['params']['position']:,}"
        speeds = (("tokens_per_sec", 0), ("ms_per_iter", 1), ("elapsed_s", 0), ("eval_s", 0))
        numbers = [_mean(t[k], p) for k, p in speeds]
        rows.append([lab, *losses, params, *numbers])
    return rows


def _write_csvs(per_position: dict, out: Path) -> None:
    for name, pp in per_position.items():
        header = ["position", "mean", "std", *(f"seed_{s}" for s in pp["seed"])]
        columns = zip(pp["mean"], pp["std"], *pp["by_seed"], strict=True)
        rows = [header, *([p, *v] for p, v in enumerate(columns))]
        text = "".join(",".join(map(str, r)) + "\n" for r in rows)
        (out / f"per_position_{slug(name)}.csv").write_text(text)


def write_report(records: list[dict], settings: dict, out: Path, command: str, wall_s: float) -> dict:
    """report.md, results.json, per_position_<name>.csv and PNG plots in `out`; prints the main tables.
    `settings` is the evaluation and grid config (EvalConfig and CompareConfig as one dict). Task runs
    get write_task_report's report."""
    out.mkdir(parents=True, exist_ok=True)
    if "accuracy" in records[0]:
        return write_task_report(records, settings, out, command, wall_s)
    agg = aggregate(records)
    ext, labels, training = agg["extrapolation"], agg["labels"], agg["training"]
    L, tcfg = records[0]["configs"]["model"]["block_size"], records[0]["configs"]["train"]
    busy_s = sum(r["summary"]["elapsed_s"] + r["eval_s"] for r in records)
    notes = _within_spread("final val loss at L", {lab: training[lab]["final_val_loss"] for lab in labels})
    tables, table_notes = _extrapolation_tables(ext, labels, L, settings["stride"] or L)
    notes += table_notes
    _write_csvs(agg["per_position"], out)
    plots = write_plots(records, agg, out, L)
    header = [
        "scheme",
        "final val loss",
        "best val loss",
        "final train loss",
        "params (non-emb / position)",
        "tokens/s",
        "ms/iter",
        "train s/run",
        "eval s/run",
    ]
    no_plots = (
        "matplotlib is not installed, so no plots: pip install matplotlib, then rerun (finished runs are "
        "reused)."
    )
    md = [
        f"# Positional-encoding comparison\n\n`{command}`\n",
        f"Dataset {tcfg['dataset']} ({tcfg['tokenizer']}), training length L = {L}, "
        f"{tcfg['max_iters']} iters, "
        f"{len(training[labels[0]]['seeds'])} seed(s) per scheme: mean ± sample std over seeds. Wall time "
        f"{wall_s / 60:.1f} min (this invocation; training + evaluation summed over runs: {busy_s / 60:.1f} "
        f"min). Extrapolation scored on the first {records[0]['eval_tokens']:,} validation "
        "tokens (fewer when T does not divide them); lowest mean per row in bold.\n",
        "## Training (loss at L on train.py's fixed eval batches)\n",
        _table(header, _training_rows(training)),
        "## Length extrapolation (val loss)\n",
        *tables,
        "## Differences smaller than the spread over seeds\n",
        "\n".join(f"- {n}" for n in notes)
        or "None: neighbours in every ranking differ by more than their spread.",
        "\n## Plots\n",
        "\n\n".join(f"![{p}]({p})" for p in plots) if plots else no_plots,
        "",
    ]
    write_text(out / "report.md", "\n".join(md))
    results = {
        "command": command,
        "wall_s": wall_s,
        "busy_s": busy_s,
        "block_size": L,
        "compare": settings,
        **agg,
        "within_spread": notes,
        "runs": records,
    }
    write_json(out / "results.json", results)
    where = f"{len(notes)} differences smaller than the spread; report: {out / 'report.md'}"
    summary = [*md[2:5], tables[0], where]
    print("\n".join(summary) + ("" if plots else f"\n{no_plots}"))
    return results


# ----------------------------------------------------------------------------- length-generalization tasks


def aggregate_tasks(records: list[dict]) -> dict:
    """Accuracy at every n (exact match and per token) and its means in and out of the training range,
    mean ± std over seeds per entry."""
    by_label, training = _by_label(records)
    n_train, accuracy, ranges = records[0]["n_train"], {"exact": {}, "token": {}}, {}
    for lab, rs in by_label.items():
        for kind in accuracy:
            sizes = rs[0]["accuracy"][kind]
            accuracy[kind][lab] = {n: _stats([r["accuracy"][kind][n] for r in rs]) for n in sizes}
        ranges[lab] = {}
        for kind, (name, inside) in itertools.product(accuracy, (("in", True), ("out", False))):
            per_seed = []
            for r in rs:
                values = [v for n, v in r["accuracy"][kind].items() if (int(n) <= n_train) == inside]
                per_seed.append(float(np.mean(values)) if values else None)
            ranges[lab][f"{kind}_{name}"] = _stats(per_seed)
    return {
        "labels": list(by_label),
        "training": training,
        "accuracy": accuracy,
        "ranges": ranges,
        "n_train": n_train,
    }


def write_task_report(records: list[dict], settings: dict, out: Path, command: str, wall_s: float) -> dict:
    """The report of a task grid: accuracy by problem size and entry (tables, accuracy.png), results.json."""
    agg = aggregate_tasks(records)
    labels, training, n_train = agg["labels"], agg["training"], agg["n_train"]
    tcfg = records[0]["configs"]["train"]
    summary_rows = []
    for lab in labels:
        t = training[lab]
        cells = [_cell(t["final_val_loss"])]
        cells += [_cell(agg["ranges"][lab][k]) for k in ("exact_in", "exact_out", "token_in", "token_out")]
        times = [_mean(t[k], 0) for k in ("elapsed_s", "eval_s")]
        summary_rows.append([lab, *cells, f"{t['params']['position']:,}", *times])
    by_n = {}
    for kind in ("exact", "token"):
        rows = []
        for n in agg["accuracy"][kind][labels[0]]:
            cells = {lab: agg["accuracy"][kind][lab][n] for lab in labels}
            best = max((st[0] for st in cells.values() if st), default=None)
            marks = " (trained)" if int(n) <= n_train else ""
            rows.append([n + marks, *(_cell(st, st is not None and st[0] == best) for st in cells.values())])
        by_n[kind] = _table(["n", *labels], rows)
    plots = write_task_plot(agg, out)
    header = [
        "entry",
        "final val loss",
        f"exact, n <= {n_train}",
        f"exact, n > {n_train}",
        f"per token, n <= {n_train}",
        f"per token, n > {n_train}",
        "position params",
        "train s",
        "eval s",
    ]
    md = [
        f"# Length generalization: {tcfg['dataset']}\n\n`{command}`\n",
        f"Trained on problem sizes 1 .. {n_train}, evaluated at 1 .. {records[0]['n_eval']} on "
        f"{records[0]['eval_problems']} fixed problems per size (greedy decoding); {tcfg['max_iters']} "
        f"iters, {len(training[labels[0]]['seeds'])} seed(s) per entry: mean ± sample std over seeds. "
        f"Wall time {wall_s / 60:.1f} min; train s and eval s are per run, means over seeds. Accuracy in "
        "[0, 1]; highest mean per row in bold.\n",
        "## Summary\n",
        _table(header, summary_rows),
        "## Exact match (whole answer, end mark included) by problem size n\n",
        by_n["exact"],
        "## Per-token accuracy by problem size n\n",
        by_n["token"],
        "## Plots\n",
        "\n\n".join(f"![{p}]({p})" for p in plots) or "matplotlib is not installed, no plots",
        "",
    ]
    write_text(out / "report.md", "\n".join(md))
    results = {"command": command, "wall_s": wall_s, "compare": settings, **agg, "runs": records}
    write_json(out / "results.json", results)
    print("\n".join(md[2:4]) + f"report: {out / 'report.md'}")
    return results
