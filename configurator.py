"""Typed configuration: the `Config` base of every config dataclass, presets and --key=value overrides.

One path for every value, wherever it comes from (the command line, a preset, a JSON dict such as
`task_overrides` or a checkpoint's config, Python code): `Config.__post_init__` coerces each field to its
declared type with `coerce`, then the dataclass's own `validate` checks ranges. A preset (config/*.py) is
plain Python assignments, run with runpy into a private namespace, never into this module's globals
(nanoGPT's configurator exec()s into them, so a typo in a preset passes silently).

Types and what they accept: `int` (also "5e3", 5000.0; never 5.5 or a bool), `float` (finite unless the
field allows otherwise: checked by validate), `bool` (true/false/1/0/yes/no), `str`, `dict` (a JSON object),
`tuple[X, ...]` (a list: "a,b,c" split at top-level commas, a JSON list '["a", "b"]', or a Python
list/tuple; each element coerced as X), and `X | None` ("none", "null" or None).
"""

import dataclasses
import difflib
import json
import math
import runpy
import traceback
import types
import typing
from pathlib import Path

MAX_DIGITS = 30  # an integer with more digits is a typo, not a size (and past 4300 Python refuses it)
BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
CONFIG_DIR = Path(__file__).resolve().parent / "config"


class Config:
    """Base of the frozen config dataclasses: coerce every field by its declared type, then `validate`.
    `EXAMPLES` ({field: a valid --key=value}) completes the error of a value of the wrong type."""

    EXAMPLES: typing.ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # frozen: set through object.__setattr__, as dataclasses do
            try:
                value = coerce(f.name, getattr(self, f.name), hints[f.name])
            except ValueError as e:
                example = self.EXAMPLES.get(f.name)
                raise ValueError(f"{e}; for example {example}" if example else str(e)) from None
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for values out of range; types are already right."""


def check_ints(cfg, names: tuple[str, ...], low: int, high: int | None = None) -> None:
    """ValueError naming the first field of `cfg` in `names` that is not an integer in [low, high] (bools
    are not integers here)."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def check_number(name: str, value, low: float = -math.inf, high: float = math.inf, *, strict=False) -> None:
    """ValueError unless `value` is a finite number in [low, high] ((low, high] with strict)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and low <= value <= high and not (strict and value == low)):
        raise ValueError(
            f"{name} must be a finite number in {'(' if strict else '['}{low:g}, {high:g}], got {value!r}"
        )


def split_list(text: str, sep: str = ",") -> list[str]:
    """'a,b:{"x":1,"y":2},c[0,1]' -> ['a', 'b:{"x":1,"y":2}', 'c[0,1]']: a `sep` inside brackets, braces or
    quotes does not split. Empty items are dropped."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _type_name(tp) -> str:
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    names = {bool: "bool (true/false/1/0/yes/no)", dict: "JSON object", type(None): "none"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce_list(key: str, value, tp):
    (item_type, _) = typing.get_args(tp)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"{key}={value!r} is not a valid JSON list") from None
        else:
            value = split_list(text)
    if not isinstance(value, list | tuple):
        raise TypeError
    return tuple(coerce(f"{key}[{i}]", item, item_type) for i, item in enumerate(value))


def coerce(key: str, value, tp):
    """`value` (a CLI string, a preset's or a JSON value, a Python value) as the declared type `tp`, else
    ValueError naming the key, the value and the type."""
    options = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)  # `float | None`
    text = value.lower().strip() if isinstance(value, str) else None
    if type(None) in options and (value is None or text in ("none", "null")):
        return None
    for option in options:
        if typing.get_origin(option) is tuple:
            try:
                return _coerce_list(key, value, option)
            except TypeError:
                continue
        if option is bool and (isinstance(value, bool) or text in BOOLS):
            return value if isinstance(value, bool) else BOOLS[text]
        if option is str and isinstance(value, str):
            return value
        if option is dict and isinstance(value, dict):
            return value
        if isinstance(value, bool) or option not in (int, float, dict):
            continue
        digits = isinstance(value, str) and value.strip().lstrip("+-").isdigit()
        if option is int and (isinstance(value, int) or digits) and len(str(value)) <= MAX_DIGITS:
            return int(value)  # exactly: through float, 9007199254740993 would become ...992
        try:  # float("5e3") -> 5000.0, accepted for an int
            parsed = json.loads(value) if option is dict else float(value)
        except (ValueError, TypeError, json.JSONDecodeError):
            continue
        if option is dict and isinstance(parsed, dict):
            return parsed
        if option is float:
            return parsed
        if option is int and isinstance(parsed, float) and parsed.is_integer():
            return int(parsed)
    allowed = " or ".join(_type_name(o) for o in options)
    shown = (
        repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:60]}... ({len(repr(value))} characters)"
    )
    raise ValueError(f"{key}={shown} is not a valid {allowed}")


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


def find_preset(name: str) -> Path:
    """The preset file `name` (a path), or a ValueError that suggests the config/ file meant: a bare name
    (shakespeare_char_cpu) or a near miss (config/shakespear_char_cpu.py)."""
    path = Path(name)
    if path.is_file():
        return path
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
    close = difflib.get_close_matches(path.stem, known, n=1, cutoff=0.6)
    hint = f"did you mean config/{close[0]}.py?" if close else f"presets: {', '.join(known)} in config/"
    raise ValueError(f"preset file {name!r} not found; {hint}")


ALIASES = {  # names people type, from nanoGPT habits and the book's GPT_CONFIG_124M
    "lr": "learning_rate",
    "iters": "max_iters",
    "steps": "max_iters",
    "seeds": "n_seeds",
    "batch": "batch_size",
    "context_length": "block_size",
    "emb_dim": "n_embd",
    "n_heads": "n_head",
    "n_layers": "n_layer",
    "drop_rate": "dropout",
    "qkv_bias": "bias",
}


def unknown_key(key: str, fields, where: str) -> ValueError:
    """The error for a key no dataclass declares: the key meant (the book's and common names first), else
    the closest one."""
    meant = ALIASES.get(key) if ALIASES.get(key) in fields else None
    close = [meant] if meant else difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
    hint = f"did you mean --{close[0]}?" if close else f"valid keys: {', '.join(sorted(fields))}"
    return ValueError(f"unknown config key {key!r} in {where}; {hint}")


def make(cls, values: dict, where: str):
    """`cls(**values)` after checking that every key is one of cls's fields (the error names the closest);
    values are coerced and validated by the Config base."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a dict of {cls.__name__} keys, got {values!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise unknown_key(key, names, where)
    return cls(**values)


def read_argv(argv: list[str], *types_: type, presets: bool = True) -> tuple[dict, dict]:
    """({key: raw value}, {key: where it came from}) of `[preset.py] [--key=value ...]`."""
    fields = {f.name: typing.get_type_hints(t)[f.name] for t in types_ for f in dataclasses.fields(t)}
    values, sources = {}, {}
    args = list(argv)
    if presets and args and not args[0].startswith("--"):
        path = find_preset(args.pop(0))
        for key, value in _run_preset(path).items():
            if not key.startswith("_") and not isinstance(value, types.ModuleType):
                values[key], sources[key] = value, f"preset {path}"
    for arg in args:
        if not arg.startswith("--"):
            usage = "[preset.py] [--key=value ...]" if presets else "--key=value ..."
            raise ValueError(f"unexpected argument {arg!r}: use {usage}")
        key, eq, value = arg[2:].partition("=")
        if not eq and key in fields and fields[key] is not bool:  # unknown keys: named below
            raise ValueError(f"{arg!r} needs a value: --{key}=VALUE")
        values[key], sources[key] = value if eq else True, "the command line"
    for key in values:
        if key not in fields:
            raise unknown_key(key, fields, sources[key])
    return values, sources


def parse_config(argv: list[str], *types_: type, presets: bool = True) -> tuple:
    """Build one instance of each dataclass in `types_` from an optional preset and --key=value overrides.

    Args:
        argv: `[preset.py] [--key=value ...]`. The preset is a Python file of plain assignments, run into
            a private namespace (names starting with "_" and imported modules are ignored). A bare
            `--flag` sets a bool to true.
        types_: Config dataclasses sharing one flat namespace; a key is given to every one that declares it.
        presets: False for tools that take --key=value only; a first argument that is not --key=value
            is then an error, not a preset path.

    Returns:
        The instances, in the order of `types_`. Unknown keys (in the file or on the command line) raise a
        ValueError naming the closest valid key; values are coerced by the declared type (`--max_iters=5e3`,
        `--compile=false`, `--rope_base=none`, `--rope_scaling='{"rope_type": "linear", "factor": 2}'`).
    """
    values, _ = read_argv(argv, *types_, presets=presets)
    return tuple(
        t(**{f.name: values[f.name] for f in dataclasses.fields(t) if f.name in values}) for t in types_
    )
