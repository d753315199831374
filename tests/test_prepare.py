"""data/prepare.py: 90/10 splits, reuse until the source changes, bad input, atomic writes, the CLI.

The Tiny Shakespeare counts are checked when $NANOROPE_CORPORA holds tinyshakespeare.txt (and, for
gpt2, when tiktoken's cache has the BPE, e.g. TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache); otherwise
those tests skip.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, TEXT, gpt2_or_skip, leftovers, write

from data import corpora
from data.prepare import folder_of, load_meta, prepare
from data.tokenizers import get_tokenizer


def test_prepare_local_file_splits_90_10_then_tokenizes(tmp_path):
    src = write(tmp_path / "story.txt", TEXT)
    folder = prepare(str(src), "char", tmp_path / "out")
    assert folder == folder_of(str(src), "char", tmp_path / "out") and folder.name.startswith("story-")
    meta = load_meta(folder)
    n = int(len(TEXT) * 0.9)
    assert (
        meta["dataset"] == folder.name.removesuffix("_char")
        and meta["tokenizer"] == "char"
        and meta["dtype"] == "uint16"
    )
    assert meta["chars"] == sorted(set(TEXT)) and meta["vocab_size"] == len(meta["chars"])
    assert meta["source_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert (meta["train_tokens"], meta["val_tokens"]) == (n, len(TEXT) - n)
    tok = get_tokenizer(meta)
    train = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(folder / "val.bin", dtype=np.uint16, mode="r")
    assert tok.decode(train.tolist()) == TEXT[:n] and tok.decode(val.tolist()) == TEXT[n:]


def test_prepare_gpt2_tokenizes_each_split(tmp_path):
    tok = gpt2_or_skip()
    src = write(tmp_path / "story.txt", TEXT)
    folder = prepare(str(src), "gpt2", tmp_path)
    meta = load_meta(folder)
    n = int(len(TEXT) * 0.9)
    assert "chars" not in meta and meta["vocab_size"] == 50257
    assert np.fromfile(folder / "train.bin", dtype=np.uint16).tolist() == tok.encode(TEXT[:n])
    assert np.fromfile(folder / "val.bin", dtype=np.uint16).tolist() == tok.encode(TEXT[n:])


def test_prepare_reuses_until_source_changes(tmp_path):
    src = write(tmp_path / "story.txt", TEXT)
    folder = prepare(str(src), "char", tmp_path)
    stamp = (folder / "train.bin").stat().st_mtime_ns
    os.utime(folder / "train.bin", ns=(stamp - 10**9, stamp - 10**9))  # so a rewrite is visible
    assert prepare(str(src), "char", tmp_path) == folder
    assert (folder / "train.bin").stat().st_mtime_ns == stamp - 10**9  # reused, not rewritten
    prepare(str(src), "char", tmp_path, force=True)
    assert (folder / "train.bin").stat().st_mtime_ns != stamp - 10**9
    write(src, TEXT + "new words\n")
    prepare(str(src), "char", tmp_path)
    assert load_meta(folder)["source_sha256"] == hashlib.sha256((TEXT + "new words\n").encode()).hexdigest()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: str(d / "missing.txt"), "does not exist"),
        (lambda d: "no_such_corpus", "unknown dataset 'no_such_corpus'.*pydocs, shakespeare, verdict"),
        (lambda d: str(d), "is a directory"),
        (lambda d: str(write(d / "empty.txt", b"")), "is empty"),
        (lambda d: str(write(d / "short.txt", "tiny")), "4 characters; need at least 10"),
        (lambda d: str(write(d / "latin1.txt", "café au lait".encode("latin-1"))), "not UTF-8.*offset 3"),
    ],
    ids=["missing", "unknown-name", "directory", "empty", "too-short", "not-utf8"],
)
def test_prepare_bad_input_raises_clear_valueerror(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        prepare(make(tmp_path), "char", tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_prepare_rejects_unknown_tokenizer(tmp_path):
    with pytest.raises(ValueError, match=r"'bpe'.*char, gpt2"):
        prepare("pydocs", "bpe", tmp_path)


def test_interrupted_prepare_leaves_no_partial_or_stale_dataset(tmp_path, monkeypatch):
    src = write(tmp_path / "story.txt", TEXT)
    folder = prepare(str(src), "char", tmp_path)
    write(src, TEXT * 2)
    real_replace = os.replace

    def fail_on_val(tmp, dst):
        if Path(dst).name == "val.bin":
            raise OSError("disk full")
        real_replace(tmp, dst)

    monkeypatch.setattr(os, "replace", fail_on_val)
    with pytest.raises(OSError, match="disk full"):
        prepare(str(src), "char", tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    # The new train.bin landed but val.bin did not: the old meta.json is gone, so nothing looks complete.
    assert not (folder / "meta.json").exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []  # no temp files
    prepare(str(src), "char", tmp_path)
    assert load_meta(folder)["train_tokens"] == int(len(TEXT) * 2 * 0.9)


def test_pydocs_needs_no_files_or_network(tmp_path):
    text = corpora.pydocs_text()
    assert len(text) > 100_000
    meta = load_meta(prepare("pydocs", "char", tmp_path))
    assert meta["vocab_size"] == len(set(text))
    assert (meta["train_tokens"], meta["val_tokens"]) == (
        int(len(text) * 0.9),
        len(text) - int(len(text) * 0.9),
    )


@pytest.mark.parametrize(
    ("tokenizer", "vocab", "train", "val"),
    [("char", 65, 1_003_854, 111_540), ("gpt2", 50_257, 301_966, 36_059)],
)
def test_tiny_shakespeare_matches_nanogpt_counts(tmp_path, tokenizer, vocab, train, val):
    local = Path(os.environ.get(corpora.ENV_VAR, "/nonexistent")) / "tinyshakespeare.txt"
    if not local.is_file():
        pytest.skip(f"set {corpora.ENV_VAR} to a folder holding tinyshakespeare.txt")
    if tokenizer == "gpt2":
        gpt2_or_skip()
    meta = load_meta(prepare("shakespeare", tokenizer, tmp_path))
    assert (meta["vocab_size"], meta["train_tokens"], meta["val_tokens"]) == (vocab, train, val)
    assert meta["source_sha256"] == corpora.REMOTE["shakespeare"].sha256


def test_the_verdict_has_the_books_token_count_and_split(tmp_path):
    """5,145 GPT-2 tokens in the whole story (ch. 2), split at int(0.9 * len(text)) characters (ch. 5)."""
    local = Path(os.environ.get(corpora.ENV_VAR, "/nonexistent")) / "the-verdict.txt"
    if not local.is_file():
        pytest.skip(f"set {corpora.ENV_VAR} to a folder holding the-verdict.txt")
    tok = gpt2_or_skip()
    text = local.read_text(encoding="utf-8")
    assert len(tok.encode(text)) == 5145 and len(text) == 20_479
    split = int(0.9 * len(text))  # the book's train_ratio = 0.90 over characters
    meta = load_meta(prepare("verdict", "gpt2", tmp_path))
    expected = (len(tok.encode(text[:split])), len(tok.encode(text[split:])))
    assert (meta["train_tokens"], meta["val_tokens"]) == expected == (4612, 534)


def test_local_copy_with_wrong_checksum_is_rejected(tmp_path, monkeypatch):
    write(tmp_path / "the-verdict.txt", "not the verdict at all\n")
    monkeypatch.setenv(corpora.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match=f"sha256.*unset {corpora.ENV_VAR}"):
        prepare("verdict", "char", tmp_path / "out")


def test_cli_prepares_and_reports_errors(tmp_path):
    src = write(tmp_path / "story.txt", TEXT)
    cmd = [sys.executable, "-m", "data.prepare", "--tokenizer=char", f"--data_dir={tmp_path}"]
    done = subprocess.run([*cmd, f"--dataset={src}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"train {int(len(TEXT) * 0.9)} tokens" in done.stdout
    assert load_meta(folder_of(str(src), "char", tmp_path))["dataset"].startswith("story-")
    bad = subprocess.run([*cmd, "--dataset=nope.txt"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "error: dataset file 'nope.txt' does not exist" in bad.stderr


PREPARE = "import sys; from data.prepare import prepare; prepare(sys.argv[1], 'char', sys.argv[2])"


def test_files_of_one_name_never_share_a_folder_and_concurrent_preparations_wait(tmp_path):
    """Two different story.txt prepared at once into one data_dir: each gets its own folder, each holding its
    own text (4 rounds, 2 processes each)."""
    for i in range(4):
        (tmp_path / f"a{i}").mkdir()
        (tmp_path / f"b{i}").mkdir()
        a = write(tmp_path / f"a{i}" / "story.txt", TEXT)
        b = write(tmp_path / f"b{i}" / "story.txt", TEXT.upper())
        procs = [
            subprocess.Popen([sys.executable, "-c", PREPARE, str(p), str(tmp_path / "data")], cwd=REPO)
            for p in (a, b)
        ]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
        for src, text in ((a, TEXT), (b, TEXT.upper())):
            meta, folder = (
                load_meta(folder_of(str(src), "char", tmp_path / "data")),
                folder_of(str(src), "char", tmp_path / "data"),
            )
            assert meta["source_sha256"] == hashlib.sha256(text.encode()).hexdigest()
            ids = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
            assert get_tokenizer(meta).decode(ids.tolist()) == text[: int(len(text) * 0.9)]
