"""Corpora, tokenizers and the prepare step that turns a text into train.bin / val.bin / meta.json."""
