"""files.py: atomic writes leave the old file or the new one, never a part, and no temporary files; folder
locks give a folder one owner at a time."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, read_until

from files import folder_lock, replace_folder, write_atomic, write_json, write_text


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


HOLD = """
import sys, time
from files import folder_lock
with folder_lock(sys.argv[1], "the hint"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_folder_has_one_owner_and_a_killed_owner_leaves_no_stale_lock(tmp_path):
    """A second owner is refused at once with the holder's pid, host and command and the hint; kill -9 of the
    holder releases the lock (the kernel does); a process re-enters its own lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        read_until(holder, lambda line: line == "held\n", timeout=60)
        refused = pytest.raises(ValueError, match=rf"is in use by pid {holder.pid} on .* since .*; the hint")
        with refused, folder_lock(tmp_path, "the hint"):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with folder_lock(tmp_path, "x"), folder_lock(tmp_path, "x"):  # free again, and re-entrant
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_replace_folder_swaps_whole_folders_and_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "hf"
    replace_folder(dest, lambda f: (f / "old.txt").write_text("old"))
    replace_folder(dest, lambda f: (f / "new.txt").write_text("new"))
    assert [p.name for p in dest.iterdir()] == ["new.txt"] and os.listdir(tmp_path) == ["hf"]

    def fail(f):
        (f / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_folder(dest, fail)
    assert [p.name for p in dest.iterdir()] == ["new.txt"] and os.listdir(tmp_path) == ["hf"]
