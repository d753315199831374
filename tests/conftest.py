"""Fixtures for every test."""

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def default_sigint():
    """Ctrl-C as Python sets it up in a terminal. A process started in the background by a shell
    without job control inherits SIGINT ignored, and the tests of stop handling would see that instead."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def the_checkout_stays_clean():
    """No test writes into the repository: prepared data and runs go to tmp_path."""
    before = {p.name for p in (REPO / "data").iterdir()} | {p.name for p in REPO.iterdir()}
    yield
    after = {p.name for p in (REPO / "data").iterdir()} | {p.name for p in REPO.iterdir()}
    assert after <= before | {"__pycache__", ".pytest_cache"}, f"a test wrote {sorted(after - before)}"
