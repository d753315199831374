"""Shared test helpers: a small Unicode text, file writing, leftovers, the GPT-2 BPE or a skip, and
a tiny training corpus."""

import pydoc_data.topics
from pathlib import Path

import pytest
import torch

from data.corpora import DownloadError
from data.tokenizers import GPT2Tokenizer
from model import GPT, ModelConfig

REPO = Path(__file__).resolve().parents[1]
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


def model_for(pos_enc, seed=0, **kw) -> GPT:
    """`tiny`'s model in eval mode, initialised from `seed`."""
    torch.manual_seed(seed)
    return GPT(tiny(pos_enc, **kw)).eval()
