"""data/corpora.py: the registry and the verified downloader, against an http.server on 127.0.0.1
started here; nothing leaves the machine."""

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import TEXT

from data import corpora
from data.prepare import load_meta, prepare

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


def test_a_corpora_folder_that_is_not_there_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(corpora.ENV_VAR, str(tmp_path / "nonexistent"))
    monkeypatch.setattr(
        corpora, "download", lambda *a, **k: (_ for _ in ()).throw(corpora.DownloadError("offline"))
    )
    with pytest.raises(
        corpora.DownloadError,
        match=rf"{corpora.ENV_VAR}=.*nonexistent does not exist: put "
        r"tinyshakespeare.txt there.*--dataset=pydocs",
    ):
        corpora.fetch("shakespeare", tmp_path / "downloads")
