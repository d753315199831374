"""report.py: statistics over seeds, "within the spread" groups, slugs, and report files from records."""

import json

import pytest

import report


def test_stats_and_cells():
    assert report._stats([1.0, 2.0, 3.0]) == [2.0, 1.0, 3]  # sample std (ddof=1)
    assert report._stats([1.5]) == [1.5, 0.0, 1] and report._stats([1.0, None]) is None
    assert report._cell([2.0, 1.0, 3]) == "2.000 ± 1.000" and report._cell([1.5, 0.0, 1]) == "1.500"
    assert report._cell(None) == "n/a" and report._cell([1.0, 0.1, 2], best=True) == "**1.000 ± 0.100**"


def test_within_spread_groups_neighbours_whose_difference_is_inside_their_stds():
    stats = {"a": [1.00, 0.02, 3], "b": [1.03, 0.02, 3], "c": [1.20, 0.01, 3], "d": [1.5, 0.0, 1]}
    assert report._within_spread("T=64", stats) == ["T=64: a 1.000 ± 0.020 ≈ b 1.030 ± 0.020"]
    assert report._within_spread("T=64", {"a": [1.0, 0.01, 3], "b": [1.1, 0.01, 3]}) == []


def test_slug():
    assert report.slug("rope:rope_base=500.0") == "rope_rope_base_500.0"
    assert report.slug("rope+yarn+ft") == "rope+yarn+ft"


def record(label, seed, loss, tmp_path):
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
    configs = {"model": {"block_size": 8}, "train": {"dataset": "tiny", "tokenizer": "char", "max_iters": 4}}
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
    assert "report.md" in capsys.readouterr().out
