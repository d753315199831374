"""Schemes that change attention itself instead of adding a position signal; each registers in
positional.POS_ENCODINGS (model.py imports this module) and works through the same hooks as the others.

    fox            FoX, the Forgetting Transformer (Lin et al., ICLR 2025): a forget gate per head and token,
                   f_t = sigmoid(w_h . x_t + b_h) from the layer's input (after the pre-norm); the logits get
                   D_ij = c_i - c_j, c_t = sum_{l <= t} log f_l (fp32), i.e. the sum of log f over the tokens
                   after the key up to the query. No other position signal. x-transformers' DataDependentAlibi
                   computes the same bias (tests/test_attention_mods.py).
    stickbreaking  Stick-breaking attention (Tan et al., ICLR 2025): beta_ij = sigmoid(q_i . k_j / sqrt(hs)),
                   A_ij = beta_ij prod_{j<l<i} (1 - beta_il), no softmax and no position signal; the nearest
                   key claims first (attention.stick_breaking, with the leftover to the query's own value).
    pope           PoPE, polar coordinate positions (Gopalakrishnan et al. 2025): each of the hs features of q
                   and k becomes a complex number of magnitude softplus(feature) and phase id * theta_c,
                   theta_c = 10000^(-c / hs) (hs frequencies, not RoPE's hs / 2), the keys' phase shifted
                   by a learned delta per kv head and frequency, clamped to [-2 pi, 0], zero at init, shared
                   by every layer (x-transformers' PolarEmbedding). q and k come out 2 hs wide ([real |
                   imaginary]), v stays hs wide, the scale stays 1 / sqrt(hs).

Past block_size: FoX's decay and stick-breaking's nearest-first order go on unchanged (they never saw a
position); PoPE's phases keep turning, unseen angles as RoPE's. Conventions of the papers' code where the
papers leave a choice: FoX's gate bias starts at 0 (the official code; x-transformers starts it at 5),
stick-breaking leaves out the query's own key (attend_current=False) and gives the rest of the stick to the
query's own value (the authors' reference tests).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from positional import PositionalEncoding, register


@register("fox")
class ForgettingAttention(PositionalEncoding):
    """FoX (module docstring): `gates[layer]` Linear(C, nh) with bias, initialised as the model's Linear
    layers (N(0, 0.02), bias 0: f = 0.5 at init, a strong recency bias). Its positions are the tokens' order
    (a cumulative sum over them), not ids. With a KV cache the cumulative sums of the cached tokens are kept
    in the cache's state, so decoding continues them exactly."""

    position_ids = "none"
    parameter_free = False
    adds_bias = True

    def __init__(self, config):
        super().__init__(config)
        self.gates = nn.ModuleList(nn.Linear(config.n_embd, config.n_head) for _ in range(config.n_layer))

    def _sums(self, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """c of the new tokens (B, nh, T) and of every key (B, nh, S), float32; kept in the cache's state."""
        log_f = F.logsigmoid(self.gates[ctx.layer](ctx.x).float()).transpose(1, 2)  # (B, nh, T)
        c = log_f.cumsum(-1)
        if ctx.cache is None:
            return c, c
        key = (ctx.layer, "fox")
        if key in ctx.cache.state:
            c = c + ctx.cache.state[key][..., -1:]  # continue the cached tokens' sum
        return c, ctx.cache.extend(key, c)

    def layer_bias(self, shared, q, k, ctx):
        c, c_keys = self._sums(ctx)
        return c[..., :, None] - c_keys[..., None, :]  # (B, nh, T, S): <= 0 where j <= i

    def score_mod(self, shared, q, k, ctx):
        c, c_keys = self._sums(ctx)

        def bias(b, h, i, j):
            return c[b, h, i] - c_keys[b, h, j]

        return bias


@register("stickbreaking")
class StickBreaking(PositionalEncoding):
    """Stick-breaking attention (module docstring): no position signal, attention normalises by
    stick-breaking instead of softmax (attention.stick_breaking); no parameters."""

    position_ids = "none"
    normalise = "stickbreaking"


@register("pope")
class PolarPositions(PositionalEncoding):
    """PoPE (module docstring): `phase_bias` (n_kv_head, hs), one for every layer. Angles in fp32; the
    scores depend on id_i - id_j only, so it takes any ids."""

    position_ids = "any"
    parameter_free = False

    def __init__(self, config):
        super().__init__(config)
        hs = config.head_size
        self.register_buffer("inv_freq", 10000.0 ** (-torch.arange(hs, dtype=torch.float32) / hs), False)
        self.phase_bias = nn.Parameter(torch.zeros(config.kv_heads, hs))

    def rotate(self, qk, pos, layer):
        ids = pos.query_ids(qk.device).float()  # (B | 1, T)
        phase = (ids[..., None] * self.inv_freq)[:, None]  # (B | 1, 1, T, hs)
        delta = self.phase_bias.clamp(-2 * math.pi, 0.0)[None, :, None]  # (1, nkv, 1, hs), keys only
        zeros = torch.zeros_like(delta[:, :1]).expand(-1, self.n_head, -1, -1)
        phase = phase + torch.cat((zeros, delta), dim=1)  # (B | 1, nh + nkv, T, hs)
        mu = F.softplus(qk.float())
        return torch.cat((mu * phase.cos(), mu * phase.sin()), dim=-1).to(qk.dtype)  # (B, nh + nkv, T, 2 hs)
