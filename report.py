"""compare.py's report: mean ± std over seeds, paired differences against a reference entry with 95%
confidence intervals (stats.py), the learning-rate tuning and budget sections, report.md, results.json,
per-position CSVs and plots (plots.py). Input: the records compare.py writes per run (compare.json);
evaluate.py says how the numbers are measured.

A label is an entry, or entry@budget on a budget axis; the runs of one replicate share a seed (and their
batches), which is what pairs them. A task run whose in-distribution exact match is below the grid's
`learned_threshold` is "not learned": it counts in the in-distribution numbers and is left out of every
number past the trained sizes (with the count of runs that are in them).
"""

import re
from pathlib import Path

import numpy as np

from files import write_json, write_text
from plots import write_budget_plot, write_lr_plot, write_operand_plot, write_plots, write_task_plot
from report_why import why_section
from stats import format_difference, paired_difference, summary

TRAIN_KEYS = (
    "final_val_loss",
    "best_val_loss",
    "final_train_loss",
    "tokens_per_sec",
    "ms_per_iter",
    "elapsed_s",
)
NO_PLOTS = (
    "matplotlib is not installed, so no plots: pip install matplotlib, then rerun (finished runs are reused)."
)


def slug(name: str) -> str:
    """File-name form of an entry label (run dirs, CSVs): other characters than [A-Za-z0-9.+-] -> _."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")


def _cell(st, best=False) -> str:
    text = "n/a" if st is None else f"{st[0]:.3f}" + (f" ± {st[1]:.3f}" if st[2] > 1 else "")
    return f"**{text}**" if best else text


def _mean(st, places: int) -> str:
    """The mean alone, with thousands separators (timings, speeds), or n/a."""
    return "n/a" if st is None else f"{st[0]:,.{places}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in lines) + "\n"


def _by_label(records: list[dict]) -> tuple[dict, dict]:
    """The records grouped by label, and each label's training numbers (mean, std, n over seeds)."""
    by_label, training = {}, {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    for lab, rs in by_label.items():
        training[lab] = {k: summary([r["summary"].get(k) for r in rs]) for k in TRAIN_KEYS}
        training[lab] |= {
            "eval_s": summary([r["eval_s"] for r in rs]),
            "params": rs[0]["params"],
            "seeds": [r["seed"] for r in rs],
            "learning_rate": sorted({r["configs"]["train"]["learning_rate"] for r in rs}),
        }
    return by_label, training


def reference_of(labels: list[str], reference: str | None) -> str:
    """The entry the others are compared with: the grid's `reference`, else learned, else the first."""
    entries = [lab.split("@")[0] for lab in labels]
    return reference or ("learned" if "learned" in entries else entries[0])


def _partner(label: str, reference: str) -> str:
    """The reference run a label is paired with: the reference entry at the label's budget."""
    return reference + label[len(label.split("@")[0]) :]


def differences(by_label: dict, reference: str, value) -> dict:
    """{label: paired_difference} of value(record) against the reference entry, paired by seed (replicates
    missing on either side, or where value is None, drop out)."""
    out = {}
    for lab, rs in by_label.items():
        partner = _partner(lab, reference)
        if lab == partner or partner not in by_label:
            continue
        ref = {r["seed"]: value(r) for r in by_label[partner]}
        pairs = [(value(r), ref[r["seed"]]) for r in rs if r["seed"] in ref]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        out[lab] = paired_difference([a for a, _ in pairs], [b for _, b in pairs]) if pairs else None
    return out


def aggregate(records: list[dict], reference: str | None = None) -> dict:
    """Mean, std and n over seeds of every number, keyed by label and variant ('rope', 'rope+yarn', ...),
    and the paired differences of the main variant against the reference, per evaluation length."""
    by_label, training = _by_label(records)
    ext, per_position = {"nonoverlap": {}, "sliding": {}}, {}
    for lab, rs in by_label.items():
        for variant in rs[0]["eval"]:
            name, evs = "+".join(filter(None, (lab, variant))), [r["eval"][variant] for r in rs]
            for kind in ext:
                ext[kind][name] = {T: summary([e[kind][T] for e in evs]) for T in evs[0][kind]}
            curves = np.array([e["per_position"] for e in evs])  # (seeds, T)
            per_position[name] = {
                "mean": curves.mean(0).tolist(),
                "std": curves.std(0, ddof=len(rs) > 1).tolist(),
                "seed": [r["seed"] for r in rs],
                "by_seed": curves.tolist(),
            }
    ref = reference_of(list(by_label), reference)
    lengths = list(records[0]["eval"][""]["nonoverlap"])
    diffs = {"final_val_loss": differences(by_label, ref, lambda r: r["summary"]["final_val_loss"])}
    for kind in ext:
        diffs[kind] = {
            T: differences(by_label, ref, lambda r, k=kind, T=T: r["eval"][""][k][T]) for T in lengths
        }
    return {
        "labels": list(by_label),
        "reference": ref,
        "training": training,
        "extrapolation": ext,
        "per_position": per_position,
        "differences": diffs,
    }


def _groups(labels: list[str], ext: dict) -> list[tuple[str, list[str]]]:
    """The tables' column groups: all schemes, then each rotary entry with its context-extension variants."""
    groups = [("Positional encodings", labels)]
    for lab in labels:
        variants = [n for n in ext["nonoverlap"] if n.startswith(lab + "+")]
        if variants:
            title = f"RoPE context extension ({lab}; factor T / L at inference, +ft: fine-tuned at 2L)"
            groups.append((title, [lab, *variants]))
    return groups


def _extrapolation_tables(agg: dict, L: int, stride: int) -> list[str]:
    """The markdown tables of held-out loss by evaluation length, and of the paired differences."""
    ext, labels, tables = agg["extrapolation"], agg["labels"], []
    kinds = (("nonoverlap", "non-overlapping windows"), ("sliding", f"sliding window, stride {stride}"))
    for kind, how in kinds:
        for title, names in _groups(labels, ext):
            rows = []
            for T in ext[kind][names[0]]:
                cells = {n: ext[kind][n][T] for n in names}
                best = min((st[0] for st in cells.values() if st), default=None)
                rows.append(
                    [
                        f"{T} ({int(T) / L:g}L)",
                        *(_cell(st, st is not None and st[0] == best) for st in cells.values()),
                    ]
                )
            tables.append(f"### {title}: {how}\n\n" + _table(["eval length T", *names], rows))
        diffs, ref = agg["differences"][kind], agg["reference"]
        others = [lab for lab in labels if lab in next(iter(diffs.values()))]
        known = [T for T in diffs if any(diffs[T][lab] is not None for lab in others)]
        rows = [
            [f"{T} ({int(T) / L:g}L)", *(format_difference(diffs[T][lab]) for lab in others)] for T in known
        ]
        missing = len(diffs) - len(known)
        note = f" ({missing} lengths left out: {ref} has no loss there)" if missing else ""
        tables.append(
            f"### Minus {ref}, {how}: paired difference [95% CI]{note}\n\n"
            + _table(["eval length T", *others], rows)
        )
    return tables


def _training_rows(training: dict, diffs: dict) -> list[list]:
    rows = []
    for lab, t in training.items():
        losses = [_cell(t[k]) for k in ("final_val_loss", "best_val_loss", "final_train_loss")]
        params = f"{t['params']['non_embedding']:,} / {t['params']['position']:,}"
        speeds = (("tokens_per_sec", 0), ("ms_per_iter", 1), ("elapsed_s", 0), ("eval_s", 0))
        lr = ", ".join(f"{x:g}" for x in t["learning_rate"])
        vs = format_difference(diffs[lab]) if lab in diffs else "-"
        rows.append([lab, lr, losses[0], vs, *losses[1:], params, *(_mean(t[k], p) for k, p in speeds)])
    return rows


def _write_csvs(per_position: dict, out: Path) -> None:
    for name, pp in per_position.items():
        header = ["position", "mean", "std", *(f"seed_{s}" for s in pp["seed"])]
        columns = zip(pp["mean"], pp["std"], *pp["by_seed"], strict=True)
        rows = [header, *([p, *v] for p, v in enumerate(columns))]
        text = "".join(",".join(map(str, r)) + "\n" for r in rows)
        (out / f"per_position_{slug(name)}.csv").write_text(text)


def _tuning_section(tuning: dict, out: Path) -> list[str]:
    """The chosen learning rate per entry and the tuning loss at every rate (lowest in bold)."""
    if not tuning:
        return []
    lrs = sorted({lr for t in tuning.values() for lr in t["tune_loss"]}, key=float)
    rows = []
    for entry, t in tuning.items():
        cells = [summary(t["tune_loss"][lr]) if lr in t["tune_loss"] else None for lr in lrs]
        rows.append(
            [
                entry,
                f"{t['chosen']:g}",
                *(_cell(st, lr == f"{t['chosen']:g}") for st, lr in zip(cells, lrs, strict=True)),
            ]
        )
    edge = [
        e for e, t in tuning.items() if len(t["tune_loss"]) > 2 and f"{t['chosen']:g}" in (lrs[0], lrs[-1])
    ]
    warn = (
        f" At the edge of the rates tried, so a better rate may lie outside them: {', '.join(edge)}."
        if edge
        else ""
    )
    plots = write_lr_plot(tuning, out)
    return [
        "## Learning rate, chosen per entry\n",
        "Each entry trained at every rate on seeds of its own (not the report's), scored by its loss at L "
        "on the tuning half of the validation split (never the held-out half the tables use); lowest mean "
        f"in bold.{warn}\n",
        _table(["entry", "chosen", *(f"lr {lr}" for lr in lrs)], rows),
        *(f"![{p}]({p})\n" for p in plots),
    ]


def budget_rankings(agg: dict) -> dict:
    """{budget: {T: [entries, lowest mean loss first]}} for the labels entry@budget (held-out,
    non-overlapping windows)."""
    ext, out = agg["extrapolation"]["nonoverlap"], {}
    for lab in agg["labels"]:
        if "@" in lab:
            entry, budget = lab.split("@")
            for T, st in ext[lab].items():
                if st:
                    out.setdefault(budget, {}).setdefault(T, []).append((st[0], entry))
    return {
        b: {T: [e for _, e in sorted(v)] for T, v in by_T.items()}
        for b, by_T in sorted(out.items(), key=lambda x: int(x[0]))
    }


def _budget_section(agg: dict, L: int, out: Path) -> list[str]:
    rankings = budget_rankings(agg)
    if not rankings:
        return []
    lengths = [T for T in next(iter(rankings.values())) if int(T) in (L, 4 * L, 8 * L)]
    rows = [[b, *(" < ".join(rankings[b][T]) for T in lengths)] for b in rankings]
    stable = {T: len({tuple(rankings[b][T]) for b in rankings}) == 1 for T in lengths}
    verdict = "; ".join(
        f"at {int(T) // L}L the ranking is {'the same at every budget' if s else 'not stable'}"
        for T, s in stable.items()
    )
    plots = write_budget_plot(agg, out, L)
    return [
        "## Budget: the ranking at 1x, 2x, 4x the iterations\n",
        f"Held-out loss, non-overlapping windows, lowest first: {verdict}.\n",
        _table(["iterations", *(f"T = {T} ({int(T) // L}L)" for T in lengths)], rows),
        *(f"![{p}]({p})\n" for p in plots),
    ]


def write_report(
    records: list[dict], settings: dict, out: Path, command: str, wall_s: float, tuning: dict | None = None
) -> dict:
    """report.md, results.json, per_position_<name>.csv and PNG plots in `out`; prints the main tables.
    `settings` is the evaluation and grid config (EvalConfig and CompareConfig as one dict); `tuning`
    compare.py's learning-rate choice. Task runs get write_task_report's report."""
    out.mkdir(parents=True, exist_ok=True)
    if "accuracy" in records[0]:
        return write_task_report(records, settings, out, command, wall_s)
    agg = aggregate(records, settings.get("reference"))
    labels, training, ref = agg["labels"], agg["training"], agg["reference"]
    L, tcfg = records[0]["configs"]["model"]["block_size"], records[0]["configs"]["train"]
    busy_s = sum(r["summary"]["elapsed_s"] + r["eval_s"] for r in records)
    iters = ", ".join(str(i) for i in sorted({r["configs"]["train"]["max_iters"] for r in records}))
    tables = _extrapolation_tables(agg, L, settings["stride"] or L)
    _write_csvs(agg["per_position"], out)
    plots = write_plots(records, agg, out, L)
    why_md, agg["why"] = why_section(_by_label(records)[0], L, out)
    resolved = [
        (lab, T)
        for kind in ("nonoverlap",)
        for T, d in agg["differences"][kind].items()
        for lab, x in d.items()
        if x and x["resolved"]
    ]
    n_cells = sum(len(d) for d in agg["differences"]["nonoverlap"].values())
    header = [
        "entry",
        "lr",
        "final val loss",
        f"minus {ref} [95% CI]",
        "best val loss",
        "final train loss",
        "params (non-emb / position)",
        "tokens/s",
        "ms/iter",
        "train s/run",
        "eval s/run",
    ]
    md = [
        f"# Positional-encoding comparison\n\n`{command}`\n",
        f"Dataset {tcfg['dataset']} ({tcfg['tokenizer']}), training length L = {L}, {iters} iters, "
        f"{len(training[labels[0]]['seeds'])} seed(s) per entry: mean ± sample std over seeds. "
        f"Differences are paired by seed against {ref}, with 95% Student-t intervals over seeds; in bold "
        "where the interval excludes 0, marked ~ where it holds 0 (no difference resolved). Wall time "
        f"{wall_s / 60:.1f} min (this invocation; training + evaluation summed over runs: {busy_s / 60:.1f} "
        f"min). Extrapolation scored on {records[0]['eval_tokens']:,} held-out validation tokens (the second "
        "half of the split; fewer when T does not divide them); lowest mean per row in bold.\n",
        "## Training (loss at L on train.py's fixed eval batches)\n",
        _table(header, _training_rows(training, agg["differences"]["final_val_loss"])),
        *_tuning_section(tuning or {}, out),
        *_budget_section(agg, L, out),
        "## Length extrapolation (held-out val loss)\n",
        *tables,
        *why_md,
        "## Plots\n",
        "\n\n".join(f"![{p}]({p})" for p in plots) if plots else NO_PLOTS,
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
        "tuning": tuning or {},
        "budget_rankings": budget_rankings(agg),
        "runs": records,
    }
    write_json(out / "results.json", results)
    where = (
        f"{len(resolved)} of {n_cells} differences against {ref} resolved (95% CI excludes 0); "
        f"report: {out / 'report.md'}"
    )
    print("\n".join([*md[2:4], tables[0], where]) + ("" if plots else f"\n{NO_PLOTS}"))
    return results


# ----------------------------------------------------------------------------- length-generalization tasks


def _in_and_out(r: dict, n_train: int, kind: str) -> tuple[float, float | None]:
    """A run's mean accuracy at n <= n_train and at n > n_train (None when no size is past it)."""
    acc = r["accuracy"][kind]
    inside = [v for n, v in acc.items() if int(n) <= n_train]
    outside = [v for n, v in acc.items() if int(n) > n_train]
    return float(np.mean(inside)), float(np.mean(outside)) if outside else None


def aggregate_tasks(records: list[dict], threshold: float = 0.9, reference: str | None = None) -> dict:
    """Accuracy at every n (exact match and per token) and its means in and out of the training range, mean
    ± std over seeds per entry; past n_train over the learned runs only (exact match in distribution >=
    threshold); paired differences against the reference entry."""
    by_label, training = _by_label(records)
    n_train, accuracy, ranges, learned = records[0]["n_train"], {"exact": {}, "token": {}}, {}, {}
    for lab, rs in by_label.items():
        ok = [_in_and_out(r, n_train, "exact")[0] >= threshold for r in rs]
        learned[lab] = {
            "learned": sum(ok),
            "runs": len(rs),
            "seeds": [r["seed"] for r, y in zip(rs, ok, strict=True) if y],
        }
        kept = [r for r, y in zip(rs, ok, strict=True) if y]
        for kind in accuracy:
            accuracy[kind][lab] = {
                n: summary([r["accuracy"][kind][n] for r in (rs if int(n) <= n_train else kept)])
                for n in rs[0]["accuracy"][kind]
            }
            ranges.setdefault(lab, {})[f"{kind}_in"] = summary([_in_and_out(r, n_train, kind)[0] for r in rs])
            ranges[lab][f"{kind}_out"] = summary([_in_and_out(r, n_train, kind)[1] for r in kept])
    ref = reference_of(list(by_label), reference)
    diffs = {"exact_in": differences(by_label, ref, lambda r: _in_and_out(r, n_train, "exact")[0])}
    is_learned = {(r["label"], r["seed"]) for r in records if r["seed"] in learned[r["label"]]["seeds"]}
    diffs["exact_out"] = differences(
        by_label,
        ref,
        lambda r: _in_and_out(r, n_train, "exact")[1] if (r["label"], r["seed"]) in is_learned else None,
    )
    operands = {  # every run, learned or not: the map shows where a scheme fails
        lab: {
            "sizes": rs[0]["operands"]["sizes"],
            "exact": np.mean([r["operands"]["exact"] for r in rs], 0).tolist(),
        }
        for lab, rs in by_label.items()
        if "operands" in rs[0]
    }
    return {
        "labels": list(by_label),
        "reference": ref,
        "training": training,
        "accuracy": accuracy,
        "ranges": ranges,
        "learned": learned,
        "threshold": threshold,
        "differences": diffs,
        "n_train": n_train,
        "operands": operands,
    }


def _operand_tables(agg: dict) -> list[str]:
    """Exact match by (digits of a, digits of b) per entry, mean over its runs, folded in report.md."""
    if not agg["operands"]:
        return []
    md = [
        "## Exact match by operand digits (McLeish et al.'s map)\n",
        "Rows: digits of a, columns: digits of b, both zero-padded to the longer; mean over every run of the "
        "entry (learned or not). Picture: operands.png.\n",
    ]
    for lab, grid in agg["operands"].items():
        rows = [
            [str(na), *(f"{x:.2f}" for x in row)]
            for na, row in zip(grid["sizes"], grid["exact"], strict=True)
        ]
        table = _table(["a \\ b", *map(str, grid["sizes"])], rows)
        md.append(f"<details><summary>{lab}</summary>\n\n{table}\n</details>\n")
    return md


def write_task_report(records: list[dict], settings: dict, out: Path, command: str, wall_s: float) -> dict:
    """The report of a task grid: accuracy by problem size and entry (tables, accuracy.png), results.json."""
    agg = aggregate_tasks(records, settings.get("learned_threshold", 0.9), settings.get("reference"))
    labels, training, n_train, ref = agg["labels"], agg["training"], agg["n_train"], agg["reference"]
    tcfg = records[0]["configs"]["train"]
    summary_rows = []
    for lab in labels:
        t, lr = training[lab], agg["learned"][lab]
        cells = [_cell(t["final_val_loss"]), f"{lr['learned']}/{lr['runs']}"]
        cells += [_cell(agg["ranges"][lab][k]) for k in ("exact_in", "exact_out", "token_in", "token_out")]
        cells += [
            format_difference(agg["differences"][k].get(lab)) if lab != ref else "-"
            for k in ("exact_in", "exact_out")
        ]
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
    plots = write_task_plot(agg, out) + write_operand_plot(agg, out)
    why_md, agg["why"] = why_section(_by_label(records)[0], n_train, out, unit="n")
    header = [
        "entry",
        "final val loss",
        "learned",
        f"exact, n <= {n_train}",
        f"exact, n > {n_train}",
        f"per token, n <= {n_train}",
        f"per token, n > {n_train}",
        f"exact in, minus {ref}",
        f"exact out, minus {ref}",
        "position params",
        "train s",
        "eval s",
    ]
    not_learned = sum(v["runs"] - v["learned"] for v in agg["learned"].values())
    md = [
        f"# Length generalization: {tcfg['dataset']}\n\n`{command}`\n",
        f"Trained on problem sizes 1 .. {n_train}, evaluated at 1 .. {records[0]['n_eval']} on "
        f"{records[0]['eval_problems']} fixed problems per size (greedy decoding); {tcfg['max_iters']} "
        f"iters, {len(training[labels[0]]['seeds'])} seed(s) per entry: mean ± sample std over seeds. A run "
        f"is learned when its exact match at n <= {n_train} is >= {agg['threshold']:g}; {not_learned} "
        f"run(s) are not, and are left out of every number past n = {n_train} ('learned' counts the runs "
        f"in them). Differences are paired by seed against {ref}, 95% Student-t intervals (bold: excludes "
        f"0; ~: holds 0). Wall time {wall_s / 60:.1f} min; train s and eval s are per run, means over "
        "seeds. Accuracy in [0, 1]; highest mean per row in bold.\n",
        "## Summary\n",
        _table(header, summary_rows),
        "## Exact match (whole answer, end mark included) by problem size n\n",
        by_n["exact"],
        "## Per-token accuracy by problem size n\n",
        by_n["token"],
        *_operand_tables(agg),
        *why_md,
        "## Plots\n",
        "\n\n".join(f"![{p}]({p})" for p in plots) or NO_PLOTS,
        "",
    ]
    write_text(out / "report.md", "\n".join(md))
    results = {"command": command, "wall_s": wall_s, "compare": settings, **agg, "runs": records}
    write_json(out / "results.json", results)
    print("\n".join(md[2:4]) + f"report: {out / 'report.md'}")
    return results
