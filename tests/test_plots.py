"""plots.py: every plot is written from a small aggregate, and without matplotlib none is (the report says
so instead)."""

import sys

import pytest

import plots


def task_aggregate():
    stats = {"1": [1.0, 0.0, 2], "2": [0.5, 0.1, 2], "3": [0.0, 0.0, 2]}
    return {
        "labels": ["rope", "alibi"],
        "n_train": 2,
        "accuracy": {k: {"rope": stats, "alibi": stats} for k in ("exact", "token")},
    }


def test_the_task_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    assert plots.write_task_plot(task_aggregate(), tmp_path) == ["accuracy.png"]
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_the_operand_map_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    grid = {"sizes": [1, 2, 4], "exact": [[1.0, 1.0, 0.2], [1.0, 0.9, 0.1], [0.3, 0.2, 0.0]]}
    agg = task_aggregate() | {
        "operands": {"rope": grid, "alibi": grid, "none": grid, "fire": grid, "t5": grid}
    }
    assert plots.write_operand_plot(agg, tmp_path) == ["operands.png"]
    assert plots.write_operand_plot(task_aggregate() | {"operands": {}}, tmp_path) == []


def test_the_why_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    st = {k: [0.5, 0.1, 2] for k in ("entropy", "entropy_norm", "distance", "first", "beyond_L")}
    why = {
        "lengths": ["64", "512"],
        "by_length": {"rope": {"64": st, "512": st}, "fox": {"64": st, "512": st}},
        "layers": {"rope": {"64": [[1.0, 0.1, 2]] * 4, "512": [[9.0, 1.0, 2]] * 4}},
    }
    assert plots.write_why_plots(why, tmp_path, 64) == ["why.png", "why_layers.png"]


def test_without_matplotlib_there_are_no_plots(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert plots.write_task_plot(task_aggregate(), tmp_path) == [] and not list(tmp_path.iterdir())
