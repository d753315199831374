"""attention_bias.py: each scheme against a reference. T5's buckets against Hugging Face T5, its bias and
CoPE against x-transformers (test-only oracles, skipped when absent); ALiBi, KERPLE and FIRE against their
papers' formulas written out here; FIRE's interpolation and the knobs' validation as properties."""

import math

import pytest
import torch
from helpers import assert_same_output_and_gradients, model_for, tiny

from attention_bias import ContextualBias, CoPE, alibi_slopes, t5_bucket
from positional import LayerContext, Positions

OFFSETS = [(12, 12), (5, 12), (1, 40)]  # (q_len, k_len): a full forward, a chunk, one decoding step far out


def distances(q_len, k_len):
    """i - j for queries k_len - q_len .. k_len - 1, built independently of the module."""
    i = torch.arange(k_len - q_len, k_len)[:, None].expand(q_len, k_len)
    return (i - torch.arange(k_len)[None, :]).float()


def bias_of(pe, q_len, k_len, q=None, k=None, layer=0):
    """A scheme's bias for queries at k_len - q_len .. k_len - 1 over keys 0 .. k_len - 1, per layer."""
    pos = Positions(q_len, k_len)
    ctx = LayerContext(layer, None, pos, pos.causal("cpu"), None)
    return pe.layer_bias(pe.attn_bias(pos, "cpu"), q, k, ctx)


def assert_causal_equal(got, expected, q_len, k_len, atol=1e-6):
    """got (1 or B, nh, q, k) equals `expected` at every key a query sees (attention masks the others) and is
    finite there."""
    future = distances(q_len, k_len) < 0
    got = got.expand_as(expected) if got.dim() == expected.dim() else got
    assert torch.isfinite(got[..., ~future]).all()
    torch.testing.assert_close(
        got.masked_fill(future, 0), expected.masked_fill(future, 0), rtol=1e-5, atol=atol
    )


def test_alibi_slopes_match_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # non-power-of-two: slopes of 4 heads, then every other slope of 8 heads (paper's get_slopes)
    expected = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))
    assert alibi_slopes(12).shape == (12,)


@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_alibi_bias_is_the_papers(q_len, k_len):
    pe = model_for("alibi").transformer.wpe
    expected = -alibi_slopes(4)[:, None, None] * distances(q_len, k_len)
    assert_causal_equal(bias_of(pe, q_len, k_len), expected[None], q_len, k_len)


@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (16, 64), (8, 20), (32, 64), (6, 1000)])
def test_t5_buckets_equal_hugging_face_t5(num_buckets, max_distance):
    modeling_t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    distance = torch.arange(-5, 4097)
    ours = t5_bucket(distance, num_buckets, max_distance)
    hf = modeling_t5.T5Attention._relative_position_bucket(  # relative_position = key - query = -distance
        -distance, bidirectional=False, num_buckets=num_buckets, max_distance=max_distance
    )
    assert torch.equal(ours, hf)
    assert ours.max() == num_buckets - 1 and (ours[distance <= 0] == 0).all()


@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_t5_bias_equals_x_transformers(q_len, k_len):
    xt = pytest.importorskip("x_transformers.x_transformers")
    pe = model_for("t5", t5_num_buckets=8, t5_max_distance=20).transformer.wpe
    with torch.no_grad():
        pe.relative_attention_bias.weight.normal_(generator=torch.Generator().manual_seed(0))
    ref = xt.RelativePositionBias(scale=1.0, causal=True, num_buckets=8, max_distance=20, heads=4)
    ref.relative_attention_bias.weight.data.copy_(pe.relative_attention_bias.weight)
    with torch.no_grad():
        assert_causal_equal(bias_of(pe, q_len, k_len), ref(q_len, k_len)[None], q_len, k_len)


def test_t5_table_is_shared_by_all_layers():
    model = model_for("t5", n_layer=3)
    assert [n for n, _ in model.transformer.wpe.named_parameters()] == ["relative_attention_bias.weight"]
    assert model.transformer.wpe.relative_attention_bias.weight.shape == (32, 4)


@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_kerple_is_the_papers_log_kernel(q_len, k_len):
    pe = model_for("kerple", n_layer=3).transformer.wpe
    d = distances(q_len, k_len)
    for layer in range(3):
        r1 = torch.log1p(torch.exp(pe.rho1[layer]))[:, None, None]  # softplus, by hand
        r2 = torch.log1p(torch.exp(pe.rho2[layer]))[:, None, None]
        expected = -r1 * torch.log(1 + r2 * d.clamp(min=0))
        got = bias_of(pe, q_len, k_len, layer=layer)
        assert_causal_equal(got, expected[None], q_len, k_len)
    r1 = torch.nn.functional.softplus(torch.stack(list(pe.rho1)))
    r2 = torch.nn.functional.softplus(torch.stack(list(pe.rho2)))
    low = 0.01 - 1e-6  # the floor, through softplus(log(expm1(.)))
    assert (r1 >= low).all() and (r1 <= 2).all() and (r2 >= low).all() and (r2 <= 1).all()
    assert not torch.equal(r1[0], r1[1])  # one kernel per layer


def fire_reference(pe, q_len, k_len):
    """Li et al. 2023, eq. for FIRE: f(psi(i - j) / psi(max(L, i))), psi(x) = log(c x + 1), f an MLP."""
    c, L = pe.c.abs().item(), pe.l.abs().item() * pe.threshold
    out = torch.empty(4, q_len, k_len)
    for a, i in enumerate(range(k_len - q_len, k_len)):
        for j in range(k_len):
            x = math.log(c * max(i - j, 0) + 1) / (math.log(c * max(L, i) + 1) + 1e-6)
            hidden = torch.relu(pe.w1[:, 0] * x + pe.b1)
            out[:, a, j] = pe.w2 @ hidden + pe.b2
    return out


@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_fire_is_the_papers_formula(q_len, k_len):
    pe = model_for("fire", fire_threshold=6.0).transformer.wpe
    with torch.no_grad():
        pe.c.fill_(0.7)
        pe.l.fill_(-1.5)  # |l|: the threshold is 9
        assert_causal_equal(bias_of(pe, q_len, k_len), fire_reference(pe, q_len, k_len)[None], q_len, k_len)


def test_fire_interpolates_past_the_threshold():
    """Below L_thr the bias depends on i - j only; from L_thr on, the MLP's input psi(i - j) / psi(i) spans
    [0, 1] at every query position, so the newest and the oldest key read the same values at any length."""
    pe = model_for("fire", fire_threshold=8.0).transformer.wpe
    with torch.no_grad():
        bias = bias_of(pe, 64, 64)[0]  # (nh, i, j)
    for i in range(1, 8):  # translation invariance below the threshold: bias(i, j) == bias(i - 1, j - 1)
        torch.testing.assert_close(bias[:, i, 1 : i + 1], bias[:, i - 1, :i])
    oldest, newest = bias[:, 8:, 0], bias[:, torch.arange(8, 64), torch.arange(8, 64)]  # (nh, 56) each
    torch.testing.assert_close(oldest, oldest[:, :1].expand_as(oldest), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(newest, newest[:, :1].expand_as(newest))
    assert not torch.allclose(bias[:, 20, 10], bias[:, 40, 30])  # the same i - j, different i: not T5


def test_fire_is_one_module_for_all_layers_with_the_papers_sizes():
    pe = model_for("fire", n_layer=3).transformer.wpe
    shapes = {n: tuple(p.shape) for n, p in pe.named_parameters()}
    assert shapes == {"w1": (32, 1), "b1": (32,), "w2": (4, 32), "b2": (4,), "c": (), "l": ()}
    assert pe.threshold == 16 / 4 and pe.c.item() == pytest.approx(0.1)


@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_cope_equals_x_transformers(q_len, k_len):
    xt = pytest.importorskip("x_transformers.x_transformers")
    g = torch.Generator().manual_seed(1)
    pe = CoPE(tiny("cope", cope_max_pos=10, n_layer=2))
    with torch.no_grad():
        pe.pos_emb.normal_(generator=g)
    q, k = torch.randn(2, 4, q_len, 8, generator=g), torch.randn(2, 4, k_len, 8, generator=g)
    future = distances(q_len, k_len) < 0
    logits = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(future, float("-inf"))
    for layer in range(2):
        ref = xt.CoPE(dim=8, heads=4, max_pos=10)
        ref.pos_emb.data.copy_(pe.pos_emb[layer])
        with torch.no_grad():
            got = bias_of(pe, q_len, k_len, q, k, layer)
            # ours counts a row's gates as its total minus a forward cumsum (no flips), the reference
            # sums backwards: the same positions up to fp32 cancellation, ~1e-6 per unit of count
            assert_causal_equal(got, ref(q, logits), q_len, k_len, atol=1e-5)


@pytest.mark.parametrize("max_pos", [64, 6])  # 6: most positions clamp to the last row
@pytest.mark.parametrize(("q_len", "k_len"), OFFSETS)
def test_cope_backward_equals_autograd_of_the_papers_formula(q_len, k_len, max_pos):
    """ContextualBias writes its backward out; the paper's code (gathers at floor and ceil, backward cumsum)
    through autograd, in float64, must give the same bias and gradients."""
    g = torch.Generator().manual_seed(2)
    q, k = (
        torch.randn(2, 4, q_len, 8, generator=g).double(),
        torch.randn(2, 4, k_len, 8, generator=g).double(),
    )
    table = torch.randn(max_pos, 8, generator=g).double()
    future = distances(q_len, k_len) < 0
    upstream = torch.randn(2, 4, q_len, k_len, generator=g).double()

    def papers(q, k, table):
        gates = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(future, 0.0)
        pos = gates.flip(-1).cumsum(-1).flip(-1).clamp(max=max_pos - 1)
        logits = q @ table.t()
        floor, ceil = pos.floor().long(), pos.ceil().long()
        w = pos - pos.floor()
        return logits.gather(-1, ceil) * w + logits.gather(-1, floor) * (1 - w)

    assert_same_output_and_gradients(
        papers, lambda q, k, t: ContextualBias.apply(q, k, t, ~future), [q, k, table], upstream
    )


def test_cope_starts_as_nope_and_counts_gates():
    pe = CoPE(tiny("cope"))
    q, k = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    assert torch.equal(bias_of(pe, 6, 6, q, k), torch.zeros(1, 4, 6, 6))  # zero table: no bias
    with torch.no_grad():
        pe.pos_emb[0] = torch.arange(16.0)[:, None] / 8  # e[p] = p / 8 in every feature
    q1 = torch.ones(1, 1, 1, 8)  # q.e[p] = p, so the bias is the contextual position itself
    k1 = torch.full((1, 1, 5, 8), 100.0)  # every gate 1: the position of key j is the count i - j + 1
    got = bias_of(pe, 1, 5, q1, k1)
    torch.testing.assert_close(got[0, 0, 0], torch.tensor([5.0, 4, 3, 2, 1]))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(pos_enc="t5", t5_num_buckets=1), r"t5_num_buckets must be an integer >= 2, got 1"),
        (dict(pos_enc="t5", t5_max_distance=16), r"t5_max_distance must be an integer > .* = 16 .*got 16"),
        (dict(pos_enc="fire", fire_threshold=0.0), r"fire_threshold must be a positive number"),
        (dict(pos_enc="fire", fire_threshold=math.inf), r"fire_threshold must be a positive number"),
        (dict(pos_enc="cope", cope_max_pos=0), r"cope_max_pos must be a positive integer, got 0"),
        (dict(pos_enc="alibi", t5_num_buckets=8), r"t5_num_buckets=8 is only used by pos_enc in \['t5'\]"),
        (dict(pos_enc="t5", cope_max_pos=8), r"cope_max_pos=8 is only used by pos_enc in \['cope'\]"),
        (dict(pos_enc="rope", fire_threshold=8.0), r"fire_threshold=8.0 is only used by pos_enc in \['fire"),
    ],
)
def test_knobs_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)
