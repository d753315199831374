"""report_why.py: the diagnostics of each run summarised over layers and heads, then over seeds, by length
and per layer; the section lists the shortest and longest length and leaves out entries without them."""

import pytest

from report_why import aggregate_why, why_section


def stats(level: float, layers: int = 2, heads: int = 2) -> dict:
    grid = [[level] * heads for _ in range(layers)]
    return {k: grid for k in ("entropy", "entropy_norm", "distance", "first", "beyond_L")}


def test_by_length_and_by_layer_over_seeds(tmp_path):
    by_label = {
        "rope": [
            {"diagnostics": {"64": stats(1.0), "128": stats(2.0)}},
            {"diagnostics": {"64": stats(3.0), "128": stats(4.0)}},
        ],
        "old": [{"eval": {}}],  # evaluated before the diagnostics: left out
    }
    why = aggregate_why(by_label)
    assert why["lengths"] == ["64", "128"] and list(why["by_length"]) == ["rope"]
    assert why["by_length"]["rope"]["128"]["first"] == [3.0, pytest.approx(2**0.5), 2]
    assert why["layers"]["rope"]["64"] == [[2.0, pytest.approx(2**0.5), 2]] * 2
    md, _ = why_section(by_label, 64, tmp_path)
    assert md[0].startswith("## Why") and "| rope | 2.000 ± 1.414 |" in "\n".join(md)
    assert why_section({"old": [{"eval": {}}]}, 64, tmp_path) == (
        [],
        {"lengths": [], "by_length": {}, "layers": {}},
    )
