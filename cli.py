"""What every command-line tool shares: parsing with --help (the resolved configuration, every key with its
value and its description), and how a command ends (one `error:` line, or an exit status that names the
signal that stopped it)."""

import dataclasses
import errno
import inspect
import io
import json
import re
import sys
import tokenize

from configurator import parse_config, read_argv
from data.corpora import DownloadError


class Stopped(KeyboardInterrupt):
    """A command stopped by a signal after saving what it had: SIGINT (Ctrl-C), SIGTERM or SIGHUP. Exits
    with 128 + the signal's number (130, 143, 129), the shells' convention."""

    def __init__(self, signum: int = 2):
        super().__init__(signum)
        self.signum = signum


def _own_docs(cls) -> dict[str, tuple[str, str]]:
    """{field: (group, comment)} of the fields a class body declares, from its source: the comments inside a
    field's statement (ruff may wrap it), continued on comment-only lines right below it."""
    source = inspect.getsource(cls)
    own = inspect.get_annotations(cls)
    group = cls.__name__.removesuffix("Config").lower()
    docs, stmt, last, last_row, first = {}, None, None, -1, True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.DEDENT):
            stmt, first = None, True
        elif tok.type == tokenize.NAME and first:
            stmt, first = (tok.string if tok.string in own else None), False
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if section := re.fullmatch(r"---+\s*(.+)", text):
                group, last = section.group(1).strip(), None
            elif stmt:
                docs[stmt], last = (group, (docs[stmt][1] + " " + text if stmt in docs else text)), stmt
            elif last and tok.start[0] == last_row + 1 and tok.line.strip().startswith("#"):
                docs[last] = (docs[last][0], docs[last][1] + " " + text)  # a continuation of the field above
            else:
                last = None
            last_row = tok.start[0]
        elif tok.type not in (tokenize.NL, tokenize.INDENT):
            first = False
    group = cls.__name__.removesuffix("Config").lower()
    out = {}
    for name in own:  # fields without a comment join the group of the field before them
        group = docs.get(name, (group, ""))[0]
        out[name] = (group, docs.get(name, (group, ""))[1])
    return out


def field_docs(cls) -> dict[str, tuple[str, str]]:
    """{field: (group, description)} of a config dataclass, in field order, from the sources of it and its
    bases: a field's description is the comment on its line (continued on comment-only lines below it); a
    comment line `# --- name` starts a group, the default group being the class name without "Config"."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs |= _own_docs(klass)
    return {f.name: docs[f.name] for f in dataclasses.fields(cls)}


def show(value) -> str:
    """A value as it is typed on the command line."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, tuple):
        return ",".join(map(show, value)) if all(",[{" not in show(v) for v in value) else json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def help_text(doc: str, configs: tuple, sources: dict) -> str:
    """The first paragraph of `doc`, then every key grouped, with its resolved value, where that value
    came from when not the default, and its description."""
    lines = [doc.split("\n\n")[0], "", "Keys (--key=value), resolved for this command line:"]
    for cfg in configs:
        by_group = {}
        for name, (group, text) in field_docs(type(cfg)).items():
            by_group.setdefault(group, []).append((name, text))
        for group, fields in by_group.items():
            lines.append(f"\n{group}:")
            for name, text in fields:
                value = show(getattr(cfg, name)) or "(none)"  # an empty list
                where = f"  [{sources[name]}]" if name in sources else ""
                lines.append(f"  {name:<26} {value:<16}  {text}{where}".rstrip())
    return "\n".join(lines)


def parse_cli(argv: list[str], doc: str, *types_: type, presets: bool = True) -> tuple:
    """`parse_config` for a tool's command line. -h/--help anywhere prints `help_text` for the rest of the
    command line (so `train.py config/x.py --help` shows that preset's values) and exits 0."""
    wants_help = {"-h", "--help"} & set(argv)
    rest = [a for a in argv if a not in ("-h", "--help")]
    configs = parse_config(rest, *types_, presets=presets)
    if wants_help:
        _, sources = read_argv(rest, *types_, presets=presets)
        print(help_text(doc, configs, sources))
        raise SystemExit(0)
    return configs


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
    `error:` line and exit 1; a stop by a signal (raised as `Stopped` or KeyboardInterrupt, or 130 returned
    by a tool that stopped cleanly) exits 128 + the signal's number with `interrupted` as the way on.
    Anything else is a bug and keeps its traceback. Standard output is line-buffered, so that progress
    lines reach a pipe (`| tee`, a parent process waiting for one) as they are printed, not at exit."""
    sys.stdout.reconfigure(line_buffering=True)
    try:
        code = main()
    except KeyboardInterrupt as e:
        code = 128 + getattr(e, "signum", 2)
    except (ValueError, OSError, FloatingPointError, DownloadError) as e:
        sys.exit(f"error: {describe(e)}")
    if code in (129, 130, 143):  # stopped cleanly (train.py returns 130) or cut short
        print("interrupted" + (f"; {interrupted}" if interrupted else ""), file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
