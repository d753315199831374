"""Fixtures for every test."""

import signal

import pytest


@pytest.fixture(autouse=True)
def default_sigint():
    """Ctrl-C as Python sets it up in a terminal. A process started in the background by a shell
    without job control inherits SIGINT ignored, and the tests of stop handling would see that instead."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
