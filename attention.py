"""Attention from what a layer's scheme and options contribute: the scores are

    logits_ij = scale * g_i * (q_i . k_j) + bias_ij        for the keys j that query i sees, -inf elsewhere

normalised by softmax, optionally with a learned sink logit per head joining it (gpt-oss: the sink's column
is dropped after the softmax, so a row's weights sum to less than 1), or by stick-breaking (Tan et al. 2025).
`Spec` holds one layer's contributions: `bias` from the positional encoding (positional.layer_bias), the
keys each query sees (`visible`: causal, a sliding window's last `window` tokens, and with `id_window` D
only the keys whose position id is within D of the query's, |id_i - id_j| <= D), `gain` g (SSMax,
Nakanishi 2025: s_h log n_i, n_i the number of keys query i sees), the `sink` logits, the `scale` (1 /
sqrt(head size); PoPE's q and k are twice as wide as the head) and the normalisation.

`attend` runs it through SDPA: plain causal attention takes SDPA's `is_causal` (flash kernels); anything
else one float mask (the bias with -inf where a key is not seen) and a sink as one more key and value of
zeros whose mask column holds the sink logit. Stick-breaking has no SDPA form and takes `weights`, the
explicit path, which also serves diagnostics (the probabilities of one layer, (B, nh, T, S)).
"""

from __future__ import annotations  # ModelConfig is only imported for type checkers (no cycle)

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from flex import choose, flex_attend
from positional import LayerContext, PositionalEncoding, Positions

if TYPE_CHECKING:
    from model import ModelConfig

NORMALISATIONS = ("softmax", "stickbreaking")


@dataclass
class Spec:
    """One layer's attention (module docstring). Shapes broadcast to (B, nh, T, S)."""

    T: int
    S: int
    scale: float
    visible: torch.Tensor | None = None  # (T, S) or (B|1, 1, T, S) bool; None: causal (j <= i + S - T)
    bias: torch.Tensor | None = None  # float, added to the scaled scores
    gain: torch.Tensor | None = None  # (B|1, nh, T, 1) multiplier of q.k (not of the bias)
    sink: torch.Tensor | None = None  # (nh,) logits joining each softmax
    normalise: str = "softmax"
    score_mod: Callable | None = None  # the bias as a function of (b, h, i, j), for FlexAttention (flex.py)

    @property
    def plain(self) -> bool:
        """Causal softmax attention and nothing else: SDPA's is_causal."""
        return (
            self.visible is None
            and self.bias is None
            and self.score_mod is None
            and self.sink is None
            and self.T == self.S
            and self.normalise == "softmax"
        )

    def seen(self, device) -> torch.Tensor:
        """(T, S) or (B|1, 1, T, S) bool: which keys each query sees."""
        if self.visible is not None:
            return self.visible
        return torch.ones(self.T, self.S, dtype=torch.bool, device=device).tril(self.S - self.T)


def visible_keys(pos: Positions, window: int | None, id_window: int | None, device) -> torch.Tensor | None:
    """Which keys each query of a layer sees: causal, with a sliding window only the last `window` keys up
    to the query itself (j > i - window), with an id window only those whose position id is within
    `id_window` of the query's (|id_i - id_j| <= id_window: with implicit ids a window of id_window + 1
    tokens; with a task's ids, such as coupled ones that go back and forth, a window in id space). (T, S)
    bool, (B|1, 1, T, S) with an id window, None for plain causal attention."""
    if window is None and id_window is None:
        return None
    seen = pos.causal(device)
    if window is not None:
        i = torch.arange(pos.offset, pos.k_len, device=device)[:, None]
        seen = seen & (torch.arange(pos.k_len, device=device) > i - window)
    if id_window is not None:
        seen = seen & (pos.distances(device).abs() <= id_window)[:, None]
    return seen


def ssmax_gain(s: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """SSMax's multiplier s_h * log n_i, n_i the number of keys query i sees (i + 1 when causal, at most the
    window with one), from `seen` (T, S) or (B|1, 1, T, S): (B|1, nh, T, 1)."""
    n = seen.sum(-1, dtype=torch.float32)  # (T,) or (B|1, 1, T)
    return s.float()[None, :, None, None] * n.log().view(-1, 1, seen.size(-2), 1)


def _logits(q: torch.Tensor, k: torch.Tensor, spec: Spec) -> torch.Tensor:
    """(B, nh, T, S) float32 scores with -inf at keys not seen."""
    scores = spec.scale * (q.float() @ k.float().transpose(-2, -1))
    if spec.gain is not None:
        scores = scores * spec.gain
    if spec.bias is not None:
        scores = scores + spec.bias.float()
    return scores.masked_fill(~spec.seen(q.device), float("-inf"))


def stick_breaking(logits: torch.Tensor) -> torch.Tensor:
    """Stick-breaking weights from logits (B, nh, T, S) with -inf at unseen keys (Tan et al. 2025):
    beta_ij = sigmoid(z_ij), A_ij = beta_ij * prod over the seen keys l between them (j < l < i) of
    (1 - beta_il), in log space: the nearest key breaks the stick first. A query does not break its own key
    (the reference's attend_current=False), so a row's weights sum to at most 1; attend gives the rest to
    the query's own value."""
    return StickBreaking.apply(logits)


class StickBreaking(torch.autograd.Function):
    """stick_breaking with its backward written out: with g = dA * A (the gradient of log A), a key's logit
    gets g_ij - beta_ij * (g summed over keys j' <= j), since z_ij enters log A_ij' as log beta for j' = j and
    as log(1 - beta) for the keys j' < j it lies between. 1.4x faster than autograd through the same ops,
    forward and backward of a layer at the baby shape on the 2-core CPU (docs/BENCH.md)."""

    @staticmethod
    def forward(ctx, logits):
        T, S = logits.shape[-2:]
        own = torch.arange(S, device=logits.device) == torch.arange(S - T, S, device=logits.device)[:, None]
        idle = own | ~torch.isfinite(logits)  # the keys that do not break the stick
        z = logits.masked_fill(idle, 0.0)
        log_beta = F.logsigmoid(z)
        log_rest = (log_beta - z).masked_fill_(idle, 0.0)  # log(1 - beta) = log sigmoid(-z); 0: no break
        after = log_rest.flip(-1).cumsum(-1).flip(-1).sub_(log_rest)  # the sum over keys l > j
        weights = log_beta.add_(after).exp_().masked_fill_(idle, 0.0)
        ctx.save_for_backward(weights, z, idle)
        return weights

    @staticmethod
    @once_differentiable  # a first derivative only: double backward raises, it is not silently wrong
    def backward(ctx, grad):
        weights, z, idle = ctx.saved_tensors
        g = grad * weights
        return (g - torch.sigmoid(z).mul_(g.cumsum(-1))).masked_fill_(idle, 0.0)


def weights(q: torch.Tensor, k: torch.Tensor, spec: Spec) -> torch.Tensor:
    """The attention weights, (B, nh, T, S) float32, explicitly: what `attend` multiplies the values by
    (softmax with the sink's column dropped, or stick-breaking's). One layer's worth: diagnostics call it
    layer by layer."""
    logits = _logits(q, k, spec)
    if spec.normalise == "stickbreaking":
        return stick_breaking(logits)
    if spec.sink is None:
        return torch.softmax(logits, dim=-1)
    sink = spec.sink.float()[None, :, None, None].expand(*logits.shape[:-1], 1)
    return torch.softmax(torch.cat((logits, sink), dim=-1), dim=-1)[..., :-1]


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: Spec, dropout: float = 0.0, kernel: str = "sdpa"
) -> torch.Tensor:
    """softmax or stick-breaking attention of q (B, nh, T, E) over k (B, nh, S, E) and v (B, nh, S, hs):
    (B, nh, T, hs) in q's dtype (module docstring), through SDPA or (kernel="flex") FlexAttention."""
    if spec.normalise == "stickbreaking":
        w = weights(q, k, spec)
        y = w @ v.float()
        own = v[:, :, spec.S - spec.T :].float()  # the rest of each stick goes to the query's own value
        y = y + (1 - w.sum(-1, keepdim=True)) * own
        return F.dropout(y, dropout).to(q.dtype)
    if kernel == "flex":
        return flex_attend(q, k, v, spec, dropout)
    if spec.gain is not None:
        q = q * spec.gain.to(q.dtype)
    if spec.plain:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=spec.scale)
    seen = spec.seen(q.device)
    if spec.bias is None and spec.sink is None:  # a bool mask keeps SDPA's fused kernels
        return F.scaled_dot_product_attention(q, k, v, attn_mask=seen, dropout_p=dropout, scale=spec.scale)
    bias = spec.bias if spec.bias is not None else torch.zeros((), device=q.device)
    mask = torch.where(seen, bias, float("-inf"))  # (B|1, nh|1, T, S)
    if mask.dim() < 4:
        mask = mask.expand(1, 1, spec.T, spec.S)
    if spec.sink is not None:  # one more key and value of zeros; its mask column is the sink logit
        mask = mask.expand(mask.size(0), q.size(1), -1, -1)
        mask = torch.cat(
            (spec.sink[None, :, None, None].expand(mask.size(0), -1, spec.T, 1).to(mask.dtype), mask), -1
        )
        k = torch.cat((k.new_zeros(*k.shape[:2], 1, k.size(-1)), k), dim=2)
        v = torch.cat((v.new_zeros(*v.shape[:2], 1, v.size(-1)), v), dim=2)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.to(q.dtype), dropout_p=dropout, scale=spec.scale
    )


def default_scale(head_size: int) -> float:
    return 1.0 / math.sqrt(head_size)


class CausalSelfAttention(nn.Module):
    """One layer's attention: the fused q, k, v projection, QK-norm, the scheme's rotation and bias, the
    layer's window, sink and SSMax scale, grouped-query attention, the KV cache, and `attend`."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.n_kv, self.dropout = (
            layer,
            config.n_head,
            config.kv_heads,
            config.dropout,
        )
        hs = config.head_size  # q, k, v of all heads:
        self.scale, self.window, self.attention = default_scale(hs), config.windowed(layer), config.attention
        self.id_window = config.id_window
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv) * hs, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        # QK-norm (nanochat): parameter-free RMSNorm of each head's q and k. Applied before the positional
        # encoding: it commutes with a rotation (norms are kept), so for rope this is nanochat's order
        # (after RoPE) exactly, while for xpos it keeps the distance decay that normalising after would undo.
        self.qk_norm = nn.RMSNorm(hs, elementwise_affine=False) if config.qk_norm else nn.Identity()
        # a sink at logit 0 is one more key whose score is 0 (x-transformers' init); SSMax's s starts at
        # 1 / ln(block_size): the usual logits for a query that sees block_size keys
        self.sink = nn.Parameter(torch.zeros(self.n_head)) if config.attn_sink else None
        self.ssmax = (
            nn.Parameter(torch.full((self.n_head,), 1 / math.log(max(2, config.block_size))))
            if config.ssmax
            else None
        )

    def kernel_for(self, pe: PositionalEncoding, device) -> str:
        """SDPA or FlexAttention for this layer (ModelConfig.attention; flex.choose)."""
        needs_mask = (
            pe.adds_bias
            or self.window is not None
            or self.id_window is not None
            or self.sink is not None
            or self.ssmax is not None
        )
        return choose(self.attention, needs_mask and pe.normalise == "softmax", device)

    def forward(self, x, pe: PositionalEncoding, shared, pos: Positions, cache=None, observe=None):
        B, T, C = x.size()
        nh, nkv = self.n_head, self.n_kv
        # c_attn's output is [q | k | v], each [head 0 | head 1 | ...]: all heads on one axis, a view
        qkv = self.c_attn(x).view(B, T, nh + 2 * nkv, C // nh).transpose(1, 2)  # (B, nh + 2 nkv, T, hs)
        qk, v = qkv.split((nh + nkv, nkv), dim=1)  # split, not indexing: its backward is one cat
        q, k = pe.rotate(self.qk_norm(qk), pos, self.layer).split((nh, nkv), dim=1)  # (B, nh | nkv, T, E)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nkv, S, E | hs)
        if nkv != nh:  # grouped-query attention: kv head j serves query heads j * nh/nkv .. (as HF repeat_kv)
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        visible = visible_keys(pos, self.window, self.id_window, x.device)
        seen = visible if visible is not None else pos.causal(x.device)
        ctx = LayerContext(self.layer, x, pos, seen, cache)
        gain = None if self.ssmax is None else ssmax_gain(self.ssmax, seen)
        kernel = self.kernel_for(pe, x.device) if observe is None else "sdpa"  # diagnostics read the bias
        mod = pe.score_mod(shared, q, k, ctx) if kernel == "flex" else None  # computed where it is needed
        bias = None if mod is not None else pe.layer_bias(shared, q, k, ctx)
        spec = Spec(T, pos.k_len, self.scale, visible, bias, gain, self.sink, pe.normalise, mod)
        if observe is not None:
            observe(self.layer, weights(q, k, spec))
        y = attend(q, k, v, spec, self.dropout if self.training else 0.0, kernel)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
