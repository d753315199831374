"""Atomic file writes: a file is either its old self or the complete new one, never partly written."""

import json
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, write) -> None:
    """Call write(f) on a binary temporary file beside `path`, then rename it onto `path`.

    A rename within one folder is atomic, so `path` is either its old self or the complete new file,
    never partly written; on any failure in `write` (Ctrl-C included) the temporary file is deleted.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # no-op after a successful rename


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files `write_atomic` left beside `path` when it was killed (kill -9, power
    loss: no `finally` ran). Only for files that no live process is writing; returns what was removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")
