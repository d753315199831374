"""diagnostics.py: every quantity against values worked out by hand on crafted attention matrices; the
weights the pass reads are the model's own attention (an explicit softmax of q.k + bias, or stick-breaking),
for every scheme; no more than one layer's weights alive at a time."""

import gc
import math
import weakref

import pytest
import torch
from helpers import model_for

import diagnostics
from attention import stick_breaking, visible_keys
from diagnostics import attention_stats, row_stats, summarise
from positional import POS_ENCODINGS, LayerContext, Positions
from runtime import Precision

FP32 = Precision.of("float32", "cpu")


def test_uniform_causal_attention_by_hand():
    """w_ij = 1/(i+1): H_i = log(i+1), normalised 1, distance i/2, first 1/(i+1), beyond L=2: (i-1)/(i+1)."""
    T = 6
    w = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]
    s = {k: v[0, 0] for k, v in row_stats(w[None, None], L=2).items()}
    i = torch.arange(T, dtype=torch.float32)
    torch.testing.assert_close(s["entropy"], (i + 1).log())
    torch.testing.assert_close(s["entropy_norm"][1:], torch.ones(T - 1))
    assert math.isnan(s["entropy_norm"][0])  # one visible key: no entropy to normalise
    torch.testing.assert_close(s["distance"], i / 2)
    torch.testing.assert_close(s["first"], 1 / (i + 1))
    torch.testing.assert_close(s["beyond_L"], ((i - 1).clamp_min(0) / (i + 1)))


def test_one_hot_sink_and_window_by_hand():
    T = 5
    first = torch.zeros(T, T)
    first[:, 0] = 1  # all mass on the first token
    s = row_stats(first[None, None], L=3)
    assert (s["entropy"] == 0).all() and (s["first"] == 1).all()
    torch.testing.assert_close(s["distance"][0, 0], torch.arange(T, dtype=torch.float32))
    torch.testing.assert_close(s["beyond_L"][0, 0], torch.tensor([0.0, 0, 0, 1, 1]))
    half = torch.zeros(T, T)  # half of each row on its own token, the other half in a sink (the rest)
    half[range(T), range(T)] = 0.5
    s = row_stats(half[None, None], L=3, seen=visible_keys(Positions(T, T), 2, None, "cpu"))
    torch.testing.assert_close(s["entropy"][0, 0], torch.full((T,), math.log(2)))
    n = torch.tensor([1.0, 2, 2, 2, 2])  # a window of 2: at most 2 keys visible
    torch.testing.assert_close(s["entropy_norm"][0, 0, 1:], math.log(2) / n[1:].log())
    assert (s["distance"] == 0).all()


def layer_weights(model, layer, x):
    """The attention probabilities of `layer` for the block input x, computed here: softmax(q.k / sqrt(hs)
    + bias) over the causal keys (stick-breaking: the paper's product, checked in test_attention.py)."""
    attn, pe = model.transformer.h[layer].attn, model.transformer.wpe
    h = model.transformer.h[layer].ln_1(x)
    B, T, C = h.shape
    q, k, _ = (t.view(B, T, 4, C // 4).transpose(1, 2) for t in attn.c_attn(h).split(C, dim=2))
    pos = Positions(T, T)
    q, k = pe.rotate(torch.cat((q, k), dim=1), pos, layer).chunk(2, dim=1)
    bias = pe.layer_bias(
        pe.attn_bias(pos, x.device), q, k, LayerContext(layer, h, pos, pos.causal("cpu"), None)
    )
    z = q @ k.transpose(-2, -1) / math.sqrt(C // 4) + (0 if bias is None else bias)
    z = z.masked_fill(~pos.causal("cpu"), float("-inf"))
    return stick_breaking(z) if pe.normalise == "stickbreaking" else torch.softmax(z, -1)


@pytest.mark.parametrize("pos_enc", sorted(POS_ENCODINGS))
def test_the_pass_reads_the_models_own_attention(pos_enc):
    """Layer 0's observed weights == the explicit computation; the stats == row_stats of them."""
    model = model_for(pos_enc).eval()
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(0))
    seen = {}
    model(idx, observe=lambda layer, w: seen.setdefault(layer, w))
    x = model.transformer.drop(model.transformer.wpe.embed(model.transformer.wte(idx), Positions(16, 16)))
    torch.testing.assert_close(seen[0], layer_weights(model, 0, x), rtol=1e-5, atol=1e-6)
    stats = attention_stats(model, [(idx, None, None)], 8, FP32)
    for key, x in row_stats(seen[1], 8).items():
        torch.testing.assert_close(torch.tensor(stats[key][1]), x.nanmean((0, 2)), rtol=1e-5, atol=1e-6)
    assert len(stats["entropy_by_pos"][0][0]) == 4  # bins of L/2 = 4 query positions
    assert set(summarise(stats)) == set(diagnostics.KEYS)


def test_no_more_than_one_layer_of_weights_is_alive(monkeypatch):
    """Each layer's (B, nh, T, T) weights are freed before the next layer's exist."""
    model = model_for("alibi", n_layer=4).eval()
    refs, alive = [], []
    real = diagnostics.row_stats

    def counting(w, L, seen):
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        refs.append(weakref.ref(w))
        return real(w, L, seen)

    monkeypatch.setattr(diagnostics, "row_stats", counting)
    attention_stats(model, [(torch.zeros(2, 16, dtype=torch.long), None, None)], 8, FP32)
    assert alive == [0, 0, 0, 0]


def test_an_id_window_counts_only_the_keys_it_lets_a_query_see():
    """n_i under an id window is the number of keys within it, per sequence: the weights outside are 0 and
    the normalised entropy divides by log of that count."""
    model = model_for("rope", random_positions=8, id_window=1).eval()
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(0))
    ids = torch.randint(1, 8, (2, 16), generator=torch.Generator().manual_seed(1))
    observed = {}
    model(idx, None, ids, observe=lambda layer, w: observed.setdefault(layer, w))
    seen = visible_keys(Positions(16, 16, ids, ids), None, 1, "cpu")
    assert (observed[0].masked_select(~seen.expand_as(observed[0])) == 0).all()
    stats = attention_stats(model, [(idx, ids, None)], 8, FP32)
    expected = row_stats(observed[0], 8, seen)["entropy_norm"]
    torch.testing.assert_close(
        torch.tensor(stats["entropy_norm"][0]), expected.nanmean((0, 2)), rtol=1e-5, atol=0
    )
    assert not torch.allclose(
        expected.nanmean((0, 2)), row_stats(observed[0], 8)["entropy_norm"].nanmean((0, 2))
    )
