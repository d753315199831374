"""FlexAttention (torch.nn.attention.flex_attention) as the second kernel path of attention.py: one call for
every softmax scheme and option, the layer's bias as a `score_mod`, the keys it sees as a block mask.

    logits_ij = scale * g_i * (q_i . k_j) + bias_ij    -> score_mod(score, b, h, i, j)
    keys seen (causal, a window, an id window)         -> mask_mod(b, h, i, j), a BlockMask
    a sink logit a_h joining the softmax               -> out * sigmoid(lse_i - a_h) (flex's log-sum-exp)

A scheme may give its bias as a function of (b, h, i, j) (`PositionalEncoding.score_mod`: ALiBi, KERPLE, FoX,
computed where the kernel needs it, never as a (T, S) tensor); any other bias is read from the tensor
`layer_bias` returns. Stick-breaking has no softmax, so it keeps its explicit path.

What torch 2.13 allows, measured on this repo's CPU: FlexAttention runs forward on CPU, eager or compiled
(the first compile of a shape takes ~30 s), and has no backward there ("FlexAttention does not support
backward on CPU") and, compiled, no log-sum-exp (so no sinks); so on CPU it serves evaluation only, and
`attention=auto` picks SDPA. On CUDA it trains (compiled with the model, `compile=true`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

if TYPE_CHECKING:
    from attention import Spec

KERNELS = ("sdpa", "flex", "auto")


def choose(kernel: str, needs_mask: bool, device: torch.device) -> str:
    """The kernel of one layer: `kernel`, or for auto flex on CUDA where the layer needs more than causal
    softmax (a bias, window, sink or gain: SDPA's flash kernel takes none of them), SDPA everywhere else."""
    if kernel != "auto":
        return kernel
    return "flex" if device.type == "cuda" and needs_mask else "sdpa"


def check_training(kernel: str, device: torch.device, dropout: float, backward: bool = True) -> None:
    """Refuse a training run flex cannot serve, before it starts: no attention dropout anywhere, no backward
    on CPU (torch 2.13); `backward=False` (evaluation) is fine on CPU."""
    if kernel != "flex":
        return
    if dropout:
        raise ValueError("attention=flex has no attention dropout; use --attention=sdpa with dropout > 0")
    if backward and device.type == "cpu":
        raise ValueError(
            "attention=flex has no backward on CPU (torch 2.13): train with --attention=sdpa (or auto) on a "
            "CPU; flex serves evaluation there"
        )


def _check(q: torch.Tensor, dropout: float) -> None:
    """At a call: dropout is refused always, the CPU only where a gradient would flow (evaluation is fine)."""
    check_training("flex", q.device, dropout, backward=q.requires_grad and torch.is_grad_enabled())


def flex_attend(q, k, v, spec: Spec, dropout: float = 0.0) -> torch.Tensor:
    """attention.attend through FlexAttention: (B, nh, T, hs) in q's dtype. q (B, nh, T, E), k (B, nh, S, E),
    v (B, nh, S, hs); spec.score_mod (a scheme's) or spec.bias, spec.gain, the keys seen, spec.sink."""
    _check(q, dropout)
    B, nh, T, S = q.size(0), q.size(1), spec.T, spec.S
    seen = spec.seen(q.device)
    per_row = seen.dim() == 4  # an id window: each sequence's ids decide, (B, 1, T, S)
    seen = seen.expand(B, 1, T, S) if per_row else seen

    def mask_mod(b, h, i, j):
        return seen[b, 0, i, j] if per_row else seen[i, j]

    block_mask = create_block_mask(mask_mod, B if per_row else None, None, T, S, device=q.device)
    gain = None if spec.gain is None else spec.gain.float().expand(B, nh, T, 1)
    bias = spec.score_mod
    if bias is None and spec.bias is not None:
        table = spec.bias.float().expand(B, nh, T, S)

        def bias(b, h, i, j):
            return table[b, h, i, j]

    def score_mod(score, b, h, i, j):
        if gain is not None:
            score = score * gain[b, h, i, 0]
        return score if bias is None else score + bias(b, h, i, j)

    mod = None if gain is None and bias is None else score_mod
    out = flex_attention(
        q, k, v, score_mod=mod, block_mask=block_mask, scale=spec.scale, return_lse=spec.sink is not None
    )
    if spec.sink is None:
        return out
    out, lse = out  # the sink's share of each row: exp(a) / (sum exp(z) + exp(a))
    keep = torch.sigmoid(lse.float() - spec.sink.float()[None, :, None])  # (B, nh, T)
    return (out.float() * keep[..., None]).to(q.dtype)
