"""Typed configuration from preset files and --key=value overrides, shared by every tool.

A preset (config/*.py) is plain Python assignments, run with runpy into a private namespace, never into
this module's globals (nanoGPT's configurator exec()s into them, so a typo in a preset passes silently).
Keys are routed to the frozen dataclasses that declare them and coerced by their declared types.
"""

import contextlib
import dataclasses
import difflib
import errno
import json
import runpy
import sys
import traceback
import types
import typing
from pathlib import Path

from data.corpora import DownloadError

BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def check_ints(cfg, names: tuple[str, ...], low: int, high: int | None = None) -> None:
    """ValueError naming the first field of `cfg` in `names` that is not an integer in [low, high] (bools
    are not integers here)."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def coerce(key: str, value, tp):
    """`value` (a CLI string or a preset's Python value) as the declared type `tp`, else ValueError."""
    options = typing.get_args(tp) or (tp,)  # `float | None` -> (float, NoneType)
    text = value.lower() if isinstance(value, str) else None
    if type(None) in options and (value is None or text in ("none", "null")):
        return None
    for option in options:
        if option is bool and (isinstance(value, bool) or text in BOOLS):
            return value if isinstance(value, bool) else BOOLS[text]
        if option is str and isinstance(value, str):
            return value
        if option is dict and isinstance(value, dict):
            return value
        if isinstance(value, bool) or option not in (int, float, dict):
            continue
        digits = isinstance(value, str) and value.strip().lstrip("+-").isdigit()
        if option is int and (isinstance(value, int) or digits):
            return int(value)  # exactly: through float, 9007199254740993 would become ...992
        with contextlib.suppress(ValueError, TypeError):  # float("5e3") -> 5000.0, accepted for an int
            parsed = json.loads(value) if option is dict else float(value)
            if option is float or (option is int and parsed.is_integer()) or isinstance(parsed, dict):
                return option(parsed)
    names = {bool: "bool (true/false/1/0/yes/no)", dict: "JSON object", type(None): "none"}
    raise ValueError(
        f"{key}={value!r} is not a valid {' or '.join(names.get(o, o.__name__) for o in options)}"
    )


def _run_preset(path: Path) -> dict:
    """The preset's namespace; an exception inside it is a ValueError naming the file and line."""
    try:
        return runpy.run_path(str(path))
    except SyntaxError as e:
        raise ValueError(f"preset {path}, line {e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # whatever the preset's own code raised
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
        where = f", line {lines[-1]}" if lines else ""
        raise ValueError(f"preset {path}{where}: {type(e).__name__}: {e}") from None


def parse_config(argv: list[str], *types_: type, presets: bool = True) -> tuple:
    """Build one instance of each dataclass in `types_` from an optional preset and --key=value overrides.

    Args:
        argv: `[preset.py] [--key=value ...]`. The preset is a Python file of plain assignments, run into
            a private namespace (names starting with "_" and imported modules are ignored). A bare
            `--flag` sets a bool to true.
        types_: dataclasses sharing one flat namespace; a key is given to every one that declares it.
        presets: False for tools that take --key=value only; a first argument that is not --key=value
            is then an error, not a preset path.

    Returns:
        The instances, in the order of `types_`. Unknown keys (in the file or on the command line) raise a
        ValueError naming the closest valid key; values are coerced by the declared type (`--max_iters=5e3`,
        `--compile=false`, `--rope_base=none`, `--rope_scaling='{"rope_type": "linear", "factor": 2}'`).
    """
    hints = {t: typing.get_type_hints(t) for t in types_}
    fields = {f.name: hints[t][f.name] for t in types_ for f in dataclasses.fields(t)}
    values, sources = {}, {}
    args = list(argv)
    if presets and args and not args[0].startswith("--"):
        path = Path(args.pop(0))
        if not path.is_file():
            folder = Path(__file__).resolve().parent / "config"
            raise ValueError(f"preset file {str(path)!r} not found (presets live in {folder})")
        for key, value in _run_preset(path).items():
            if not key.startswith("_") and not isinstance(value, types.ModuleType):
                values[key], sources[key] = value, str(path)
    for arg in args:
        if not arg.startswith("--"):
            usage = "[preset.py] [--key=value ...]" if presets else "--key=value ..."
            raise ValueError(f"unexpected argument {arg!r}: use {usage}")
        key, eq, value = arg[2:].partition("=")
        if not eq and key in fields and fields[key] is not bool:  # unknown keys: named below
            raise ValueError(f"{arg!r} needs a value: --{key}=VALUE")
        values[key], sources[key] = value if eq else True, "the command line"
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(sorted(fields))}"
            raise ValueError(f"unknown config key {key!r} in {sources[key]}; {hint}")
        values[key] = coerce(key, value, fields[key])
    return tuple(
        t(**{f.name: values[f.name] for f in dataclasses.fields(t) if f.name in values}) for t in types_
    )


def parse_cli(argv: list[str], doc: str, *types_: type, presets: bool = True) -> tuple:
    """`parse_config` for a tool's command line; -h/--help prints the first paragraph of `doc` and
    every key with its default, then exits."""
    if {"-h", "--help"} & set(argv):
        print(doc.split("\n\n")[0] + "\n\nkeys (--key=value; defaults shown):")
        for t in types_:
            print("  " + ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(t)))
        raise SystemExit(0)
    return parse_config(argv, *types_, presets=presets)


OS_HINTS = {
    errno.ENOSPC: "free some disk space; a run continues with --resume=true",
    errno.EACCES: "that folder is not writable by you; choose another --out_dir / --data_dir",
    errno.EROFS: "that file system is read-only; choose another --out_dir / --data_dir",
}


def describe(e: BaseException) -> str:
    """One line for an expected failure: the message, and for an OS error the path and the way out."""
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        hint = OS_HINTS.get(e.errno)
        return f"{e.strerror}{where}" + (f"; {hint}" if hint else "")
    return str(e)


def run_main(main, interrupted: str = "") -> None:
    """Run a tool's `main` as a command (an int it returns is the exit status, anything else means 0):
    expected failures (bad input, files and disks, a diverged loss, a failed download) print one
    `error:` line and exit 1; Ctrl-C (raised, or 130 returned by a tool that stopped cleanly)
    exits 130 (the shell's convention for SIGINT) with `interrupted` as the way on. Anything else is a
    bug and keeps its traceback."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except (ValueError, OSError, FloatingPointError, DownloadError) as e:
        sys.exit(f"error: {describe(e)}")
    if code == 130:  # a Ctrl-C, whether the tool stopped cleanly (train.py) or was cut short
        print("interrupted" + (f"; {interrupted}" if interrupted else ""), file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
