"""Files and folders: atomic writes (a file is either its old self or the complete new one, never partly
written) and folder locks (one owner at a time for a run directory, a grid or a prepared dataset).

Locks are `fcntl.flock` on `<folder>/.lock`: the kernel releases them when the holding process dies, kill -9
included, so a dead owner never leaves a stale lock. The lock file records its holder (pid, host, start time,
command) for the message a refused process prints. On network file systems flock is as good as the file
system's locking: NFSv4 (and NFSv3 with lockd) forwards it to the server, so it holds across the nodes of a
cluster; Lustre needs its `flock` mount option and otherwise fails with "Function not implemented", which
is reported with the way out (`NANOROPE_LOCKS=off` runs without locks: then make sure yourself that only one
process uses each folder). Windows has no fcntl: no locks there.
"""

import contextlib
import datetime
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".lock"
_HELD: dict[Path, list] = {}  # folder -> [open lock file, depth]: a process re-enters its own locks


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


def replace_folder(dest: str | Path, write) -> None:
    """Call write(folder) on a new temporary folder beside `dest`, then put it in dest's place: dest holds
    either its old files or all the new ones, never a mix of both, and nothing is left behind."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    old = tmp.with_suffix(".old")
    try:
        write(tmp)
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files `write_atomic` left in `folder` when a writer was killed (kill -9, power
    loss: no `finally` ran). Only the holder of the folder's lock may call this: any temporary file there
    is then a dead writer's. Returns what was removed."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _holder(path: Path) -> str:
    """Who holds the lock at `path`, from what it wrote there."""
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']} since {h['since']} ({h['command']})"
    except (OSError, ValueError, KeyError, TypeError):  # written a moment ago, or not by us
        return "another process"


@contextlib.contextmanager
def folder_lock(folder: str | Path, hint: str, wait: bool = False):
    """Hold `folder` (created if missing) exclusively for the block, or raise ValueError naming the holder
    and `hint` (the way out) at once; with `wait`, wait for the holder instead. Re-entrant within one
    process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if fcntl is None or os.environ.get("NANOROPE_LOCKS") == "off" or key in _HELD:
        if key in _HELD:
            _HELD[key][1] += 1
        try:
            yield
        finally:
            if key in _HELD:
                _HELD[key][1] -= 1
        return
    path = folder / LOCK
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (closed below: closing releases the lock)
    try:
        fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ValueError(f"{folder} is in use by {_holder(path)}; {hint}") from None
        raise ValueError(
            f"cannot lock {path}: {e.strerror} (a file system without flock, e.g. Lustre without its flock "
            "mount option); set NANOROPE_LOCKS=off to run without locks, and then make sure that only one "
            "process uses each folder"
        ) from None
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    f.seek(0)
    f.truncate()
    f.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": since,
                "command": " ".join(sys.argv) or "python",
            }
        )
    )
    f.flush()
    _HELD[key] = [f, 1]
    try:
        yield
    finally:
        _HELD[key][1] -= 1
        if not _HELD[key][1]:
            del _HELD[key]
            f.close()  # releases the lock; the file stays (removing it would race a new holder)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")
