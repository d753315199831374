"""files.py: atomic writes leave the old file or the new one, never a part, and no temporary files."""

import json
import os

import pytest

from files import write_atomic, write_json, write_text


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    write_atomic(path, lambda f: f.write(b"one"))
    write_atomic(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two" and os.listdir(tmp_path) == ["a.bin"]
    assert path.stat().st_mode & 0o644 == 0o644  # readable by others, unlike mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")

    def half_then_interrupt(f):
        f.write(b"new, half")
        raise KeyboardInterrupt  # what Ctrl-C mid-write does

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_interrupt)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_write_json_round_trips(tmp_path):
    obj = {"loss": 1.25, "name": "café", "rows": [1, None]}
    write_json(tmp_path / "x.json", obj)
    text = (tmp_path / "x.json").read_text(encoding="utf-8")
    assert json.loads(text) == obj and text.endswith("\n")
