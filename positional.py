"""Positional encodings as strategy objects, registered by name; `ModelConfig.pos_enc` picks one.

`GPT.forward` calls the hooks of `transformer.wpe` unconditionally, so adding a scheme is a class and never
touches the forward pass. Once per forward: `embed` (token embeddings in, first block's input out) and
`attn_bias` (the mask or bias every layer starts from). Once per layer: `rotate` (queries and keys) and
`layer_bias` (that layer's SDPA mask, from `attn_bias`'s and the layer's q and k). The base class is NoPE,
every hook the identity; a scheme overrides what its paper changes. This module holds the absolute and
rotary schemes; attention_bias.py the attention-bias family (alibi, t5, kerple, fire, cope), which
registers here when imported (model.py imports it). Shapes: B batch, T new positions, S = offset + T keys,
nh heads, hs head size.
"""

from __future__ import annotations  # ModelConfig is only imported for type checkers (no cycle)

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from rope import RotaryEmbedding

if TYPE_CHECKING:
    from model import ModelConfig

POS_ENCODINGS: dict[str, type[PositionalEncoding]] = {}


def register(name: str):
    """Class decorator: add a PositionalEncoding subclass to POS_ENCODINGS under `name`."""

    def deco(cls):
        cls.name = name
        POS_ENCODINGS[name] = cls
        return cls

    return deco


class PositionalEncoding(nn.Module):
    """Base strategy = NoPE: every hook is the identity. Subclasses override what their paper changes.

    `max_len` is the longest sequence the scheme can encode (None = any length); `knobs` lists the
    ModelConfig fields the scheme reads.
    """

    knobs: tuple[str, ...] = ()
    max_len: int | None = None

    def __init__(self, config: ModelConfig):
        super().__init__()

    @classmethod
    def validate(cls, config: ModelConfig) -> None:
        """Raise ValueError for config values this scheme cannot use."""

    def embed(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """x: token embeddings (B, T, C) of positions offset..offset+T-1 -> input of the first block."""
        return x

    def rotate(self, qk: torch.Tensor, offset: int, layer: int) -> torch.Tensor:
        """qk: queries and keys of `layer` stacked, (2, B, nh, T, hs), at positions offset..offset+T-1 ->
        the same, position-encoded. Stacked so that RoPE rotates both in one call (docs/BENCH.md: cheaper
        than two)."""
        return qk

    def attn_bias(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        """Once per forward, for queries at positions k_len-q_len..k_len-1 over keys 0..k_len-1: the mask
        every layer starts from, broadcastable to (B, nh, q_len, k_len), bool (True = attend) or float
        (added to the scores, causal -inf folded in), or whatever the scheme's `layer_bias` derives each
        layer's mask from. None means plain causal attention (q_len == k_len), which lets SDPA use its
        fastest kernels."""
        if q_len == k_len:
            return None
        return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)

    def layer_bias(self, bias, q: torch.Tensor, k: torch.Tensor, layer: int) -> torch.Tensor | None:
        """Once per layer: SDPA's attn_mask for `layer`, from `attn_bias`'s output and the layer's queries
        q (B, nh, T, hs) and keys k (B, nh, S, hs) (position-encoded, cached keys included). Default: the
        shared mask as it is."""
        return bias


@register("none")
class NoPE(PositionalEncoding):
    """NoPE: causal attention alone carries position (Kazemnejad et al. 2023)."""


@register("learned")
class LearnedPositions(PositionalEncoding):
    """GPT-2's absolute table: `weight` (block_size, C) added to the token embeddings. Cannot go past
    block_size."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.max_len = config.block_size
        self.weight = nn.Parameter(torch.empty(config.block_size, config.n_embd))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def embed(self, x, offset):
        T = x.size(1)
        if offset + T > self.max_len:
            raise ValueError(
                f"pos_enc='learned' has {self.max_len} position rows (block_size) but positions up to "
                f"{offset + T - 1} were asked for; use a relative scheme (rope, alibi, none) to go longer"
            )
        return x + self.weight[offset : offset + T]  # (B, T, C) + (T, C)


@register("sinusoidal")
class SinusoidalPositions(PositionalEncoding):
    """Fixed absolute encoding of Vaswani et al. (2017, §3.5): PE[p, 2i] = sin(p / 10000^(2i/C)),
    PE[p, 2i+1] = cos(p / 10000^(2i/C)), added to the token embeddings. No parameters; any length.

    The table is scaled so its RMS equals the token embeddings' init std (0.02): Vaswani et al. keep
    the two on a par by scaling token embeddings up by sqrt(C); with GPT-2 init we scale PE down instead,
    otherwise position would drown the tokens at init.
    """

    scale = 0.02 * math.sqrt(2.0)  # RMS of sin/cos is 1/sqrt(2)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.n_embd = config.n_embd
        self.register_buffer("pe", self._table(config.block_size), persistent=False)

    def _table(self, n: int, device=None) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]  # (n, 1)
        two_i = torch.arange(0, self.n_embd, 2, dtype=torch.float32, device=device)  # 2i
        angles = pos * 10000.0 ** (-two_i / self.n_embd)  # (n, ceil(C/2))
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, : self.n_embd]  # (n, C)
        return self.scale * pe

    def embed(self, x, offset):
        T = x.size(1)
        if offset + T > self.pe.size(0):  # grow for evaluation past the training length
            self.pe = self._table(max(offset + T, 2 * self.pe.size(0)), device=self.pe.device)
        return x + self.pe[offset : offset + T]


@register("rope")
class Rotary(PositionalEncoding):
    """RoPE (Su et al. 2021) on q and k in every layer; see rope.py for the convention."""

    knobs = ("rope_base", "rope_dim", "rope_interleaved", "rope_scaling")

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.rotary = self._rotary(config, config.block_size)

    @staticmethod
    def _rotary(config: ModelConfig, max_seq_len: int) -> RotaryEmbedding:
        return RotaryEmbedding(
            config.head_size,
            base=10000.0 if config.rope_base is None else config.rope_base,
            rotary_dim=config.rope_dim,
            interleaved=bool(config.rope_interleaved),
            scaling=config.rope_scaling,
            max_seq_len=max_seq_len,
        )

    @classmethod
    def validate(cls, config):
        if config.head_size % 2:
            raise ValueError(
                f"pos_enc='rope' needs an even head size, got n_embd / n_head = {config.n_embd} / "
                f"{config.n_head} = {config.head_size}"
            )
        cls._rotary(config, max_seq_len=1)  # rope.py names any bad rope_* value

    def rotate(self, qk, offset, layer):
        return self.rotary(qk, offset)
