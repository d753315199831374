"""Tokenizers: ``char`` (one id per distinct character) and ``gpt2`` (GPT-2's byte-level BPE, via tiktoken).

A tokenizer is rebuilt from a prepared dataset's meta.json with ``get_tokenizer(meta)``; its whole
state is JSON (the sorted character list for ``char``, nothing for ``gpt2``), never pickle.
"""

import functools

from data.corpora import DownloadError

TOKENIZERS = ("char", "gpt2")


class CharTokenizer:
    """Ids are positions in the sorted list of distinct characters of the whole corpus (nanoGPT's scheme)."""

    def __init__(self, chars: list[str]):
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = list(chars)
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            raise ValueError(
                f"characters {unknown} are not in this {self.vocab_size}-character vocabulary; "
                f"use only characters from the training text"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def state(self) -> dict:
        return {"tokenizer": "char", "chars": self.chars}


@functools.cache
def gpt2_encoding():
    """tiktoken's GPT-2 BPE, from its cache when offline.

    ``r50k_base`` is tried first: it has the same ranks, split pattern and ``<|endoftext|>`` id (50256) as
    tiktoken's ``gpt2`` encoding but lives in one cached file (``gpt2`` needs two), so one cached copy
    serves offline use. ``gpt2`` is the fallback for a cache that holds only that one.
    """
    import tiktoken

    errors = []
    for name in ("r50k_base", "gpt2"):
        try:
            return tiktoken.get_encoding(name)
        except Exception as e:  # requests' ConnectionError, a hash mismatch, ...: all mean "not available"
            errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
    raise DownloadError(
        "the GPT-2 tokenizer is not available: tiktoken could not load 'r50k_base' or 'gpt2' from its cache "
        "or download them.\n  " + "\n  ".join(errors) + "\nEither go online once (tiktoken then caches "
        "the files), or set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cache entry for r50k_base "
        "(file 0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4), or train with --tokenizer=char."
    )


class GPT2Tokenizer:
    """GPT-2 BPE with 50257 ids. Text is encoded as ordinary text: a literal "<|endoftext|>" in a corpus
    becomes plain tokens, never the special id ``eot_token`` (50256), which is reserved for the caller.
    `enc`: a tiktoken Encoding (from a checkpoint, `bpe_from_meta`); None: tiktoken's, from its cache."""

    def __init__(self, enc=None):
        self.enc = enc or gpt2_encoding()
        self.vocab_size = self.enc.n_vocab  # 50257
        self.eot_token = self.enc.eot_token  # 50256

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def state(self) -> dict:
        return {"tokenizer": "gpt2"}


def checkpoint_meta(meta: dict) -> dict:
    """`meta` as a checkpoint keeps it: for GPT-2 BPE with the BPE itself (ranks as byte strings in rank
    order, their split pattern), so that sampling and export need neither tiktoken's cache nor a network.
    Stored as tensors and strings: a weights_only checkpoint holds nothing else (0.8 MB)."""
    if meta.get("tokenizer") != "gpt2" or "bpe_bytes" in meta:
        return meta
    import torch  # only here: data preparation does not need it

    enc = gpt2_encoding()
    tokens = sorted(enc._mergeable_ranks, key=enc._mergeable_ranks.get)  # rank order: 0 .. 50255
    joined = torch.frombuffer(bytearray(b"".join(tokens)), dtype=torch.uint8)
    lengths = torch.tensor([len(t) for t in tokens], dtype=torch.int32)
    return meta | {"bpe_bytes": joined, "bpe_lengths": lengths, "bpe_pattern": enc._pat_str}


def bpe_from_meta(meta: dict):
    """The tiktoken Encoding a checkpoint's meta holds (checkpoint_meta), or None if it holds none."""
    if "bpe_bytes" not in meta:
        return None
    import tiktoken

    data, ranks, at = bytes(meta["bpe_bytes"].tolist()), {}, 0
    for rank, n in enumerate(meta["bpe_lengths"].tolist()):
        ranks[data[at : at + n]] = rank
        at += n
    special = {"<|endoftext|>": len(ranks)}  # 50256, after the ranks, as in GPT-2
    return tiktoken.Encoding(
        "gpt2", pat_str=meta["bpe_pattern"], mergeable_ranks=ranks, special_tokens=special
    )


def new_tokenizer(name: str, text: str):
    """A tokenizer fitted to ``text`` (only ``char`` depends on it)."""
    if name == "char":
        return CharTokenizer.from_text(text)
    if name == "gpt2":
        return GPT2Tokenizer()
    raise ValueError(f"unknown tokenizer {name!r}: use one of {', '.join(TOKENIZERS)}")


def get_tokenizer(meta: dict):
    """Rebuild the tokenizer described by a meta.json dict (keys ``tokenizer`` and, for char, ``chars``).

    Returns an object with ``encode(str) -> list[int]``, ``decode(list[int]) -> str`` and ``vocab_size``.
    """
    name = meta.get("tokenizer")
    if name == "char":
        return CharTokenizer(meta["chars"])
    if name == "gpt2":
        return GPT2Tokenizer(bpe_from_meta(meta))
    raise ValueError(f"unknown tokenizer {name!r} in meta: use one of {', '.join(TOKENIZERS)}")
