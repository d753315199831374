"""data/tokenizers.py: char round trip and JSON state, GPT-2 BPE against reference ids."""

import json

import pytest
from helpers import TEXT, gpt2_or_skip

from data import corpora, tokenizers
from data.tokenizers import CharTokenizer, GPT2Tokenizer, get_tokenizer


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
        with pytest.raises(corpora.DownloadError, match=r"TIKTOKEN_CACHE_DIR(.|\n)*--tokenizer=char"):
            GPT2Tokenizer()
    finally:
        tokenizers.gpt2_encoding.cache_clear()
