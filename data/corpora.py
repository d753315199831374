"""Registry of text corpora and a verified downloader.

A dataset is one of
  - ``pydocs``: the English reference text that ships with every CPython (``pydoc_data.topics``,
    ~465k characters); needs no network and no files. Its exact content depends on the Python version.
  - a downloadable corpus in ``REMOTE`` (``shakespeare``, ``verdict``). Looked up, in order, as
    ``$NANOROPE_CORPORA/<filename>``, then ``<download_dir>/<filename>``, then downloaded from its
    canonical URL. Every copy, local or downloaded, must match the registered sha256.
  - a path to a local UTF-8 text file.

Errors: bad input from the user (unknown name, missing file, a local copy with the wrong checksum) raises
ValueError; a failed download (no network, HTTP error, timeout, wrong bytes) raises DownloadError, a
RuntimeError. Both messages say what to do next, so the command-line tools print them without a traceback.
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from files import write_atomic

ENV_VAR = "NANOROPE_CORPORA"  # folder holding local copies, e.g. tinyshakespeare.txt


class DownloadError(RuntimeError):
    """A corpus or tokenizer file could not be downloaded or verified; the message says how to go offline."""


@dataclass(frozen=True)
class Remote:
    filename: str  # name of the local copy, in $NANOROPE_CORPORA and in the download folder
    url: str
    sha256: str  # of the exact bytes served at url
    size: int  # bytes, only to make error messages concrete


REMOTE = {
    # karpathy/char-rnn's Tiny Shakespeare, nanoGPT's standard corpus.
    "shakespeare": Remote(
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        1_115_394,
    ),
    # Edith Wharton's "The Verdict", the running example of rasbt/LLMs-from-scratch chapters 2-5.
    "verdict": Remote(
        "the-verdict.txt",
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
        20_479,
    ),
}


def pydocs_text() -> str:
    """The pydoc topics joined in sorted-key order, so the text is deterministic for a Python version."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


EMBEDDED = {"pydocs": pydocs_text}
NAMES = (*EMBEDDED, *REMOTE)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_name(dataset: str) -> str:
    """The name a prepared dataset is stored under: the registered name, or for a file its stem and a digest
    of its absolute path (two files of one name never share a folder)."""
    if dataset in NAMES:
        return dataset
    path = Path(dataset)
    if path.is_file():
        return f"{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    if path.exists():
        raise ValueError(f"dataset {dataset!r} is a directory, not a text file")
    if path.suffix or len(path.parts) > 1:
        raise ValueError(f"dataset file {dataset!r} does not exist")
    raise ValueError(
        f"unknown dataset {dataset!r}: use one of {', '.join(NAMES)} or a path to a UTF-8 text file"
    )


def read(dataset: str, download_dir: str | Path) -> tuple[bytes, str]:
    """Return (raw bytes, where they came from) for a dataset; downloads into download_dir if needed."""
    folder_name(dataset)  # validates the name or path
    if dataset in EMBEDDED:
        return EMBEDDED[dataset]().encode("utf-8"), f"{dataset} (embedded)"
    if dataset in REMOTE:
        path = fetch(dataset, download_dir)
        return path.read_bytes(), str(path)
    return Path(dataset).read_bytes(), str(dataset)


def fetch(name: str, download_dir: str | Path, timeout: float = 30.0) -> Path:
    """Path of a verified local copy of REMOTE[name]: $NANOROPE_CORPORA, the download folder, or a
    download."""
    corpus = REMOTE[name]
    hint = (
        f"To work offline, save the file as {corpus.filename} in a folder and set {ENV_VAR} to that folder, "
        f"or train on a local file (--dataset=path/to/your.txt) or the embedded text (--dataset=pydocs)."
    )
    if os.environ.get(ENV_VAR):
        folder = Path(os.environ[ENV_VAR])
        local = folder / corpus.filename
        if local.is_file():
            got = sha256_of(local.read_bytes())
            if got != corpus.sha256:
                raise ValueError(
                    f"{local} has sha256 {got}, expected {corpus.sha256} ({corpus.size:,} bytes from "
                    f"{corpus.url}); replace it with the original file or unset {ENV_VAR}"
                )
            return local
        where = "does not exist" if not folder.is_dir() else f"has no {corpus.filename}"
        hint = f"{ENV_VAR}={folder} {where}: put {corpus.filename} there. " + hint
    dest = Path(download_dir) / corpus.filename
    if dest.is_file() and sha256_of(dest.read_bytes()) == corpus.sha256:
        return dest
    try:
        return download(corpus.url, dest, corpus.sha256, timeout)
    except DownloadError as e:
        raise DownloadError(f"{e}\n{hint}") from e


def download(url: str, dest: str | Path, sha256: str, timeout: float = 30.0) -> Path:
    """Download url to dest (`write_atomic`: never left partly written), checking its sha256 before the
    file takes dest's name. ``timeout`` bounds each network operation (connect, each read), in seconds.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def fetch_verified(f) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
        except (OSError, http.client.HTTPException) as e:  # no network, DNS, timeout, reset, truncated
            reason = e.reason if isinstance(e, urllib.error.URLError) else repr(e)
            raise DownloadError(f"downloading {url} failed: {reason} (timeout {timeout:g} s)") from e
        if digest.hexdigest() != sha256:
            raise DownloadError(
                f"downloaded {url} ({size:,} bytes) has sha256 {digest.hexdigest()}, expected {sha256}; "
                f"the file at that address changed or the transfer was corrupted"
            )

    write_atomic(dest, fetch_verified)
    return dest
