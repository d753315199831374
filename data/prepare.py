"""Turn a corpus into data/<name>_<tokenizer>/{train.bin, val.bin, meta.json}.

    python -m data.prepare --dataset=shakespeare --tokenizer=char

The text is split 90/10 by characters (train first, as nanoGPT does) and each part is tokenized on its own.
The .bin files are raw uint16 token ids (``np.memmap(path, dtype=np.uint16, mode="r")``); meta.json holds
the tokenizer state, the source's sha256 and the token counts. train.py calls ``prepare`` itself, so this
script is only needed to prepare ahead of time. Every file is written to a temporary name and renamed into
place, meta.json last, so an interrupted run never leaves a half-written dataset that looks complete.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cli import parse_cli, run_main
from configurator import Config
from data import corpora
from data.tokenizers import TOKENIZERS, new_tokenizer
from files import folder_lock, write_atomic, write_text

DATA_DIR = Path(__file__).resolve().parent
TRAIN_FRACTION = 0.9


def load_meta(folder: str | Path) -> dict:
    """The parsed meta.json of a prepared dataset folder."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise ValueError(
            f"{path} not found: prepare the dataset first (python -m data.prepare --dataset=...)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_splits(folder: str | Path) -> tuple[dict, dict[str, np.memmap]]:
    """(meta.json, {"train": ids, "val": ids}) of a prepared dataset folder, the ids memory-mapped."""
    meta = load_meta(folder)
    return meta, {
        s: np.memmap(Path(folder) / f"{s}.bin", dtype=meta["dtype"], mode="r") for s in ("train", "val")
    }


def _is_prepared(folder: Path, tokenizer: str, sha256: str) -> bool:
    try:
        meta = load_meta(folder)
    except ValueError:
        return False
    return (
        meta.get("tokenizer") == tokenizer
        and meta.get("source_sha256") == sha256
        and all(
            (folder / f"{split}.bin").is_file()
            and (folder / f"{split}.bin").stat().st_size == 2 * meta.get(f"{split}_tokens", -1)
            for split in ("train", "val")
        )
    )


def folder_of(dataset: str, tokenizer: str, data_dir: str | Path = DATA_DIR) -> Path:
    """Where `dataset` prepared with `tokenizer` lives: data_dir/<name>_<tokenizer> (corpora.folder_name)."""
    return Path(data_dir) / f"{corpora.folder_name(dataset)}_{tokenizer}"


def prepare(dataset: str, tokenizer: str, data_dir: str | Path = DATA_DIR, force: bool = False) -> Path:
    """Make sure ``data_dir/<name>_<tokenizer>/{train.bin,val.bin,meta.json}`` exist and return that folder.

    Prepared on first use; reused while its meta.json records the same tokenizer and source sha256.

    Args:
        dataset: a registered name (``pydocs``, ``shakespeare``, ``verdict``) or a path to a UTF-8 text
            file, whose stem and a digest of its path then name the folder.
        tokenizer: ``"char"`` or ``"gpt2"``.
        data_dir: where prepared folders live; downloads go to ``data_dir/downloads``.
        force: prepare again even if an up-to-date folder exists.

    Returns:
        The folder. Its meta.json has ``dataset``, ``tokenizer``, ``vocab_size``, ``chars`` (char only),
        ``source``, ``source_sha256``, ``train_tokens``, ``val_tokens`` and ``dtype`` (``"uint16"``).
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}: use one of {', '.join(TOKENIZERS)}")
    data_dir, name = Path(data_dir), corpora.folder_name(dataset)
    folder = folder_of(dataset, tokenizer, data_dir)
    # A registered download is known by its checksum: reuse without looking for the raw file again.
    if (
        not force
        and dataset in corpora.REMOTE
        and _is_prepared(folder, tokenizer, corpora.REMOTE[dataset].sha256)
    ):
        return folder

    raw, source = corpora.read(dataset, data_dir / "downloads")
    sha256 = corpora.sha256_of(raw)
    if not force and _is_prepared(folder, tokenizer, sha256):
        return folder
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{source} is not UTF-8 text (invalid byte at offset {e.start}); convert it to UTF-8 first"
        ) from None
    if not text:
        raise ValueError(f"{source} is empty")
    if len(text) < 10:
        raise ValueError(
            f"{source} has {len(text)} characters; need at least 10 so that val (10%) is non-empty"
        )

    tok = new_tokenizer(tokenizer, text)
    if tok.vocab_size > 2**16:
        raise ValueError(f"{source} has {tok.vocab_size} distinct characters; uint16 ids allow at most 65536")
    n = int(len(text) * TRAIN_FRACTION)
    splits = {"train": text[:n], "val": text[n:]}
    ids = {split: np.array(tok.encode(part), dtype=np.uint16) for split, part in splits.items()}

    # One writer at a time (another process may be preparing the same folder: wait, then reuse its work).
    with folder_lock(folder, "", wait=True):
        if not force and _is_prepared(folder, tokenizer, sha256):
            return folder
        # Remove the old meta first: until the new one lands, the folder does not count as prepared.
        (folder / "meta.json").unlink(missing_ok=True)
        for split, arr in ids.items():
            write_atomic(folder / f"{split}.bin", arr.tofile)
        write_text(
            folder / "meta.json", json.dumps(_meta(name, tok, source, sha256, ids), ensure_ascii=False) + "\n"
        )
    return folder


def _meta(name: str, tok, source: str, sha256: str, ids: dict) -> dict:
    return {
        "dataset": name,
        **tok.state(),  # "tokenizer", plus "chars" for char
        "vocab_size": tok.vocab_size,
        "source": source,
        "source_sha256": sha256,
        "train_tokens": len(ids["train"]),
        "val_tokens": len(ids["val"]),
        "dtype": "uint16",
    }


@dataclass(frozen=True)
class PrepareConfig(Config):
    """The command line of `python -m data.prepare`."""

    dataset: str = "pydocs"  # a registered corpus name or a path to a UTF-8 text file
    tokenizer: str = "char"  # char or gpt2
    data_dir: str | None = None  # where prepared folders live; None -> data/
    force: bool = False  # prepare again even if up to date


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_cli(argv, __doc__, PrepareConfig, presets=False)[0]
    folder = prepare(cfg.dataset, cfg.tokenizer, cfg.data_dir or DATA_DIR, cfg.force)
    meta = load_meta(folder)
    print(
        f"{folder}: vocab {meta['vocab_size']:,}, train {meta['train_tokens']:,} tokens, "
        f"val {meta['val_tokens']:,} tokens ({meta['source']})"
    )


if __name__ == "__main__":
    run_main(main)
