"""Shared test helpers: a small Unicode text, file writing, leftovers, the GPT-2 BPE or a skip, a tiny
training corpus, a tiny grid and the processes of one, a hand-written backward against autograd."""

import os
import pydoc_data.topics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data.corpora import DownloadError
from data.tokenizers import GPT2Tokenizer
from model import GPT, ModelConfig

REPO = Path(__file__).resolve().parents[1]
# a train.py run of a few seconds: the model and schedule tests train
TINY_RUN = dict(
    block_size=16,
    n_layer=2,
    n_head=2,
    n_embd=32,
    pos_enc="rope",
    device="cpu",
    batch_size=4,
    max_iters=6,
    eval_interval=3,
    eval_iters=2,
    log_interval=1,
    warmup_iters=2,
    lr_decay_iters=6,
    sample_tokens=0,
)
TEXT = "Ünïcode ok.\nSecond line — with a dash, and café.\n" * 7


def gpt2_or_skip() -> GPT2Tokenizer:
    try:
        return GPT2Tokenizer()
    except DownloadError as e:
        pytest.skip(f"GPT-2 BPE not available offline (set TIKTOKEN_CACHE_DIR): {e}")


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary or data files anywhere under folder."""
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".tmp", ".part", ".bin"))


def tiny_corpus(folder: Path) -> Path:
    """20,000 characters of the embedded pydocs text in folder/tiny.txt (a 'tiny' char dataset)."""
    return write(folder / "tiny.txt", "".join(pydoc_data.topics.topics.values())[:20_000])


def tiny(pos_enc="rope", **kw) -> ModelConfig:
    """A 2-layer, 4-head, 32-wide config with block_size 16 and vocabulary 65."""
    cfg = dict(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, pos_enc=pos_enc)
    return ModelConfig(**(cfg | kw))


def assert_same_output_and_gradients(expected_fn, fn, inputs, upstream, tol=1e-10) -> None:
    """fn (a hand-written backward) gives expected_fn's output and, for `upstream`, its gradients with
    respect to every input (float64 inputs: autograd through a paper's formula is the reference)."""
    results = []
    for f in (expected_fn, fn):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = f(*leaves)
        results.append((out, *torch.autograd.grad(out, leaves, upstream)))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def model_for(pos_enc, seed=0, **kw) -> GPT:
    """`tiny`'s model in eval mode, initialised from `seed`."""
    torch.manual_seed(seed)
    return GPT(tiny(pos_enc, **kw)).eval()


# A grid of 2 schemes x 2 seeds x 4 iterations of a 1-layer model (compare.py's and launch.py's tests).
TINY = [
    "--block_size=16",
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=32",
    "--bias=false",
    "--batch_size=4",
    "--max_iters=4",
    "--eval_interval=2",
    "--eval_iters=2",
    "--warmup_iters=1",
    "--lr_decay_iters=4",
    "--sample_tokens=0",
    "--device=cpu",
    "--eval_windows=3",
    "--tokenizer=char",
]


def tiny_grid(root: Path) -> list[str]:
    """compare.py's arguments for TINY's grid on a small generated text in root (written once)."""
    if not (root / "text.txt").is_file():
        rng = np.random.default_rng(0)
        words = ["the", "king", "and", "queen", "of", "rome", "speak", "now", "to", "me"]
        (root / "text.txt").write_text(" ".join(rng.choice(words, size=6000)) + "\n", encoding="utf-8")
    paths = [f"--dataset={root / 'text.txt'}", f"--data_dir={root / 'data'}", f"--out_dir={root / 'grid'}"]
    return [*TINY, *paths, "--schemes=learned,rope", "--n_seeds=2"]


def grid_process(argv: list[str]) -> subprocess.Popen:
    """compare.py in a process group of its own (its workers join it), one thread per process."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "compare.py", *argv],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def group_is_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def read_until(proc: subprocess.Popen, done, timeout: float = 120.0) -> str:
    """Read proc's stdout lines until done(line) and return that line; a watchdog kills proc after timeout, so
    a child that never prints the line fails the test instead of hanging it."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if done(line):
                return line
    finally:
        watchdog.cancel()
    pytest.fail(f"the child ended (or was killed after {timeout:g} s) before printing the line waited for")
