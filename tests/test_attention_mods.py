"""attention_mods.py: FoX against x-transformers' DataDependentAlibi (its bias and a whole attention layer),
PoPE against x-transformers' PolarEmbedding and the paper's sum of cosines, stick-breaking layers against
the paper's product written out here; each scheme's KV cache continues its state exactly."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import model_for

from model import KVCache
from positional import LayerContext, Positions

G = torch.Generator().manual_seed(0)


def layer_inputs(model, layer=1, T=10):
    """(attention module, scheme, x (2, T, C) as the layer sees it, q, k, v (B, nh, T, hs) unrotated)."""
    attn, pe = model.transformer.h[layer].attn, model.transformer.wpe
    x = torch.randn(2, T, model.config.n_embd, generator=G)
    C = model.config.n_embd
    q, k, v = (t.view(2, T, 4, C // 4).transpose(1, 2) for t in attn.c_attn(x).split(C, dim=2))
    return attn, pe, x, q, k, v


def test_fox_bias_is_x_transformers_data_dependent_alibi():
    xt = pytest.importorskip("x_transformers.x_transformers")
    model = model_for("fox")
    _, pe, x, q, k, _ = layer_inputs(model)
    with torch.no_grad():
        pe.gates[1].weight.normal_(0, 0.5, generator=G)
        pe.gates[1].bias.uniform_(-1, 3, generator=G)
    oracle = xt.DataDependentAlibi(dim=32, heads=4)
    oracle.to_forget_gates[0].load_state_dict(pe.gates[1].state_dict())
    pos = Positions(10, 10)
    bias = pe.layer_bias(None, q, k, LayerContext(1, x, pos, pos.causal("cpu"), None))
    below = torch.ones(10, 10, dtype=torch.bool).tril()  # the oracle leaves the upper triangle unmasked
    torch.testing.assert_close(bias[..., below], oracle(x)[..., below], rtol=1e-5, atol=1e-5)
    assert (bias[..., below] <= 0).all() and (bias.diagonal(dim1=-2, dim2=-1) == 0).all()


def test_a_fox_layer_is_x_transformers_attention_with_data_dependent_alibi():
    xt = pytest.importorskip("x_transformers.x_transformers")
    model = model_for("fox")
    attn, pe, x, *_ = layer_inputs(model)
    oracle = xt.Attention(32, dim_head=8, heads=4, causal=True, data_dependent_alibi=True)
    with torch.no_grad():
        for name, w in zip(("to_q", "to_k", "to_v"), attn.c_attn.weight.split(32), strict=True):
            getattr(oracle, name).weight.copy_(w)
        oracle.to_out.weight.copy_(attn.c_proj.weight)
        oracle.data_dependent_alibi.to_forget_gates[0].load_state_dict(pe.gates[1].state_dict())
    pos = Positions(10, 10)
    ours = attn(x, pe, pe.attn_bias(pos, "cpu"), pos)
    torch.testing.assert_close(ours, oracle(x), rtol=1e-5, atol=1e-6)


def test_pope_scores_are_x_transformers_polar_embedding_and_the_papers_sum():
    xt = pytest.importorskip("x_transformers.x_transformers")
    model = model_for("pope")
    _, pe, _, q, k, _ = layer_inputs(model)
    with torch.no_grad():
        pe.phase_bias.uniform_(-7, 1, generator=G)  # past [-2 pi, 0] too: both clamp
    ids = torch.arange(3, 13)
    qk = pe.rotate(torch.cat((q, k), dim=1), Positions(10, 10, ids.expand(2, 10), ids.expand(2, 10)), 0)
    Q, K = qk.split(4, dim=1)  # (B, nh, T, 2 hs)
    oracle = xt.PolarEmbedding(8, 4)
    with torch.no_grad():
        oracle.learned_bias.copy_(pe.phase_bias.view(4, 1, 8))
    freqs, bias = oracle(ids)
    torch.testing.assert_close(Q, xt.apply_polar_pos_emb(q, freqs), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(K, xt.apply_polar_pos_emb(k, freqs + bias), rtol=1e-5, atol=1e-6)
    # the paper: sum_c softplus(q_c) softplus(k_c) cos((i - j) theta_c - delta_c)
    theta = 10000.0 ** (-torch.arange(8) / 8)
    delta = pe.phase_bias.clamp(-2 * math.pi, 0)[None, :, None, None, :]  # (1, nh, 1, 1, hs)
    angle = (ids[:, None] - ids[None, :])[..., None] * theta - delta  # (nh, T, S, hs) by broadcasting
    paper = (F.softplus(q)[..., :, None, :] * F.softplus(k)[..., None, :, :] * angle.cos()).sum(-1)
    torch.testing.assert_close(Q @ K.transpose(-2, -1), paper, rtol=1e-4, atol=1e-4)


def test_a_stick_breaking_layer_is_the_papers_product():
    """A_ij = beta_ij prod_{j<l<i} (1 - beta_il), beta = sigmoid(q.k / sqrt(hs)), own key left out, the rest
    of the stick to the query's own value: loops, against the layer."""
    model = model_for("stickbreaking")
    attn, pe, x, q, k, v = layer_inputs(model, T=6)
    beta = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(8))
    y = torch.zeros_like(v)
    for i in range(6):
        rest = torch.ones(2, 4)
        for j in range(i - 1, -1, -1):
            a = beta[..., i, j] * rest
            y[:, :, i] += a[..., None] * v[:, :, j]
            rest = rest * (1 - beta[..., i, j])
        y[:, :, i] += rest[..., None] * v[:, :, i]
    pos = Positions(6, 6)
    expected = attn.c_proj(y.transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(attn(x, pe, None, pos), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pos_enc", ["fox", "stickbreaking", "pope"])
def test_decoding_in_chunks_continues_the_state_exactly(pos_enc):
    """Prefill 5 tokens, then 1, then 4 through one cache == one forward of all 10 (FoX's sums go on)."""
    model = model_for(pos_enc)
    idx = torch.randint(0, 65, (2, 10), generator=G)
    full = model(idx, idx)[0]
    cache, parts = KVCache(model.config.n_layer, 10), []
    for a, b in ((0, 5), (5, 6), (6, 10)):
        parts.append(model(idx[:, a:b], idx[:, a:b], cache=cache)[0])
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
