"""report.py: slugs, report files from records, paired differences against the reference, budget rankings,
and the "not learned" rule of task reports, on crafted records."""

import json

import pytest

import report


def test_cells():
    assert report._cell([2.0, 1.0, 3]) == "2.000 ± 1.000" and report._cell([1.5, 0.0, 1]) == "1.500"
    assert report._cell(None) == "n/a" and report._cell([1.0, 0.1, 2], best=True) == "**1.000 ± 0.100**"


def test_slug():
    assert report.slug("rope:rope_base=500.0") == "rope_rope_base_500.0"
    assert report.slug("rope+yarn+ft") == "rope+yarn+ft"


def record(label, seed, loss, tmp_path, lr=1e-3):
    run_dir = tmp_path / f"{label}-{seed}"
    run_dir.mkdir()
    rows = [{"iter": it, "val_loss": loss + d, "train_loss": loss + d} for it, d in ((0, 1.0), (4, 0.0))]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = {
        "nonoverlap": {"8": loss, "16": loss + 0.5},
        "sliding": {"8": loss, "16": loss + 0.4},
        "per_position": [loss] * 16,
    }
    summary = {
        "out_dir": str(run_dir),
        "final_val_loss": loss,
        "best_val_loss": loss,
        "final_train_loss": loss,
        "tokens_per_sec": 1000.0,
        "ms_per_iter": 5.0,
        "elapsed_s": 2.0,
    }
    train = {"dataset": "tiny", "tokenizer": "char", "max_iters": 4, "learning_rate": lr}
    configs = {"model": {"block_size": 8}, "train": train}
    return {
        "label": label,
        "seed": seed,
        "summary": summary,
        "configs": configs,
        "eval": {"": ev},
        "run_dir": str(run_dir),
        "params": {"non_embedding": 10, "position": 0},
        "eval_s": 1.0,
        "eval_tokens": 64,
    }


def test_write_report_files_and_numbers(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    records = [
        record(lab, s, loss + 0.01 * s, tmp_path)
        for lab, loss in (("rope", 1.0), ("alibi", 1.2))
        for s in (0, 1)
    ]
    results = report.write_report(records, {"stride": None}, tmp_path / "out", "python compare.py", 60.0)
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert names >= {
        "report.md",
        "results.json",
        "curves.png",
        "extrapolation.png",
        "per_position.png",
        "per_position_rope.csv",
        "per_position_alibi.csv",
    }
    assert results["extrapolation"]["nonoverlap"]["rope"]["16"][:1] == [pytest.approx(1.505)]
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    text = (out / "report.md").read_text()
    assert "| 8 (1L) | **1.005 ± 0.007** | 1.205 ± 0.007 |" in text and "sliding window, stride 8" in text
    assert results["reference"] == "rope"  # no learned entry: the first
    diff = results["differences"]["nonoverlap"]["8"]["alibi"]  # seeds pair: +0.2 exactly, twice
    assert diff["mean"] == pytest.approx(0.2) and diff["resolved"] and "minus rope" in text
    assert "report.md" in capsys.readouterr().out


def test_lengths_where_the_reference_has_no_loss_are_left_out_with_a_note(tmp_path):
    pytest.importorskip("matplotlib")
    records = [record(lab, s, 1.0 + 0.01 * s, tmp_path) for lab in ("learned", "rope") for s in (0, 1)]
    for r in records[:2]:  # learned has no rows past block_size
        r["eval"][""]["nonoverlap"]["16"] = r["eval"][""]["sliding"]["16"] = None
    report.write_report(records, {"stride": None}, tmp_path / "out", "python compare.py", 1.0)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Minus learned, non-overlapping windows: paired difference [95% CI] (1 lengths left out" in text
    assert "| 16 (2L) | n/a |\n" not in text  # a difference row of n/a alone


def test_a_rate_chosen_at_the_edge_of_the_rates_tried_is_flagged(tmp_path):
    pytest.importorskip("matplotlib")
    losses = {"0.001": [2.0], "0.002": [1.9], "0.004": [1.8]}
    tuning = {
        "t5": {"tune_loss": losses, "chosen": 0.004},
        "rope": {"tune_loss": dict(losses), "chosen": 0.002},
    }
    tuning["rope"]["tune_loss"]["0.004"] = [2.1]
    text = "\n".join(report._tuning_section(tuning, tmp_path))
    assert "a better rate may lie outside them: t5." in text


def test_budget_rankings_and_the_reference_of_each_budget(tmp_path):
    records = [
        record(f"{lab}@{b}", s, loss - 0.1 * b + 0.001 * s, tmp_path)
        for lab, loss in (("learned", 2.0), ("rope", 1.9))
        for b in (1, 2)
        for s in (0, 1)
    ]
    agg = report.aggregate(records)
    assert agg["reference"] == "learned"
    assert set(agg["differences"]["nonoverlap"]["8"]) == {"rope@1", "rope@2"}  # paired at their own budget
    assert agg["differences"]["nonoverlap"]["8"]["rope@2"]["mean"] == pytest.approx(-0.1)
    assert report.budget_rankings(agg) == {
        b: {"8": ["rope", "learned"], "16": ["rope", "learned"]} for b in ("1", "2")
    }


def task_record(label, seed, exact):
    """A task run with exact match `exact[n]` at n = 1 .. 4 (trained on n <= 2)."""
    acc = {str(n): e for n, e in enumerate(exact, 1)}
    return {
        "label": label,
        "seed": seed,
        "n_train": 2,
        "n_eval": 4,
        "eval_problems": 10,
        "eval_s": 1.0,
        "accuracy": {"exact": acc, "token": acc},
        "params": {"non_embedding": 10, "position": 0},
        "summary": {"final_val_loss": 0.1, "elapsed_s": 1.0},
        "configs": {"train": {"dataset": "task:copy", "max_iters": 10, "learning_rate": 1e-3}},
    }


def test_a_run_that_did_not_learn_its_task_is_left_out_past_the_trained_sizes(tmp_path):
    records = [
        task_record("none", 1, [1.0, 0.95, 0.5, 0.1]),
        task_record("none", 2, [0.9, 0.2, 0.0, 0.0]),
        task_record("rope", 1, [1.0, 1.0, 0.0, 0.0]),
        task_record("rope", 2, [1.0, 1.0, 0.2, 0.0]),
    ]
    agg = report.aggregate_tasks(records, threshold=0.9)
    assert agg["learned"]["none"]["learned"] == 1 and agg["learned"]["rope"]["learned"] == 2
    assert agg["ranges"]["none"]["exact_in"][0] == pytest.approx(
        (0.975 + 0.55) / 2
    )  # every run in distribution
    assert agg["ranges"]["none"]["exact_out"] == [pytest.approx(0.3), 0.0, 1]  # the learned run alone
    assert agg["accuracy"]["exact"]["none"]["3"] == [0.5, 0.0, 1]
    assert agg["differences"]["exact_out"]["rope"]["n"] == 1  # paired where both learned: seed 1
    results = report.write_task_report(
        records, {"learned_threshold": 0.9, "reference": "rope"}, tmp_path, "cmd", 1.0
    )
    assert results["differences"]["exact_out"]["none"]["n"] == 1  # only seed 1 learned on both sides
    assert "| none | 0.100 ± 0.000 | 1/2 | 0.762 ± 0.301 | 0.300 |" in (tmp_path / "report.md").read_text()


def test_the_operand_map_is_the_mean_over_every_run(tmp_path):
    records = [task_record("rope", k, [1.0, 1.0, 0.5, 0.0]) for k in (1, 2)]
    for r, corner in zip(records, (1.0, 0.5), strict=True):
        r["operands"] = {"sizes": [1, 4], "exact": [[1.0, 0.0], [0.0, corner]], "problems_per_cell": 20}
    agg = report.aggregate_tasks(records)
    assert agg["operands"]["rope"] == {"sizes": [1, 4], "exact": [[1.0, 0.0], [0.0, 0.75]]}
    report.write_task_report(records, {}, tmp_path, "cmd", 1.0)
    assert "| 4 | 0.00 | 0.75 |" in (tmp_path / "report.md").read_text()
    assert not report.aggregate_tasks([task_record("rope", 1, [1.0, 1.0, 0.5, 0.0])])["operands"]
