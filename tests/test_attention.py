"""attention.py: attention through SDPA == the explicit weights, for every combination of bias, window, sink
and SSMax gain; sinks against gpt-oss's formula (and its transformers code, when installed); SSMax and
stick-breaking against their papers' formulas written out here; windows as a property; in a model, sinks,
SSMax and windows on any scheme keep causality and the KV cache, and their parameters are counted."""

import math

import pytest
import torch
from helpers import assert_same_output_and_gradients, model_for, tiny

from attention import Spec, attend, ssmax_gain, stick_breaking, visible_keys, weights
from positional import Positions

G = torch.Generator().manual_seed(0)


def qkv(B=2, nh=4, T=7, S=7, hs=8):
    return (
        torch.randn(B, nh, T, hs, generator=G),
        torch.randn(B, nh, S, hs, generator=G),
        torch.randn(B, nh, S, hs, generator=G),
    )


def causal(T, S):
    return torch.ones(T, S, dtype=torch.bool).tril(S - T)


def textbook(q, k, v, bias=None, seen=None, sink=None, gain=None):
    """softmax(gain q.k / sqrt(hs) + bias) over the seen keys (and a sink logit), written out."""
    T, S, hs = q.size(2), k.size(2), q.size(3)
    z = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    z = z * (1 if gain is None else gain) + (0 if bias is None else bias)
    z = z.masked_fill(~(causal(T, S) if seen is None else seen), float("-inf"))
    e = torch.exp(z - z.amax(-1, keepdim=True))
    total = e.sum(-1, keepdim=True)
    if sink is not None:
        total = total + torch.exp(sink[None, :, None, None] - z.amax(-1, keepdim=True))
    return (e / total) @ v, e / total


@pytest.mark.parametrize("T, S", [(7, 7), (3, 9), (1, 12)])
@pytest.mark.parametrize(
    "parts",
    [(), ("bias",), ("window",), ("ids",), ("sink",), ("gain",), ("bias", "window", "ids", "sink", "gain")],
)
def test_attend_through_sdpa_equals_the_explicit_weights_and_the_textbook(T, S, parts):
    q, k, v = qkv(T=T, S=S)
    window = 4 if "window" in parts else None
    ids = torch.randint(0, 6, (2, S), generator=G) if "ids" in parts else None  # back and forth, per row
    pos = Positions(T, S) if ids is None else Positions(T, S, ids[:, S - T :], ids)
    bias = torch.randn(1, 4, T, S, generator=G) if "bias" in parts else None
    sink = torch.randn(4, generator=G) if "sink" in parts else None
    visible = visible_keys(pos, window, 2 if "ids" in parts else None, "cpu")
    seen = causal(T, S) if visible is None else visible
    gain = ssmax_gain(torch.rand(4, generator=G) + 0.5, seen) if "gain" in parts else None
    spec = Spec(T, S, 1 / math.sqrt(8), visible, bias, gain, sink)
    expected, probs = textbook(q, k, v, bias, visible, sink, gain)
    torch.testing.assert_close(attend(q, k, v, spec), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights(q, k, spec), probs, rtol=1e-5, atol=1e-6)


def test_sinks_are_gpt_oss_attention():
    """The sink column joins the softmax and is dropped (gpt-oss): P = softmax(z) * sigmoid(lse(z) - a);
    and transformers' own eager function gives the same output."""
    q, k, v = qkv()
    sink = torch.randn(4, generator=G)
    spec = Spec(7, 7, 1 / math.sqrt(8), sink=sink)
    z = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~causal(7, 7), float("-inf"))
    formula = torch.softmax(z, -1) * torch.sigmoid(
        torch.logsumexp(z, -1, keepdim=True) - sink[None, :, None, None]
    )
    torch.testing.assert_close(weights(q, k, spec), formula, rtol=1e-5, atol=1e-6)
    assert (weights(q, k, spec).sum(-1) < 1).all()
    gpt_oss = pytest.importorskip("transformers.models.gpt_oss.modeling_gpt_oss")
    stub = type("Stub", (), {"sinks": sink, "num_key_value_groups": 1, "training": False})()
    mask = torch.zeros(7, 7).masked_fill(~causal(7, 7), float("-inf"))[None, None]
    out, _ = gpt_oss.eager_attention_forward(stub, q, k, v, mask, scaling=1 / math.sqrt(8))
    torch.testing.assert_close(attend(q, k, v, spec), out.transpose(1, 2), rtol=1e-5, atol=1e-6)


def test_a_window_hides_every_key_past_it_and_a_wide_one_is_full_attention():
    for T, S, w in [(9, 9, 3), (2, 12, 5)]:
        seen = visible_keys(Positions(T, S), w, None, "cpu")
        i = torch.arange(S - T, S)[:, None]
        j = torch.arange(S)[None]
        assert torch.equal(seen, (j <= i) & (i - j < w))
        # an id window of D over implicit ids is a window of D + 1 tokens
        assert torch.equal(visible_keys(Positions(T, S), None, w - 1, "cpu")[0, 0], seen)
    q, k, v = qkv()
    wide = visible_keys(Positions(7, 7), 7, None, "cpu")
    full, wide = Spec(7, 7, 1 / math.sqrt(8)), Spec(7, 7, 1 / math.sqrt(8), wide)
    torch.testing.assert_close(attend(q, k, v, wide), attend(q, k, v, full))


def test_an_id_window_hides_the_keys_whose_ids_are_far_from_the_querys():
    """Coupled ids go back and forth: key j is seen iff j <= i and |id_i - id_j| <= D, per sequence."""
    ids = torch.tensor([[4, 3, 2, 1, 4, 3, 2, 1, 2, 3, 4, 5], [9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1]])
    seen = visible_keys(Positions(12, 12, ids, ids), None, 1, "cpu")  # (2, 1, 12, 12)
    for b in range(2):
        for i in range(12):
            for j in range(12):
                assert bool(seen[b, 0, i, j]) == (j <= i and abs(int(ids[b, i] - ids[b, j])) <= 1)


def test_ssmax_gain_is_s_log_n():
    """Nakanishi 2025: logits times s log n, n the keys a query sees: i + 1, at most the window."""
    s = torch.tensor([0.5, 2.0])
    gain = ssmax_gain(s, causal(3, 10))  # queries 7, 8, 9
    torch.testing.assert_close(gain[0, :, :, 0], s[:, None] * torch.log(torch.tensor([8.0, 9, 10]))[None])
    windowed = visible_keys(Positions(3, 10), 4, None, "cpu")
    torch.testing.assert_close(ssmax_gain(s, windowed)[0, 1, :, 0], 2.0 * torch.full((3,), math.log(4)))
    ids = torch.tensor([[5, 1, 5, 1, 5], [0, 1, 2, 3, 4]])  # with an id window: the keys each row sees
    few = visible_keys(Positions(2, 5, ids[:, 3:], ids), None, 0, "cpu")  # same id only
    assert ssmax_gain(s, few).shape == (2, 2, 2, 1)
    torch.testing.assert_close(
        ssmax_gain(s, few)[:, 0, :, 0].exp(), torch.tensor([[2.0, 3.0], [1, 1]]) ** 0.5
    )


def stick_breaking_loop(z):
    """Tan et al. 2025: A_ij = sigmoid(z_ij) prod_{j<l<i} (1 - sigmoid(z_il)); the query's own key is out."""
    T = z.size(-1)
    A = torch.zeros_like(z)
    for i in range(T):
        for j in range(i):
            A[..., i, j] = torch.sigmoid(z[..., i, j])
            for m in range(j + 1, i):
                A[..., i, j] = A[..., i, j] * (1 - torch.sigmoid(z[..., i, m]))
    return A


@pytest.mark.parametrize(("T", "S", "window"), [(6, 6, None), (3, 7, None), (6, 6, 3)])
def test_stick_breaking_backward_equals_autograd_of_the_papers_product(T, S, window):
    """StickBreaking writes its backward out; the product over the seen keys between, through autograd in
    float64, must give the same weights and gradients (a KV-cache chunk, a window: keys unseen mid-row)."""
    i, j = torch.arange(S - T, S)[:, None], torch.arange(S)
    seen = (j <= i) & ((j > i - window) if window else True)
    z = torch.randn(2, 3, T, S, generator=G).double()
    upstream = torch.randn(2, 3, T, S, generator=G).double()

    def papers(z):
        beta = torch.sigmoid(z)
        rows = []
        for r in range(T):
            keys = [c for c in range(S) if seen[r, c] and c < S - T + r]  # the query's own key is out
            row = [torch.zeros_like(z[..., 0, 0])] * S
            for c in keys:
                row[c] = beta[..., r, c] * math.prod([1 - beta[..., r, m] for m in keys if m > c])
            rows.append(torch.stack(row, -1))
        return torch.stack(rows, -2)

    assert_same_output_and_gradients(
        papers, lambda z: stick_breaking(z.masked_fill(~seen, float("-inf"))), [z], upstream
    )


def test_stick_breaking_is_the_papers_product_and_nearer_keys_claim_first():
    z = torch.randn(2, 3, 6, 6, generator=G)
    logits = z.masked_fill(~causal(6, 6), float("-inf"))
    A = stick_breaking(logits)
    torch.testing.assert_close(A, stick_breaking_loop(z), rtol=1e-5, atol=1e-6)
    assert (A.sum(-1) <= 1 + 1e-6).all() and (A[..., 0, :] == 0).all()
    blocked = z.clone()
    blocked[..., 5, 3] = 50.0  # key 3 claims all that key 4 left of query 5's stick: keys 0-2 get nothing
    A = stick_breaking(blocked.masked_fill(~causal(6, 6), float("-inf")))
    assert (A[..., 5, :3] < 1e-12).all() and torch.allclose(A[..., 5, 3], 1 - A[..., 5, 4])
    q, k, v = qkv(T=6, S=6)
    spec = Spec(6, 6, 1 / math.sqrt(8), normalise="stickbreaking")
    w = stick_breaking(((q @ k.transpose(-2, -1)) / math.sqrt(8)).masked_fill(~causal(6, 6), float("-inf")))
    expected = w @ v + (1 - w.sum(-1, keepdim=True)) * v  # the rest of the stick: the query's own value
    torch.testing.assert_close(attend(q, k, v, spec), expected, rtol=1e-5, atol=1e-6)


OPTIONS = [
    dict(attn_sink=True),
    dict(ssmax=True),
    dict(window=3),
    dict(window=3, window_pattern="SL"),
    dict(window=4, window_pattern="SSSL", attn_sink=True, ssmax=True),
    dict(id_window=5, ssmax=True),
]


@pytest.mark.parametrize("pos_enc", ["rope", "alibi", "none", "fox"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options_keep_causality_the_kv_cache_and_lengths_past_block_size(pos_enc, options):
    """Sinks, SSMax and windows on any scheme: a change at token t moves no logit before t; greedy decoding
    through the cache (windows included: the cache keeps every key, the mask hides the old ones) == a full
    forward per step, from an offset past block_size too."""
    model = model_for(pos_enc, **options)
    idx = torch.randint(0, 65, (2, 40), generator=G)  # block_size is 16
    logits = model(idx, idx)[0]
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 65
    torch.testing.assert_close(model(changed, changed)[0][:, :20], logits[:, :20])
    out, ref = model.generate(idx[:, :18], 6, temperature=0), idx[:, :18]
    for _ in range(6):
        ref = torch.cat((ref, model(ref)[0][:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, ref)


def test_option_parameters_are_position_parameters_and_the_options_are_validated():
    model = model_for("rope", attn_sink=True, ssmax=True)
    names = sorted(model.position_parameters())
    assert names == [f"transformer.h.{i}.attn.{p}" for i in (0, 1) for p in ("sink", "ssmax")]
    assert model.num_params(non_embedding=False) - model.num_params() == 128 * 32 + 2 * 2 * 4
    with torch.no_grad():  # SSMax's s starts at 1 / ln(block_size): the plain logits at block_size keys
        torch.testing.assert_close(model.transformer.h[0].attn.ssmax, torch.full((4,), 1 / math.log(16)))
    for kw, match in [
        (dict(window_pattern="SL"), "needs a window: e.g. --window=16 --window_pattern=SL"),
        (dict(window=4, window_pattern="sssl"), "did you mean --window_pattern=SSSL"),
        (dict(window=4, window_pattern="SXL"), r"S \(window\) or L \(all keys\).*got .SXL.$"),
        (dict(window=0), "window must be an integer in"),
        (dict(id_window=-1), "id_window must be an integer in"),
        (dict(pos_enc="stickbreaking", attn_sink=True), "attn_sink joins a softmax"),
    ]:
        with pytest.raises(ValueError, match=match):
            tiny(**kw)
    assert [tiny(window=4, window_pattern="SSL").windowed(layer) for layer in range(2)] == [4, 4]
    assert [tiny(n_layer=4, window=4, window_pattern="SL").windowed(layer) for layer in range(4)] == [
        4,
        None,
    ] * 2
