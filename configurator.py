"""Typed configuration from preset files and --key=value overrides, shared by every tool.

A preset (config/*.py) is plain Python assignments, run with runpy into a private namespace, never into
this module's globals (nanoGPT's configurator exec()s into them, so a typo in a preset passes silently).
Keys are routed to the frozen dataclasses that declare them and coerced by their declared types.
"""

import contextlib
import dataclasses
import difflib
import json
import runpy
import types
import typing
from pathlib import Path

BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def check_ints(cfg, names: tuple[str, ...], low: int) -> None:
    """ValueError naming the first field of `cfg` in `names` that is not an integer >= low (bools are not)."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _coerce(key: str, value, tp):
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
        with contextlib.suppress(ValueError, TypeError):  # float("5e3") -> 5000.0, accepted for an int
            parsed = json.loads(value) if option is dict else float(value)
            if option is float or (option is int and parsed.is_integer()) or isinstance(parsed, dict):
                return option(parsed)
    names = {bool: "bool (true/false/1/0/yes/no)", dict: "JSON object", type(None): "none"}
    raise ValueError(
        f"{key}={value!r} is not a valid {' or '.join(names.get(o, o.__name__) for o in options)}"
    )


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
        for key, value in runpy.run_path(str(path)).items():
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
        values[key] = _coerce(key, value, fields[key])
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
