"""cli.py: --help shows the resolved configuration (every key, its value, where it came from, its
description, grouped), and a command ends in one `error:` line or the exit status of the signal that
stopped it."""

import dataclasses
import errno
import importlib
import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, read_until

from cli import Stopped, field_docs, parse_cli, run_main
from configurator import CONFIG_DIR
from model import ModelConfig
from training import TrainConfig


def test_help_shows_the_resolved_value_of_every_key_with_its_description(capsys):
    preset = str(CONFIG_DIR / "shakespeare_char_cpu.py")
    with pytest.raises(SystemExit) as exit_info:
        parse_cli([preset, "--help", "--n_layer=6"], "tool: what it does\n\nmore", ModelConfig, TrainConfig)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("tool: what it does\n\nKeys (--key=value)")
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(lines) == {f.name for t in (ModelConfig, TrainConfig) for f in dataclasses.fields(t)}
    assert lines["n_layer"].split()[1] == "6" and "[the command line]" in lines["n_layer"]
    assert lines["dataset"].split()[1] == "shakespeare" and "shakespeare_char_cpu.py]" in lines["dataset"]
    assert "batch order" in lines["data_seed"] and lines["pos_enc"].split()[1] == "rope"
    for group in ("model:", "positional encoding:", "runtime:", "run:", "data:", "optimisation:"):
        assert f"\n{group}\n" in out


CONFIGS = {
    "model": "ModelConfig",
    "training": "TrainConfig",
    "evaluate": "EvalConfig",
    "grid": "CompareConfig",
    "sample": "SampleConfig",
    "export": "ExportConfig",
    "bench": "BenchConfig",
    "data.prepare": "PrepareConfig",
    "scripts.attention_maps": "MapsConfig",
    "scripts.gpu_check": "CheckConfig",
    "scripts.bench_rope": "BenchRopeConfig",
    "scripts.plot_rope": "PlotConfig",
}


@pytest.mark.parametrize(("module", "name"), CONFIGS.items())
def test_every_key_of_every_tool_has_a_description_and_a_group(module, name):
    cls = getattr(importlib.import_module(module), name)
    docs = field_docs(cls)
    assert list(docs) == [f.name for f in dataclasses.fields(cls)]
    assert [n for n, (_, text) in docs.items() if not text] == []
    assert all(len(text) < 200 for _, text in docs.values())  # a comment, not a code block's


def test_a_wrapped_field_keeps_its_comment_and_code_comments_stay_out():
    docs = field_docs(importlib.import_module("grid").CompareConfig)
    assert docs["reference"][1].startswith("the entry the others are compared with")
    assert "bounds" not in field_docs(importlib.import_module("sample").SampleConfig)["top_k"][1]


def test_run_main_turns_expected_failures_into_one_line(capsys):
    def fail(exc):
        def main():
            raise exc

        return main

    disk_full = OSError(errno.ENOSPC, "No space left on device", "out/run/ckpt.pt")
    full_message = "error: No space left on device: out/run/ckpt.pt; free some disk space"
    for exc, message in [(ValueError("bad value"), "error: bad value"), (disk_full, full_message)]:
        with pytest.raises(SystemExit, match=message):
            run_main(fail(exc))
    for exc, code in [
        (KeyboardInterrupt(), 130),
        (Stopped(signal.SIGTERM), 143),
        (Stopped(signal.SIGHUP), 129),
    ]:
        with pytest.raises(SystemExit) as info:
            run_main(fail(exc), "resume with the same command")
        assert (
            info.value.code == code and "interrupted; resume with the same command" in capsys.readouterr().err
        )
    with pytest.raises(SystemExit) as info:
        run_main(lambda: ["not", "a", "code"])
    assert info.value.code == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_main(lambda: 1 / 0)


def test_run_main_lines_reach_a_pipe_as_printed():
    """A tool's stdout is line-buffered: a parent reads a progress line while the child still runs, with
    PYTHONUNBUFFERED unset (a pipe would otherwise hold it in Python's block buffer until exit)."""
    # stdin.readline, not input(): input() flushes stdout itself
    script = (
        "import sys\nfrom cli import run_main\n"
        "def main():\n    print('ready')\n    sys.stdin.readline()\nrun_main(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert read_until(proc, lambda line: line == "ready\n", timeout=30) == "ready\n"
    proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
