"""model.py: the GPT with every scheme (shapes, causality, KV cache, generation, HF GPT-2 parity),
ModelConfig validation, the optimizer and FLOPs."""

import dataclasses
import io
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import model_for, tiny

from model import GPT, KVCache, ModelConfig, generate_text
from positional import POS_ENCODINGS, LayerContext, Positions

SCHEMES = sorted(POS_ENCODINGS)
RELATIVE = [s for s in SCHEMES if s != "learned"]


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_shapes_and_initial_loss(pos_enc):
    model = model_for(pos_enc)
    idx, targets = torch.randint(0, 65, (2, 3, 16), generator=torch.Generator().manual_seed(1))
    logits, loss = model(idx, targets=targets)
    assert logits.shape == (3, 16, 65)
    assert torch.isfinite(loss)
    # GPT-2 init gives near-uniform predictions (targets differ from inputs: tying favours repeats)
    assert abs(loss.item() - math.log(65)) < 0.1
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 65) and loss is None


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_causality(pos_enc):
    model = model_for(pos_enc)
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 65, (2, 16), generator=g)
    logits, _ = model(idx, targets=idx)
    for t in (0, 7, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 65
        logits2, _ = model(changed, targets=changed)
        torch.testing.assert_close(logits2[:, :t], logits[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(logits2[:, t], logits[:, t])


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_kv_cache_matches_full_forward(pos_enc):
    """Prefill then one token at a time (and one chunk) through the cache == one full forward."""
    model = model_for(pos_enc)
    T = 16 if pos_enc == "learned" else 40  # relative schemes also past block_size
    idx = torch.randint(0, 65, (2, T), generator=torch.Generator().manual_seed(3))
    full, _ = model(idx, targets=idx)
    cache = KVCache(model.config.n_layer, T)
    steps = [model(idx[:, :5], targets=idx[:, :5], cache=cache)[0]]
    steps.append(model(idx[:, 5:9], targets=idx[:, 5:9], cache=cache)[0])  # a chunk with offset > 0
    for t in range(9, T):
        steps.append(model(idx[:, t : t + 1], targets=idx[:, t : t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_greedy_generate_equals_recomputation(pos_enc):
    model = model_for(pos_enc)
    idx = torch.randint(0, 65, (2, 5), generator=torch.Generator().manual_seed(4))
    out = model.generate(idx, max_new_tokens=30, temperature=0)  # 35 > block_size 16
    ref = idx
    for _ in range(30):  # nanoGPT's loop: full forward each step, context cropped for `learned`
        ctx = ref[:, -16:] if pos_enc == "learned" else ref
        logits, _ = model(ctx)
        ref = torch.cat((ref, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, ref)


def test_sampling_is_seeded_and_top_k_restricts():
    model = model_for("rope")
    idx = torch.zeros(1, 1, dtype=torch.long)
    torch.manual_seed(0)
    a = model.generate(idx, 20, temperature=1.0, top_k=5)
    torch.manual_seed(0)
    b = model.generate(idx, 20, temperature=1.0, top_k=5)
    assert torch.equal(a, b)
    one = model.generate(idx, 10, temperature=1.0, top_k=1)
    assert torch.equal(one, model.generate(idx, 10, temperature=0))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(idx, 1, temperature=-1)


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_state_dict_round_trip(pos_enc):
    model = model_for(pos_enc, seed=0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = model_for(pos_enc, seed=1)
    other.load_state_dict(torch.load(buf, weights_only=True))
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(other(idx, targets=idx)[0], model(idx, targets=idx)[0], rtol=0, atol=0)


def manual_attention(q, k, v, bias=None):
    """Textbook attention: softmax(q k^T / sqrt(hs) + bias, causal) v. q, k: (B, nh, T, E), v: (B, nh, T,
    hs) (PoPE's E is 2 hs; the scale stays the head size's)."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(v.size(-1))  # (B, nh, T, T)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return F.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize("pos_enc", [s for s in SCHEMES if POS_ENCODINGS[s].normalise == "softmax"])
def test_attention_layer_equals_manual_attention(pos_enc):
    """The attention block through SDPA == textbook attention with the scheme's rotation and the layer's
    bias (each bias is checked against its paper or a reference library in test_attention_bias.py and
    test_attention_mods.py; stick-breaking, which has no softmax, there too)."""
    model = model_for(pos_enc)
    layer = 1
    attn, pe = model.transformer.h[layer].attn, model.transformer.wpe
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(6))
    B, T, C = x.shape
    q, k, v = (t.view(B, T, 4, 8).transpose(1, 2) for t in attn.c_attn(x).split(C, dim=2))
    pos = Positions(T, T)
    q, k = pe.rotate(torch.cat((q, k), dim=1), pos, layer).chunk(2, dim=1)
    ctx = LayerContext(layer, x, pos, pos.causal(x.device), None)
    bias = pe.layer_bias(pe.attn_bias(pos, x.device), q, k, ctx)
    y = manual_attention(q, k, v, bias).transpose(1, 2).reshape(B, T, C)
    expected = attn.c_proj(y)
    got = attn(x, pe, pe.attn_bias(pos, x.device), pos)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_bfloat16_autocast_runs_every_scheme(pos_enc):
    model = model_for(pos_enc)
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(idx, targets=idx)
    assert logits.dtype == torch.bfloat16
    assert abs(loss.item() - model(idx, targets=idx)[1].item()) < 0.05


def test_learned_matches_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = tiny("learned", vocab_size=100, block_size=24, n_layer=3, bias=True)
    torch.manual_seed(0)
    ours = GPT(cfg).eval()
    hf_cfg = transformers.GPT2Config(
        vocab_size=100,
        n_positions=24,
        n_embd=32,
        n_layer=3,
        n_head=4,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    sd = ours.state_dict()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name == "transformer.wte.weight":
                p.copy_(sd[name][:100])  # our table is padded to a multiple of 64
            elif name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                p.copy_(sd[name].t())  # HF GPT-2 uses Conv1D, i.e. transposed Linear weights
            elif name != "lm_head.weight":
                p.copy_(sd[name])
    idx = torch.randint(0, 100, (2, 24), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours(idx, targets=idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(pos_enc="bogus"), r"pos_enc='bogus' is not one of \['alibi', 'cope', 'fire', 'fox', "),
        (dict(n_embd=30), "n_embd=30 must be divisible by n_head=4"),
        (dict(n_embd=36, n_head=4), "even head size"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(n_layer=0), r"n_layer must be an integer in \[1, "),
        (dict(pos_enc="learned", rope_base=500.0), r"rope_base=500.0 is only used by .*\['rope', 'xpos'\]"),
        (dict(rope_dim=12), "rotary_dim"),
        (dict(rope_base=-1.0), "base"),
        (dict(rope_scaling={"rope_type": "bogus"}), "bogus"),
    ],
)
def test_config_errors_name_the_values(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_config_is_frozen_and_serialisable():
    cfg = tiny(rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(AttributeError):
        cfg.n_layer = 3
    assert ModelConfig(**cfg.to_dict()) == cfg


def test_flops_per_token():
    model = model_for("learned")
    N = model.num_params() + 128 * 32  # the tied head is a matmul too
    assert model.flops_per_token() == 6 * N + 12 * 2 * 32 * 16


class Chars:
    """A tokenizer of the characters a-z, for generate_text."""

    def encode(self, text):
        return [ord(c) - 97 for c in text]

    def decode(self, ids):
        return "".join(chr(97 + i) for i in ids)


@pytest.mark.parametrize("pos_enc", ["rope", "learned"])
def test_generate_text_never_goes_past_block_size(pos_enc):
    model = model_for(pos_enc, vocab_size=26)
    seen = []
    model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(
            args[0].size(1) + (kwargs["cache"].pos if kwargs.get("cache") else 0)
        ),
        with_kwargs=True,
    )
    prompt = "x" * 20  # longer than block_size
    texts = generate_text(model, Chars(), prompt, max_new_tokens=50, temperature=0, num_samples=2)
    assert [len(t) for t in texts] == [70, 70] and texts[0] == texts[1] and texts[0].startswith(prompt)
    assert max(seen) == model.config.block_size
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate_text(model, Chars(), "", 5)


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_qk_norm_keeps_causality_and_the_kv_cache(pos_enc):
    model = model_for(pos_enc, qk_norm=True)
    idx = torch.randint(0, 65, (2, 24), generator=torch.Generator().manual_seed(11))
    idx = idx[:, :16] if pos_enc == "learned" else idx
    full, _ = model(idx, targets=idx)
    cache = KVCache(model.config.n_layer, idx.size(1))
    steps = [model(idx[:, :7], targets=idx[:, :7], cache=cache)[0]]
    for t in range(7, idx.size(1)):
        steps.append(model(idx[:, t : t + 1], targets=idx[:, t : t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 65
    torch.testing.assert_close(model(changed, targets=changed)[0][:, :9], full[:, :9], rtol=0, atol=1e-6)


def test_qk_norm_is_nanochats_rms_norm_after_rope():
    """Normalising before the rotation (ours) == after it (nanochat): RMSNorm commutes with rotations."""
    model = model_for("rope", qk_norm=True)
    attn, pe = model.transformer.h[0].attn, model.transformer.wpe
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(12))
    q, k, v = (t.view(2, 12, 4, 8).transpose(1, 2) for t in attn.c_attn(x).split(32, dim=2))
    pos = Positions(12, 15)  # positions 3 .. 14, as after a cache of 3 (its keys are not needed here)
    q, k = (F.rms_norm(t, (8,)) for t in pe.rotate(torch.cat((q, k), 1), pos, 0).chunk(2, 1))  # nanochat's
    y = manual_attention(q, k, v).transpose(1, 2).reshape(2, 12, 32)
    torch.testing.assert_close(attn(x, pe, None, Positions(12, 12, *[torch.arange(3, 15).expand(2, 12)] * 2)),
                               attn.c_proj(y), rtol=1e-5, atol=1e-6)  # fmt: skip
    assert not any("qk_norm" in name for name, _ in model.named_parameters())  # no gains: nanochat's


def test_randomized_positions():
    """Positions 0..T-1 given explicitly == the default; RoPE sees only differences (a shift changes
    nothing); learned reads the rows of its positions from a table of M rows."""
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(13))
    pos = torch.randperm(40, generator=torch.Generator().manual_seed(14))[:16].sort().values.expand(3, 16)
    rope = model_for("rope", random_positions=48)
    torch.testing.assert_close(rope(idx, idx, torch.arange(16).expand(3, 16))[0], rope(idx, idx)[0])
    torch.testing.assert_close(rope(idx, idx, pos)[0], rope(idx, idx, pos + 7)[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rope(idx, idx, pos)[0], rope(idx, idx)[0])
    learned = model_for("learned", random_positions=48)
    assert learned.transformer.wpe.weight.shape == (48, 32) and learned.transformer.wpe.max_len == 48
    x = learned.transformer.wte(idx)
    ids = Positions(16, 16, pos, pos)
    torch.testing.assert_close(learned.transformer.wpe.embed(x, ids), x + learned.transformer.wpe.weight[pos])
    with pytest.raises(ValueError, match=r"positions must be \(B, T\) = \(3, 16\)"):
        rope(idx, positions=pos[:, :5])
    for model in (rope, learned):  # greedy decoding at given positions through the cache == recomputation
        out, ref = model.generate(idx[:, :5], 11, temperature=0, positions=pos), idx[:, :5]
        for _ in range(11):
            logits, _ = model(ref, positions=pos[:, : ref.size(1)])
            ref = torch.cat((ref, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
        assert torch.equal(out, ref)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(random_positions=1), r"random_positions must be an integer in \[2, "),
        (dict(pos_enc="cope", random_positions=64), r"random_positions is for pos_enc in \['alibi', 'fire'"),
        (dict(random_positions=64, rope_scaling={"rope_type": "linear", "factor": 2.0}), "pick one"),
        (dict(qk_norm="maybe"), "qk_norm='maybe' is not a valid bool"),
    ],
)
def test_model_options_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


LLAMA_SHAPES = [  # (n_layer, n_head, n_kv_head, n_embd, tie): MHA, GQA, MQA, tied
    (2, 4, 4, 32, False),
    (3, 4, 2, 32, False),
    (1, 8, 1, 64, False),
    (2, 4, 2, 32, True),
]


@pytest.mark.parametrize(("n_layer", "n_head", "n_kv", "C", "tie"), LLAMA_SHAPES)
def test_llama_block_equals_hugging_face_llama(n_layer, n_head, n_kv, C, tie):
    """block=llama (RMSNorm, SwiGLU, no biases, GQA) with rope == LlamaForCausalLM built from the same config
    with the weights copied over, logits element-wise (random init, nothing downloaded)."""
    transformers = pytest.importorskip("transformers")
    cfg = ModelConfig(
        vocab_size=100,
        block_size=32,
        n_layer=n_layer,
        n_head=n_head,
        n_kv_head=n_kv,
        n_embd=C,
        bias=False,
        block="llama",
        tie_embeddings=tie,
        rope_base=5e5,
    )
    torch.manual_seed(0)
    ours = GPT(cfg).eval()
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=100,
            hidden_size=C,
            intermediate_size=cfg.swiglu_hidden,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_kv,
            max_position_embeddings=32,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 5e5},
            tie_word_embeddings=tie,
            attention_bias=False,
            mlp_bias=False,
        )
    ).eval()
    hs, sd = C // n_head, ours.state_dict()
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(sd["transformer.wte.weight"][:100])
        hf.lm_head.weight.copy_(sd["lm_head.weight"][:100])
        hf.model.norm.weight.copy_(sd["transformer.ln_f.weight"])
        for i, layer in enumerate(hf.model.layers):
            p = f"transformer.h.{i}."
            q, k, v = sd[p + "attn.c_attn.weight"].split((n_head * hs, n_kv * hs, n_kv * hs))
            attn = layer.self_attn
            for proj, w in zip((attn.q_proj, attn.k_proj, attn.v_proj), (q, k, v), strict=True):
                proj.weight.copy_(w)
            layer.self_attn.o_proj.weight.copy_(sd[p + "attn.c_proj.weight"])
            layer.mlp.gate_proj.weight.copy_(sd[p + "mlp.c_gate.weight"])
            layer.mlp.up_proj.weight.copy_(sd[p + "mlp.c_fc.weight"])
            layer.mlp.down_proj.weight.copy_(sd[p + "mlp.c_proj.weight"])
            layer.input_layernorm.weight.copy_(sd[p + "ln_1.weight"])
            layer.post_attention_layernorm.weight.copy_(sd[p + "ln_2.weight"])
    idx = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours(idx, targets=idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-5)
    cache = KVCache(n_layer, 32)  # decoding through the (n_kv-head) cache == recomputation
    steps = [ours(idx[:, :9], targets=idx[:, :9], cache=cache)[0]]
    steps += [ours(idx[:, t : t + 1], targets=idx[:, t : t + 1], cache=cache)[0] for t in range(9, 32)]
    torch.testing.assert_close(torch.cat(steps, dim=1), ours(idx, targets=idx)[0], rtol=1e-4, atol=1e-5)
    assert cache.k.shape[2] == n_kv


def test_llama_block_sizes_and_options():
    cfg = tiny(block="llama", bias=False, tie_embeddings=False, n_kv_head=2)
    model = GPT(cfg)
    assert cfg.swiglu_hidden == 256  # Llama's rule: 8C/3 rounded up to a multiple of 256
    assert model.transformer.h[0].mlp.c_gate.weight.shape == (256, 32)
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert model.transformer.h[0].attn.c_attn.weight.shape == ((4 + 2 * 2) * 8, 32)
    assert isinstance(model.transformer.ln_f, torch.nn.RMSNorm)
    N = model.num_params()  # untied: the head is a non-embedding matmul, counted once
    assert model.flops_per_token() == 6 * N + 12 * 2 * 32 * 16
    with pytest.raises(ValueError, match="n_kv_head=3 must divide n_head=4"):
        tiny(n_kv_head=3)
    with pytest.raises(ValueError, match="mlp_hidden is the SwiGLU width of block='llama'"):
        tiny(mlp_hidden=64)
    with pytest.raises(ValueError, match=r"block must be one of \['gpt2', 'llama'\]"):
        tiny(block="mistral")


def test_a_switched_scheme_is_the_same_weights_under_none():
    """DroPE's switch: a rope model (knobs and all) switched to none == a none model with its weights; a
    scheme with parameters cannot be switched, nor can the config change anything but the scheme."""
    rope = model_for("rope", rope_base=500.0, qk_norm=True)
    none = GPT(rope.config.with_scheme("none"))
    none.load_state_dict(rope.state_dict())
    rope.switch_scheme(rope.config.with_scheme("none"))
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(rope(idx, idx), none(idx, idx), rtol=0, atol=0)
    assert rope.config == none.config and rope.config.rope_base is None and rope.config.qk_norm
    for model, target in ((model_for("learned"), "none"), (model_for("rope"), "alibi")):
        with pytest.raises(ValueError, match="cannot switch"):
            model.switch_scheme(dataclasses.replace(model.config.with_scheme(target), n_layer=3))
    with pytest.raises(ValueError, match="cannot switch"):
        model_for("learned").switch_scheme(model_for("learned").config.with_scheme("none"))
