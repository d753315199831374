"""scripts/plot_rope.py: writes the frequency plot where it is told to."""

import pytest

pytest.importorskip("matplotlib")

from scripts import plot_rope


def test_writes_the_png(tmp_path, capsys):
    out = tmp_path / "sub" / "freqs.png"
    plot_rope.main([f"--out={out}"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in capsys.readouterr().out
