"""Tests for data/: tokenizers, prepare (splits, reuse, bad input, atomic writes) and the downloader.

Downloads are tested against an http.server on 127.0.0.1 started here; nothing leaves the machine.
The Tiny Shakespeare counts are checked when $NANOROPE_CORPORA holds tinyshakespeare.txt (and, for
gpt2, when tiktoken's cache has the BPE, e.g. TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache); otherwise
those tests skip.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from data import corpora, tokenizers
from data.prepare import load_meta, prepare
from data.tokenizers import CharTokenizer, GPT2Tokenizer, get_tokenizer

REPO = Path(__file__).resolve().parents[1]
TEXT = "Ünïcode ok.\nSecond line — with a dash, and café.\n" * 7


def gpt2_or_skip() -> GPT2Tokenizer:
    try:
        return GPT2Tokenizer()
    except corpora.DownloadError as e:
        pytest.skip(f"GPT-2 BPE not available offline (set TIKTOKEN_CACHE_DIR): {e}")


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary or data files anywhere under folder."""
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".tmp", ".part", ".bin"))


# --- tokenizers ---------------------------------------------------------------------------------------


def test_char_tokenizer_roundtrip_and_json_state():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == sorted(set(TEXT)) and tok.vocab_size == len(set(TEXT))
    ids = tok.encode(TEXT)
    assert ids[:3] == [tok.chars.index(c) for c in TEXT[:3]]
    assert tok.decode(ids) == TEXT
    again = get_tokenizer(json.loads(json.dumps(tok.state())))
    assert again.encode(TEXT) == ids and again.vocab_size == tok.vocab_size


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"\['x', 'z'\]"):
        tok.encode("abzx")


def test_get_tokenizer_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"'bpe'.*char, gpt2"):
        get_tokenizer({"tokenizer": "bpe"})


def test_gpt2_tokenizer_matches_reference_ids():
    tok = gpt2_or_skip()
    assert tok.encode("Hello, world!") == [15496, 11, 995, 0]  # GPT-2's published ids
    assert tok.vocab_size == 50257 and tok.eot_token == 50256
    # Text is ordinary text: a literal <|endoftext|> in a corpus must not become the special token.
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids and tok.decode(ids) == "a<|endoftext|>b"
    assert get_tokenizer({"tokenizer": "gpt2"}).encode(TEXT) == tok.encode(TEXT)


def test_gpt2_unavailable_says_what_to_do(monkeypatch):
    tiktoken = pytest.importorskip("tiktoken")

    def offline(name):
        raise ConnectionError(f"cannot fetch {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    tokenizers.gpt2_encoding.cache_clear()
    try:
        with pytest.raises(corpora.DownloadError, match=r"TIKTOKEN_CACHE_DIR(.|\n)*--tokenizer char"):
            GPT2Tokenizer()
    finally:
        tokenizers.gpt2_encoding.cache_clear()


# --- prepare ------------------------------------------------------------------------------------------


def test_prepare_local_file_splits_90_10_then_tokenizes(tmp_path):
    src = write(tmp_path / "story.txt", TEXT)
    folder = prepare(str(src), "char", tmp_path / "out")
    assert folder == tmp_path / "out" / "story_char"
    meta = load_meta(folder)
    n = int(len(TEXT) * 0.9)
    assert meta["dataset"] == "story" and meta["tokenizer"] == "char" and meta["dtype"] == "uint16"
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
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp files
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


def test_local_copy_with_wrong_checksum_is_rejected(tmp_path, monkeypatch):
    write(tmp_path / "the-verdict.txt", "not the verdict at all\n")
    monkeypatch.setenv(corpora.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match=f"sha256.*unset {corpora.ENV_VAR}"):
        prepare("verdict", "char", tmp_path / "out")


# --- downloads ----------------------------------------------------------------------------------------

BODY = TEXT.encode("utf-8")
SHA = hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        release = self.server.release
        if self.path == "/ok":
            self.reply(200, BODY)
        elif self.path == "/corrupt":
            self.reply(200, BODY[:-1] + b"!")
        elif self.path == "/truncated":  # promises more bytes than it sends, then closes
            self.reply(200, BODY[:100], length=len(BODY))
        elif self.path == "/stall":  # sends part of the body, then goes silent
            self.reply(200, BODY[:100], length=len(BODY))
            release.wait(10)
        else:
            self.reply(404, b"not found")

    def reply(self, status, body, length=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.release = threading.Event()
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_download_writes_verified_file(tmp_path, server):
    dest = corpora.download(f"{server}/ok", tmp_path / "sub" / "corpus.txt", SHA, timeout=5)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["corpus.txt"]


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/missing", "HTTP 404"),
        ("/corrupt", "sha256 .*, expected " + SHA),
        ("/truncated", r"\(100 bytes\) has sha256"),
        ("/stall", "timed out.*timeout 0.3 s"),
    ],
)
def test_download_failure_leaves_nothing_behind(tmp_path, server, path, match):
    with pytest.raises(corpora.DownloadError, match=match):
        corpora.download(f"{server}{path}", tmp_path / "corpus.txt", SHA, timeout=0.3)
    assert list(tmp_path.iterdir()) == []


def test_download_without_network_raises_runtimeerror(tmp_path):
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(corpora.DownloadError, match="refused"):
        corpora.download(f"http://127.0.0.1:{port}/x", tmp_path / "corpus.txt", SHA, timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_registered_corpus_downloads_once_then_works_offline(tmp_path, monkeypatch, server):
    monkeypatch.delenv(corpora.ENV_VAR, raising=False)
    monkeypatch.setitem(
        corpora.REMOTE, "verdict", corpora.Remote("the-verdict.txt", f"{server}/ok", SHA, len(BODY))
    )
    folder = prepare("verdict", "char", tmp_path)
    assert folder == tmp_path / "verdict_char"
    assert (tmp_path / "downloads" / "the-verdict.txt").read_bytes() == BODY
    assert load_meta(folder)["source_sha256"] == SHA
    # Offline now: the prepared folder is reused by checksum, even with the download deleted.
    monkeypatch.setitem(
        corpora.REMOTE, "verdict", corpora.Remote("the-verdict.txt", f"{server}/gone", SHA, 1)
    )
    (tmp_path / "downloads" / "the-verdict.txt").unlink()
    assert prepare("verdict", "char", tmp_path) == folder
    # Forced to fetch again, the failure says how to work offline.
    with pytest.raises(corpora.DownloadError, match=f"HTTP 404(.|\n)*the-verdict.txt.*{corpora.ENV_VAR}"):
        prepare("verdict", "char", tmp_path, force=True)


def test_verdict_registry_entry():
    verdict = corpora.REMOTE["verdict"]
    assert verdict.url.endswith("rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt")
    assert len(verdict.sha256) == 64 and verdict.size == 20_479  # the book's len(raw_text)


# --- command line -------------------------------------------------------------------------------------


def test_cli_prepares_and_reports_errors(tmp_path):
    src = write(tmp_path / "story.txt", TEXT)
    cmd = [sys.executable, "data/prepare.py", "--tokenizer", "char", "--data_dir", str(tmp_path)]
    done = subprocess.run([*cmd, "--dataset", str(src)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"train {int(len(TEXT) * 0.9)} tokens" in done.stdout
    assert load_meta(tmp_path / "story_char")["dataset"] == "story"
    bad = subprocess.run(
        [*cmd, "--dataset", "nope.txt"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "error: dataset file 'nope.txt' does not exist" in bad.stderr
