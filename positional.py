"""Positional encodings as strategy objects, registered by name; `ModelConfig.pos_enc` picks one.

`GPT.forward` calls the hooks of `transformer.wpe` unconditionally, so adding a scheme is a class and never
touches the forward pass. Once per forward: `embed` (token embeddings in, first block's input out) and
`attn_bias` (what every layer's bias is derived from). Once per layer: `rotate` (queries and keys) and
`layer_bias` (that layer's additive attention bias, from `attn_bias`'s and the layer's q, k and input). The
base class is NoPE, every hook the identity; a scheme overrides what its paper changes, and says through
class attributes what it takes (`position_ids`) and what attention does with it (`normalise`,
`extends_context`). This module holds the absolute and rotary schemes; attention_bias.py the attention-bias
family (alibi, t5, kerple, fire, cope) and attention_mods.py the schemes that change attention itself (fox,
stickbreaking, pope); both register here when imported (model.py imports them). Shapes: B batch, T new
tokens, S = cached + T keys, nh heads, hs head size.

Positions (`Positions`): by default token t of a sequence sits at position t (queries of a forward over a
KV cache of S - T tokens at S - T .. S - 1). A batch may carry explicit position ids (B, T) instead:
randomized positions (Ruoss et al. 2023), or ids a task sets (position coupling, data/tasks.py). Every
scheme reads them the same way: absolute tables index by them, rotary schemes rotate by them, relative
biases use id_i - id_j. Causality is by token order, never by id. A scheme takes explicit ids only of the
kind it can: `position_ids` is "any", "monotone" (ids that never decrease along a sequence, so that every
visible key is at a distance >= 0: the biases' causal forms), or "none" (CoPE counts its own positions).
"""

from __future__ import annotations  # ModelConfig is only imported for type checkers (no cycle)

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from rope import RotaryEmbedding, xpos_scale

if TYPE_CHECKING:
    from model import KVCache, ModelConfig

POS_ENCODINGS: dict[str, type[PositionalEncoding]] = {}
ID_KINDS = ("any", "monotone", "none")  # position ids a scheme takes, from the most to the least


def register(name: str):
    """Class decorator: add a PositionalEncoding subclass to POS_ENCODINGS under `name`."""

    def deco(cls):
        cls.name = name
        POS_ENCODINGS[name] = cls
        return cls

    return deco


@dataclass(frozen=True)
class Positions:
    """Where the T new tokens and the S keys (cached + new) sit: implicit (q, k None: keys at 0 .. S - 1,
    queries at S - T .. S - 1) or explicit ids, q (B, T) and k (B, S) int64."""

    q_len: int  # T
    k_len: int  # S
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None

    @property
    def offset(self) -> int:
        """The first query's token index (and position, when implicit)."""
        return self.k_len - self.q_len

    @property
    def explicit(self) -> bool:
        return self.q is not None

    def query_ids(self, device) -> torch.Tensor:
        """(B or 1, T) int64."""
        return self.q if self.explicit else torch.arange(self.offset, self.k_len, device=device)[None]

    def key_ids(self, device) -> torch.Tensor:
        """(B or 1, S) int64."""
        return self.k if self.explicit else torch.arange(self.k_len, device=device)[None]

    def distances(self, device) -> torch.Tensor:
        """id_i - id_j of every query i and key j: (B or 1, T, S) int64 (negative for the future, when ids
        are monotone)."""
        return self.query_ids(device)[:, :, None] - self.key_ids(device)[:, None, :]

    def causal(self, device) -> torch.Tensor:
        """(T, S) bool, True where key j may be seen by query i: j <= i in token order."""
        return torch.ones(self.q_len, self.k_len, dtype=torch.bool, device=device).tril(self.offset)


@dataclass
class LayerContext:
    """What a layer's `layer_bias` may need besides the shared bias and its q, k: the layer, its input x
    (B, T, C, after the pre-norm), the positions, which keys each query sees (`visible`, (T, S) bool: causal,
    and the layer's window; (B|1, 1, T, S) with an id window), and the KV cache (None without), for a
    scheme's own per-token state."""

    layer: int
    x: torch.Tensor
    pos: Positions
    visible: torch.Tensor
    cache: KVCache | None


class PositionalEncoding(nn.Module):
    """Base strategy = NoPE: every hook is the identity. Subclasses override what their paper changes.

    `max_len` is the longest sequence (or position id) the scheme can encode (None = any; M with randomized
    positions); `knobs` lists the ModelConfig fields the scheme reads; `position_ids` which explicit ids it
    takes (module docstring); `extends_context` whether evaluate.py applies rope.py's context-extension
    methods to it (its `rope_scaling` knob); `normalise` how attention turns scores into weights (softmax,
    or stickbreaking); `parameter_free` that it holds no parameters, so that DroPE can drop it and keep
    every weight; `adds_bias` that its layer_bias returns a bias.
    """

    knobs: tuple[str, ...] = ()
    position_ids = "monotone"
    extends_context = False
    normalise = "softmax"
    parameter_free = True
    adds_bias = False  # whether layer_bias returns one (what rules out SDPA's flash kernel)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.max_len = config.random_positions  # None unless randomized positions: then M
        self.n_head = config.n_head  # query heads come first in `rotate`'s qk

    @classmethod
    def validate(cls, config: ModelConfig) -> None:
        """Raise ValueError for config values this scheme cannot use."""

    def embed(self, x: torch.Tensor, pos: Positions) -> torch.Tensor:
        """x: token embeddings (B, T, C) at `pos` -> input of the first block."""
        return x

    def rotate(self, qk: torch.Tensor, pos: Positions, layer: int) -> torch.Tensor:
        """qk: the query heads then the key heads of `layer`, (B, nh + n_kv_head, T, hs), of the new tokens
        -> the same, position-encoded (a scheme may change the last dimension, as PoPE doubles it). One
        tensor, a view of the fused projection, so that RoPE rotates queries and keys in one call (docs/
        BENCH.md: cheaper than two)."""
        return qk

    def attn_bias(self, pos: Positions, device: torch.device):
        """Once per forward: what each layer's `layer_bias` starts from (None: nothing)."""
        return None

    def layer_bias(self, shared, q: torch.Tensor, k: torch.Tensor, ctx: LayerContext) -> torch.Tensor | None:
        """Once per layer: the additive bias of the attention scores, broadcastable to (B, nh, T, S) (its
        values at keys the query does not see are ignored: attention masks them), from `attn_bias`'s output,
        the layer's queries q (B, nh, T, hs) and keys k (B, nh, S, hs) (position-encoded, cached keys
        included) and `ctx`. None: no bias, which lets attention use its fastest kernels. Default: the
        shared bias as it is."""
        return shared

    def score_mod(self, shared, q: torch.Tensor, k: torch.Tensor, ctx: LayerContext):
        """The layer's bias as a function (b, h, i, j) -> bias_ij of scalar index tensors, for FlexAttention
        (flex.py), or None to have it read from layer_bias's tensor. Called instead of layer_bias, never
        with it."""
        return None


def _rows(table: torch.Tensor, pos: Positions) -> torch.Tensor:
    """Rows of an absolute table (n, C) at the new tokens' positions: (T, C), or (B, T, C) for ids."""
    return table[pos.q] if pos.explicit else table[pos.offset : pos.k_len]


def check_rows(scheme: str, rows: int, pos: Positions, rows_from: str) -> None:
    """ValueError when implicit positions run past an absolute table's rows (ids are sized by producers)."""
    if not pos.explicit and pos.k_len > rows:
        raise ValueError(
            f"pos_enc={scheme!r} has {rows} position rows ({rows_from}) but positions up to "
            f"{pos.k_len - 1} were asked for; use a relative scheme (rope, alibi, none) to go longer"
        )


@register("none")
class NoPE(PositionalEncoding):
    """NoPE: causal attention alone carries position (Kazemnejad et al. 2023). It ignores position ids."""

    position_ids = "any"


@register("learned")
class LearnedPositions(PositionalEncoding):
    """GPT-2's absolute table: `weight` (block_size, C) added to the token embeddings; with randomized
    positions it has M rows (rows past those drawn in training stay untrained). Cannot go past them; any
    ids below that index it."""

    position_ids = "any"
    parameter_free = False

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.max_len = config.random_positions or config.block_size
        self.rows_from = "random_positions" if config.random_positions else "block_size"
        self.weight = nn.Parameter(torch.empty(self.max_len, config.n_embd))
        nn.init.normal_(self.weight, mean=0.0, std=1.0 if config.init == "torch" else 0.02)  # nn.Embedding's

    def embed(self, x, pos):
        check_rows("learned", self.max_len, pos, self.rows_from)
        return x + _rows(self.weight, pos)  # (B, T, C) + (T, C) or (B, T, C)


@register("sinusoidal")
class SinusoidalPositions(PositionalEncoding):
    """Fixed absolute encoding of Vaswani et al. (2017, §3.5): PE[p, 2i] = sin(p / 10000^(2i/C)),
    PE[p, 2i+1] = cos(p / 10000^(2i/C)), added to the token embeddings. No parameters; any length.

    The table is scaled so its RMS equals the token embeddings' init std (0.02): Vaswani et al. keep
    the two on a par by scaling token embeddings up by sqrt(C); with GPT-2 init we scale PE down instead,
    otherwise position would drown the tokens at init.
    """

    scale = 0.02 * math.sqrt(2.0)  # RMS of sin/cos is 1/sqrt(2)
    position_ids = "any"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.n_embd = config.n_embd
        self.register_buffer("pe", self._table(self.max_len or config.block_size), persistent=False)

    def _table(self, n: int, device=None) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]  # (n, 1)
        two_i = torch.arange(0, self.n_embd, 2, dtype=torch.float32, device=device)  # 2i
        angles = pos * 10000.0 ** (-two_i / self.n_embd)  # (n, ceil(C/2))
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, : self.n_embd]  # (n, C)
        return self.scale * pe

    def embed(self, x, pos):
        if not pos.explicit and pos.k_len > self.pe.size(0):  # grow for evaluation past the table
            self.pe = self._table(max(pos.k_len, 2 * self.pe.size(0)), device=self.pe.device)
        return x + _rows(self.pe, pos)


def nope_layers(config: ModelConfig) -> frozenset[int]:
    """Layers of a rope model that use no positional encoding: every k-th (SmolLM3's
    `no_rope_layer_interval` = k: layer l is NoPE where (l + 1) % k == 0) or an explicit list (0, 3)."""
    interval, listed = config.rope_nope_interval, config.rope_nope_layers
    if interval is not None and listed is not None:
        raise ValueError("set rope_nope_interval or rope_nope_layers, not both")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= config.n_layer:
            raise ValueError(
                f"rope_nope_interval must be an integer in [1, n_layer={config.n_layer}] (every k-th layer "
                f"is NoPE; past n_layer none would be), got {interval!r}"
            )
        return frozenset(layer for layer in range(config.n_layer) if (layer + 1) % interval == 0)
    if listed is None:
        return frozenset()
    layers = list(listed)
    if not layers or any(not 0 <= x < config.n_layer for x in layers) or len(set(layers)) != len(layers):
        raise ValueError(
            f"rope_nope_layers must list distinct layer indices in [0, {config.n_layer - 1}] like 1,3, "
            f"got {listed!r}"
        )
    return frozenset(layers)


@register("rope")
class Rotary(PositionalEncoding):
    """RoPE (Su et al. 2021) on q and k in every layer but the NoPE ones (`nope_layers`); rope.py holds the
    maths and conventions (pairing, partial rotary `rope_dim`, p-RoPE `rope_fraction`, scaling)."""

    knobs = (
        "rope_base",
        "rope_dim",
        "rope_interleaved",
        "rope_scaling",
        "rope_fraction",
        "rope_nope_interval",
        "rope_nope_layers",
    )
    position_ids = "any"  # q.k depends on id_i - id_j whatever the ids
    extends_context = True

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.rotary = self._rotary(config, self.max_len or config.block_size)
        self.nope_layers = nope_layers(config)

    @staticmethod
    def _rotary(config: ModelConfig, max_seq_len: int) -> RotaryEmbedding:
        return RotaryEmbedding(
            config.head_size,
            base=10000.0 if config.rope_base is None else config.rope_base,
            rotary_dim=config.rope_dim,
            interleaved=bool(config.rope_interleaved),
            scaling=config.rope_scaling,
            max_seq_len=max_seq_len,
            fraction=1.0 if config.rope_fraction is None else config.rope_fraction,
        )

    @classmethod
    def validate(cls, config):
        if config.head_size % 2:
            raise ValueError(
                f"pos_enc={cls.name!r} needs an even head size, got n_embd / n_head = {config.n_embd} / "
                f"{config.n_head} = {config.head_size}"
            )
        cls._rotary(config, max_seq_len=1)  # rope.py names any bad rope_* value
        nope_layers(config)
        if config.random_positions is not None and config.rope_scaling is not None:
            raise ValueError("random_positions and rope_scaling are two answers to one question; pick one")

    def rotate(self, qk, pos, layer):
        return qk if layer in self.nope_layers else self.rotary(qk, pos.q if pos.explicit else pos.offset)


@register("xpos")
class XPos(Rotary):
    """xPos (Sun et al. 2022): RoPE whose query pairs are scaled by zeta_i^(m / scale_base) and key pairs by
    zeta_i^(-n / scale_base) (rope.xpos_scale), so that q.k decays with the distance m - n. Causal decoders
    only: for a key after the query (n > m) the factor grows without bound, which a causal mask never lets
    through. Every rope knob applies; xpos_scale_base (default 512, the paper's) sets the decay's scale."""

    knobs = (*Rotary.knobs, "xpos_scale_base")
    position_ids = "monotone"  # a key with a larger id than its query would be amplified, not decayed

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.scale_base = 512.0 if config.xpos_scale_base is None else config.xpos_scale_base

    @classmethod
    def validate(cls, config):
        super().validate(config)
        base = config.xpos_scale_base
        number = isinstance(base, int | float) and not isinstance(base, bool)
        if base is not None and not (number and 0 < base < math.inf):
            raise ValueError(f"xpos_scale_base must be a positive number, got {base!r}")

    def rotate(self, qk, pos, layer):
        if layer in self.nope_layers:
            return qk
        d = self.rotary.rotary_dim
        up = xpos_scale(d, pos.query_ids(qk.device), self.scale_base, self.rotary.interleaved)  # (B|1, T, d)
        up = up.unsqueeze(-3)  # (B or 1, 1, T, d)
        n_kv = qk.size(1) - self.n_head  # queries up, keys down:
        factor = torch.cat((up.expand(-1, self.n_head, -1, -1), (1 / up).expand(-1, n_kv, -1, -1)), dim=1)
        factor = factor.to(qk.dtype)  # (B or 1, nh + n_kv, T, d)
        rotated = self.rotary(qk, pos.q if pos.explicit else pos.offset)
        if d == qk.size(-1):
            return rotated * factor
        return torch.cat((rotated[..., :d] * factor, rotated[..., d:]), dim=-1)
