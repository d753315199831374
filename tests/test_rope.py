"""rope.py: element-wise against Hugging Face transformers and a complex-number reference, plus the
properties that a wrong pairing, sign or frequency would break."""

import itertools
import math

import pytest
import torch

from rope import SCALING_KEYS, RotaryEmbedding, apply_rope, rope_cos_sin, rope_inv_freq, xpos_scale

ORIG = 64  # original (pre-extension) context length of the scaling methods
# Hugging Face rope_parameters (without rope_theta) per case; see ours_scaling for our dict
HF_CASES = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 4.0},  # HF: original length = max_position_embeddings
    "yarn": {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": ORIG,
        "beta_fast": 32,
        "beta_slow": 1,
    },
    "yarn_defaults": {
        "rope_type": "yarn",
        "factor": 2.0,
        "original_max_position_embeddings": ORIG,
        "attention_factor": 1.5,
    },
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": ORIG,
    },
}
# (offset, T): inside the original length, across it, and far beyond it
SPANS = [(0, 16), (37, 16), (60, 10), (1000, 24), (5000, 8)]


def ours_scaling(case):
    scaling = dict(HF_CASES[case])
    if case == "dynamic":
        scaling["original_max_position_embeddings"] = ORIG
    return None if case == "default" else scaling


def assert_bf16_rounding_close(ours, hf, x, cos, sin):
    """bf16 results may differ from HF's in the last bit where the terms cancel (HF rounds x2*sin
    before adding it, we don't), so check what both must satisfy: every element is within bf16
    rounding (unit roundoff u = 2**-8 per term) of x*cos + rotate_half(x)*sin computed exactly."""
    x, cos, sin = x.double(), cos.double(), sin.double()
    x1, x2 = x.chunk(2, dim=-1)
    a, b = x * cos, torch.cat((-x2, x1), dim=-1) * sin
    bound = 1.01 * 2**-8 * (a.abs() + b.abs() + (a + b).abs())
    for out in (ours, hf):
        assert ((out.double() - (a + b)).abs() <= bound).all()


@pytest.mark.parametrize("base", [1e4, 5e5])
@pytest.mark.parametrize("head_dim", [8, 64, 128])
@pytest.mark.parametrize("case", list(HF_CASES))
def test_matches_hf_llama(case, head_dim, base):
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    torch.manual_seed(0)
    params = HF_CASES[case]
    config = transformers.LlamaConfig(
        hidden_size=2 * head_dim,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=ORIG if case == "dynamic" else int(params.get("factor", 1) * ORIG),
        rope_parameters={**params, "rope_theta": base},
    )
    ours = RotaryEmbedding(head_dim, base, scaling=ours_scaling(case), max_seq_len=128)  # one for all calls
    for (offset, T), dtype in itertools.product(SPANS, [torch.float32, torch.bfloat16]):
        q, k = torch.randn(2, 2, 2, T, head_dim, dtype=dtype)
        hf = LlamaRotaryEmbedding(config)  # fresh: HF's dynamic type remembers the longest length seen
        cos, sin = hf(q, torch.arange(offset, offset + T)[None])  # (1, T, hs), already in q's dtype
        q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
        q_ours, k_ours = ours(q, offset), ours(k, offset)
        assert q_ours.dtype == dtype
        if dtype == torch.bfloat16:
            assert_bf16_rounding_close(q_ours, q_hf, q, cos, sin)
            assert_bf16_rounding_close(k_ours, k_hf, k, cos, sin)
            continue
        torch.testing.assert_close(q_ours, q_hf)
        torch.testing.assert_close(k_ours, k_hf)
        inv_freq, scale = rope_inv_freq(head_dim, base, ours_scaling(case), seq_len=offset + T)
        torch.testing.assert_close(inv_freq, hf.inv_freq)
        assert scale == pytest.approx(hf.attention_scaling)
        positions = torch.arange(offset, offset + T)
        torch.testing.assert_close(rope_cos_sin(inv_freq, positions, scale), (cos[0], sin[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pct", [0.25, 0.5])
def test_partial_rotary_matches_hf_gpt_neox(pct, dtype):
    transformers = pytest.importorskip("transformers")
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding, apply_rotary_pos_emb

    torch.manual_seed(0)
    hs, base = 64, 1e4
    config = transformers.GPTNeoXConfig(
        hidden_size=4 * hs, num_attention_heads=4, rotary_pct=pct, rotary_emb_base=base
    )
    hf = GPTNeoXRotaryEmbedding(config)
    ours = RotaryEmbedding(hs, base, rotary_dim=int(pct * hs), max_seq_len=16)
    d = ours.rotary_dim
    for offset, T in [(0, 16), (500, 8)]:
        q, k = torch.randn(2, 2, 4, T, hs, dtype=dtype)
        cos, sin = hf(q, torch.arange(offset, offset + T)[None])
        q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
        q_ours, k_ours = ours(q, offset), ours(k, offset)
        if dtype == torch.bfloat16:
            assert_bf16_rounding_close(q_ours[..., :d], q_hf[..., :d], q[..., :d], cos, sin)
        else:
            torch.testing.assert_close(q_ours, q_hf)
            torch.testing.assert_close(k_ours, k_hf)
        assert torch.equal(q_ours[..., d:], q[..., d:])  # the rest passes through bit-for-bit
        assert torch.equal(q_hf[..., d:], q[..., d:])


@pytest.mark.parametrize("base", [1e4, 5e5])
def test_interleaved_matches_complex_reference(base):
    torch.manual_seed(0)
    B, nh, T, hs, offset = 2, 3, 12, 16, 7
    x = torch.randn(B, nh, T, hs)
    # Meta's formulation: pairs (2i, 2i+1) are complex numbers, multiplied by e^{i m theta_i}
    theta = 1.0 / base ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    angles = torch.arange(offset, offset + T, dtype=torch.float64)[:, None] * theta  # (T, hs/2)
    x_c = torch.view_as_complex(x.double().reshape(B, nh, T, hs // 2, 2))
    ref = torch.view_as_real(x_c * torch.polar(torch.ones_like(angles), angles)).reshape(B, nh, T, hs)
    out = RotaryEmbedding(hs, base, interleaved=True)(x, offset)
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-5)  # ours: float32 angles


@pytest.mark.parametrize("rotary_dim", [16, 8])
def test_half_split_equals_interleaved_after_weight_permutation(rotary_dim):
    torch.manual_seed(0)
    B, T, nh, hs, d = 2, 10, 3, 16, rotary_dim
    x = torch.randn(B, T, nh * hs, dtype=torch.float64)  # float64: compare the maths, not summation order
    w_q, w_k = torch.randn(2, nh * hs, nh * hs, dtype=torch.float64)
    b_q = torch.randn(nh * hs, dtype=torch.float64)
    # the checkpoint conversion written in rope.py's docstring
    perm = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2), torch.arange(d, hs)))

    def convert(w):
        return w.view(nh, hs, -1)[:, perm].reshape_as(w)

    def scores(w_q, b_q, w_k, rotary):
        q = (x @ w_q.T + b_q).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = (x @ w_k.T).view(B, T, nh, hs).transpose(1, 2)
        return rotary(q, 5) @ rotary(k, 5).transpose(-1, -2)

    inter = RotaryEmbedding(hs, rotary_dim=d, interleaved=True)
    half = RotaryEmbedding(hs, rotary_dim=d)
    torch.testing.assert_close(
        scores(convert(w_q), convert(b_q), convert(w_k), half), scores(w_q, b_q, w_k, inter)
    )
    q = torch.randn(B, nh, T, hs)
    assert torch.equal(half(q[..., perm])[..., torch.argsort(perm)], inter(q))


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [32, 12])
def test_properties(interleaved, rotary_dim):
    torch.manual_seed(0)
    hs, T, d = 32, 24, rotary_dim
    rot = RotaryEmbedding(hs, rotary_dim=d, interleaved=interleaved)
    x = torch.randn(2, 3, T, hs)
    out = rot(x)
    assert torch.equal(out[..., 0, :], x[..., 0, :])  # position 0: cos 1, sin 0, exactly the identity
    assert torch.equal(out[..., d:], x[..., d:])
    assert not torch.allclose(out[..., 1:, :d], x[..., 1:, :d])  # it does rotate

    def pairs(t):  # (..., d/2, 2): one row per rotated pair
        t = t[..., :d]
        return t.unflatten(-1, (-1, 2)) if interleaved else t.unflatten(-1, (2, -1)).transpose(-1, -2)

    torch.testing.assert_close(pairs(out).norm(dim=-1), pairs(x).norm(dim=-1))

    # <rope(q, m), rope(k, n)> depends on m - n only: shifting both positions changes nothing
    q, k = torch.randn(2, 1, 1, 1, hs, dtype=torch.float64)
    for m, n in [(3, 0), (10, 17), (100, 100)]:
        dots = torch.stack([(rot(q, m + s) * rot(k, n + s)).sum() for s in (0, 1, 50, 1000)])
        torch.testing.assert_close(dots, dots[0].expand(4), rtol=1e-5, atol=1e-5)  # float32 angles


@pytest.mark.parametrize("interleaved", [False, True])
def test_cache_prefix_growth_and_chunked_decoding(interleaved):
    torch.manual_seed(0)
    short = RotaryEmbedding(16, interleaved=interleaved, max_seq_len=8)
    long = RotaryEmbedding(16, interleaved=interleaved, max_seq_len=64)
    assert torch.equal(long.cos[:8], short.cos) and torch.equal(long.sin[:8], short.sin)
    x = torch.randn(2, 3, 40, 16)
    spans = [(0, 5), (5, 6), (6, 20), (20, 40)]  # the cache of `short` grows twice on the way
    chunks = [short(x[:, :, a:b], offset=a) for a, b in spans]
    assert short.cos.shape[0] >= 40 and torch.equal(long.cos[:40], short.cos[:40])
    assert torch.equal(torch.cat(chunks, dim=2), long(x))


def test_dynamic_is_plain_within_and_ntk_beyond_the_original_length():
    torch.manual_seed(0)
    dynamic = {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 64}
    x = torch.randn(1, 2, 16, 32)
    rot, plain = RotaryEmbedding(32, scaling=dynamic), RotaryEmbedding(32)
    assert torch.equal(rot(x, 48), plain(x, 48))  # positions 48..63: total length 64, not past it
    assert not torch.allclose(rot(x, 49), plain(x, 49))  # total 65 > 64: the base is rescaled
    # at total length L it is static NTK with factor * L / original - (factor - 1)
    L = 200
    ntk = {"rope_type": "ntk", "factor": 4.0 * L / 64 - 3.0}
    assert torch.equal(rope_inv_freq(32, scaling=dynamic, seq_len=L)[0], rope_inv_freq(32, scaling=ntk)[0])


def test_ntk_formula():
    d, base, factor = 64, 10000.0, 8.0
    expected = (base * factor ** (d / (d - 2))) ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    torch.testing.assert_close(
        rope_inv_freq(d, base, {"rope_type": "ntk", "factor": factor})[0], expected.float()
    )


@pytest.mark.parametrize("kind", ["linear", "ntk", "yarn", "llama3"])
def test_scaling_keeps_fastest_and_interpolates_slowest_pair(kind):
    d, factor = 64, 4.0
    scaling = {"rope_type": kind, "factor": factor}
    if kind in ("yarn", "llama3"):
        scaling["original_max_position_embeddings"] = 256
    if kind == "llama3":
        scaling |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    plain, _ = rope_inv_freq(d)
    scaled, _ = rope_inv_freq(d, scaling=scaling)
    # linear squeezes every pair; the others leave the fastest pair alone. All of them interpolate
    # the slowest pair by exactly `factor` (NTK through the d/(d-2) exponent).
    torch.testing.assert_close(scaled[0], plain[0] / factor if kind == "linear" else plain[0])
    torch.testing.assert_close(scaled[-1], plain[-1] / factor)


def test_every_scaling_type_is_tested():
    tested = {case["rope_type"] for case in HF_CASES.values()} | {"ntk"}  # ntk: no HF counterpart
    assert tested | {"longrope"} == set(SCALING_KEYS)  # longrope: test_longrope_matches_hf_phi3


@pytest.mark.parametrize("attention_factor", [None, 1.3])
def test_longrope_matches_hf_phi3(attention_factor):
    """inv_freq and attention factor == transformers' _compute_longrope_parameters below and above the
    original length, and cos/sin == Phi-3's rotary module, config-built (nothing downloaded)."""
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import _compute_longrope_parameters
    from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

    g = torch.Generator().manual_seed(0)
    short, long = (1 + torch.rand(16, generator=g) * k for k in (0.5, 8.0))
    ours = {
        "rope_type": "longrope",
        "factor": 8.0,
        "original_max_position_embeddings": ORIG,
        "short_factor": short.tolist(),
        "long_factor": long.tolist(),
    }
    if attention_factor:
        ours["attention_factor"] = attention_factor
    config = transformers.Phi3Config(
        hidden_size=64,
        num_attention_heads=2,
        max_position_embeddings=8 * ORIG,
        rope_parameters={**ours, "rope_theta": 5e5},
        original_max_position_embeddings=ORIG,
        pad_token_id=0,
    )
    rot = RotaryEmbedding(32, 5e5, scaling=ours, max_seq_len=16)
    for offset, T in SPANS:
        end = offset + T
        inv_freq, scale = rope_inv_freq(32, 5e5, ours, seq_len=end)
        hf_inv_freq, hf_scale = _compute_longrope_parameters(config, seq_len=end)
        torch.testing.assert_close(inv_freq, hf_inv_freq, rtol=0, atol=0)
        paper = math.sqrt(1 + math.log(8) / math.log(ORIG))  # LongRoPE's default attention factor
        assert scale == pytest.approx(hf_scale) and hf_scale == pytest.approx(attention_factor or paper)
        x = torch.randn(1, 2, T, 32, generator=g)
        cos, sin = Phi3RotaryEmbedding(config)(x, torch.arange(end)[None])  # a fresh sequence of length end
        x1, x2 = x.chunk(2, dim=-1)
        expected = x * cos[:, offset:] + torch.cat((-x2, x1), dim=-1) * sin[:, offset:]
        torch.testing.assert_close(rot(x, offset), expected)


def test_p_rope_keeps_the_fastest_pairs_and_passes_the_rest_through():
    x = torch.randn(2, 3, 10, 16)
    plain = RotaryEmbedding(16, max_seq_len=4)
    assert torch.equal(RotaryEmbedding(16, fraction=1.0)(x, 7), plain(x, 7))  # p = 1: plain RoPE, bit for bit
    for interleaved in (False, True):
        half = RotaryEmbedding(16, fraction=0.5, interleaved=interleaved)
        inv_freq, _ = rope_inv_freq(16, fraction=0.5)
        torch.testing.assert_close(inv_freq[:4], rope_inv_freq(16)[0][:4], rtol=0, atol=0)  # fastest 4 of 8
        assert (inv_freq[4:] == 0).all()
        y, ref = half(x, 7), RotaryEmbedding(16, interleaved=interleaved)(x, 7)
        kept = torch.tensor([i % 8 < 4 for i in range(16)]) if not interleaved else torch.arange(16) < 8
        assert torch.equal(y[..., ~kept], x[..., ~kept])  # zero frequency: unchanged, bit for bit
        torch.testing.assert_close(y[..., kept], ref[..., kept], rtol=0, atol=0)
    assert (rope_inv_freq(16, fraction=0.75)[0] > 0).sum() == 6  # int(0.75 * 16) // 2


def test_xpos_scale_is_the_papers():  # against rotary-embedding-torch: test_positional.py (the scheme)
    zeta = (torch.arange(0, 16, 2) / 16 + 0.4) / 1.4  # Sun et al. 2022, written out
    expected = torch.stack((zeta, zeta**2)).repeat(1, 2)  # positions 512 and 1024, half-split layout
    torch.testing.assert_close(xpos_scale(16, torch.tensor([512, 1024]), 512.0), expected)


def test_inv_freq_even_odd_question():
    """Is 1 / base**(arange(0, d/2) / (d/2)) the same as 1 / base**(arange(0, d, 2)[:d//2] / d)?
    Yes for even d, bit for bit (i / (d/2) and 2i / d are the same rational, correctly rounded);
    no for odd d (exponents i / (d//2) vs 2i / d), which is why rope_inv_freq rejects odd d."""
    base = 10000.0

    def both(d):
        a = 1.0 / base ** (torch.arange(0, d // 2, dtype=torch.float32) / (d // 2))
        b = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32)[: d // 2] / d)
        return a, b

    for d in (8, 64, 96, 128):
        a, b = both(d)
        assert torch.equal(a, b) and torch.equal(rope_inv_freq(d, base)[0], b)
    a, b = both(63)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="rotary_dim"):
        rope_inv_freq(63, base)


def test_gradient_and_dtypes():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 8, dtype=torch.float64, requires_grad=True)
    for interleaved in (False, True):
        rot = RotaryEmbedding(8, rotary_dim=6, interleaved=interleaved)
        assert torch.autograd.gradcheck(lambda t: rot(t, 3), (x,))  # noqa: B023
        assert torch.autograd.gradgradcheck(lambda t: rot(t, 3), (x,))  # noqa: B023
    cos, sin = rope_cos_sin(rope_inv_freq(8)[0], torch.arange(5))
    assert cos.dtype == torch.float32 and apply_rope(x.detach().half(), cos, sin).dtype == torch.float16
    x_bf16 = torch.randn(1, 2, 5, 12, dtype=torch.bfloat16, requires_grad=True)  # partial, fp32 cos/sin
    apply_rope(x_bf16, cos, sin).sum().backward()
    assert x_bf16.grad.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="positions"):
        rope_cos_sin(rope_inv_freq(8)[0], torch.arange(5, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="constants"):
        apply_rope(x, cos.requires_grad_(), sin)


def test_buffers_follow_device_and_stay_out_of_state_dict():
    rot = RotaryEmbedding(16, max_seq_len=8)
    assert rot.state_dict() == {} and {name for name, _ in rot.named_buffers()} == {"cos", "sin"}
    rot.to("meta")  # a device without data: shows that growth builds on the module's device
    out = rot(torch.empty(1, 2, 4, 16, device="meta"), offset=30)
    assert out.device.type == "meta" and rot.cos.device.type == "meta" and rot.cos.shape[0] >= 34


def test_compiles_without_graph_breaks():
    torch.manual_seed(0)
    rot = RotaryEmbedding(16, rotary_dim=8, max_seq_len=32)
    x = torch.randn(2, 3, 10, 16)
    compiled = torch.compile(rot, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    torch.testing.assert_close(compiled(x, 4), rot(x, 4))
    longer = RotaryEmbedding(16, rotary_dim=8, max_seq_len=64)
    torch.testing.assert_close(torch.compile(rot, backend="eager")(x, 40), longer(x, 40))  # grows: one break


LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8}
LONGROPE = {
    "rope_type": "longrope",
    "factor": 4.0,
    "original_max_position_embeddings": 8,
    "short_factor": [1.0] * 8,
    "long_factor": [2.0] * 8,
}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(head_dim=7), "head_dim"),
        (dict(head_dim=0), "head_dim"),
        (dict(rotary_dim=5), "rotary_dim"),
        (dict(rotary_dim=0), "rotary_dim"),
        (dict(rotary_dim=18), r"rotary_dim must be <= head_dim \(16\), got 18"),
        (dict(base=0.0), "base"),
        (dict(base=-1e4), "base"),
        (dict(max_seq_len=0), "max_seq_len"),
        (dict(scaling={"rope_type": "linear", "factor": 0.0}), "factor"),
        (dict(scaling={"rope_type": "ntk", "factor": -2}), "factor"),
        (dict(scaling={"rope_type": "rope"}), r"unknown scaling rope_type 'rope'; known: \['default', 'dyn"),
        (dict(scaling={"factor": 2.0}), "rope_type"),
        (dict(scaling={"rope_type": "dynamic", "factor": 2.0}), r"missing keys \['original_max_position"),
        (dict(scaling={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), r"unknown keys \['rope_th"),
        (dict(scaling={**LLAMA3, "low_freq_factor": 1.0}), r"missing keys \['high_freq_factor'\]"),
        (dict(scaling={**LLAMA3, "low_freq_factor": 4.0, "high_freq_factor": 1.0}), "low_freq_factor <"),
        (
            dict(scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 1.5}),
            "original_max_position_embeddings'] must be a positive integer",
        ),
        (
            dict(
                scaling={
                    "rope_type": "yarn",
                    "factor": 2.0,
                    "original_max_position_embeddings": 8,
                    "beta_fast": 1,
                }
            ),
            "beta_slow < beta_fast",
        ),
        (dict(scaling={**LONGROPE, "short_factor": [1.0] * 7}), r"short_factor'\] must be a list of .* 8 n"),
        (dict(scaling={**LONGROPE, "long_factor": [1.0] * 7 + [0.0]}), r"long_factor'\]\[7\] must be a pos"),
        (dict(fraction=0.0), r"fraction \(p-RoPE\) must be a number in \(0, 1\], got 0.0"),
        (dict(fraction=1.5), r"fraction \(p-RoPE\) must be a number in \(0, 1\]"),
        (dict(fraction=0.1), "keeps no pair of rotary_dim=16 rotating"),
        (dict(rotary_dim=2, scaling={"rope_type": "ntk", "factor": 2.0}), "rotary_dim > 2"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RotaryEmbedding(**{"head_dim": 16, **kwargs})


def test_bad_inputs_raise():
    rot = RotaryEmbedding(16)
    with pytest.raises(ValueError, match="head_dim=16"):
        rot(torch.randn(1, 2, 3, 12))
    with pytest.raises(ValueError, match="offset"):
        rot(torch.randn(1, 2, 3, 16), offset=-1)


@pytest.mark.parametrize("scaling", [{}, {"rope_type": ["yarn"]}, {"rope_type": None}])
def test_malformed_scaling_dicts_are_named(scaling):
    with pytest.raises(ValueError, match="rope_type"):
        RotaryEmbedding(16, scaling=scaling)
