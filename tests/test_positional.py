"""positional.py: the registry (every scheme, attention_bias.py's included), the absolute and rotary
schemes against their papers' formulas (Vaswani's sinusoids, RoPE through rope.py), position parameters
of every scheme, lengths past block_size."""

import math

import pytest
import torch
from helpers import model_for, tiny

from positional import POS_ENCODINGS, Positions
from rope import xpos_scale

SCHEMES = sorted(POS_ENCODINGS)


# position parameters of `tiny` (block 16, 2 layers, 4 heads, 32 wide, head size 8), from the papers' sizes
POSITION_PARAMS = {
    "none": 0,
    "sinusoidal": 0,
    "rope": 0,
    "xpos": 0,
    "alibi": 0,
    "learned": 16 * 32,  # a row per position
    "t5": 32 * 4,  # 32 buckets x heads, one table
    "kerple": 2 * 2 * 4,  # r1, r2 per layer and head
    "fire": (32 + 32) + (4 * 32 + 4) + 2,  # MLP 1 -> 32 -> heads, c, threshold
    "cope": 2 * 16 * 8,  # per layer: block_size positions x head size
    "fox": 2 * (32 * 4 + 4),  # per layer: the forget gates' Linear(C, nh) with bias
    "pope": 4 * 8,  # the keys' phase bias: kv heads x head size, shared by the layers
    "stickbreaking": 0,
}


def test_registry_has_every_scheme():
    assert set(SCHEMES) == set(POSITION_PARAMS)


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_position_parameters_are_counted_as_such(pos_enc):
    model = model_for(pos_enc)
    pos_params = sum(p.numel() for p in model.transformer.wpe.parameters())
    assert pos_params == POSITION_PARAMS[pos_enc]
    assert model.num_params(non_embedding=False) - model.num_params() == 128 * 32 + pos_params
    buffers = {n for n, _ in model.transformer.wpe.named_buffers()}
    assert not any(k.removeprefix("transformer.wpe.") in buffers for k in model.state_dict())  # derived ones


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_every_position_parameter_learns(pos_enc):
    model = model_for(pos_enc).train()
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(9))
    model(idx, targets=idx)[1].backward()
    for name, p in model.transformer.wpe.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_length_beyond_block_size(pos_enc):
    model = model_for(pos_enc)
    idx = torch.zeros(1, 33, dtype=torch.long)
    if pos_enc == "learned":
        with pytest.raises(ValueError, match="block_size"):
            model(idx, targets=idx)
    else:
        logits, loss = model(idx, targets=idx)
        assert logits.shape == (1, 33, 65) and torch.isfinite(loss)


def test_sinusoidal_table_is_vaswani():
    model = model_for("sinusoidal")
    pe = model.transformer.wpe.pe / model.transformer.wpe.scale  # (block_size, C)
    p, i = 5, 3
    torch.testing.assert_close(pe[p, 2 * i], torch.tensor(math.sin(p / 10000 ** (2 * i / 32))))
    torch.testing.assert_close(pe[p, 2 * i + 1], torch.tensor(math.cos(p / 10000 ** (2 * i / 32))))
    long_x = torch.zeros(1, 50, 32)
    out = model.transformer.wpe.embed(long_x, Positions(50, 50))  # grows past block_size
    torch.testing.assert_close(out[0, :16], model.transformer.wpe.pe[:16])


def test_rope_scheme_uses_rope_py():
    from rope import RotaryEmbedding

    model = model_for("rope", rope_base=500.0, rope_dim=4)
    qk = torch.randn(1, 4 + 4, 10, 8)  # (B, nh + n_kv, T, hs): query heads, then key heads
    q, k = qk.chunk(2, dim=1)
    ref = RotaryEmbedding(8, base=500.0, rotary_dim=4)
    q2, k2 = model.transformer.wpe.rotate(qk, Positions(10, 13), 0).chunk(2, dim=1)  # positions 3 .. 12
    torch.testing.assert_close(q2, ref(q, 3))
    torch.testing.assert_close(k2, ref(k, 3))


@pytest.mark.parametrize("rope_dim", [8, 4])
def test_xpos_equals_rotary_embedding_torch(rope_dim):
    """The xpos scheme == rotary-embedding-torch's xPos (interleaved pairs, its convention). It centres
    positions on N // 2 for a sequence of N, which cancels in q.k; ours uses absolute positions (a KV cache
    needs them), so ours = theirs x zeta^(+-(N // 2) / scale_base) per pair. Chunks at an offset are
    compared with the rows of the whole sequence."""
    ret = pytest.importorskip("rotary_embedding_torch")
    N, base = 40, 64.0
    pe = model_for("xpos", rope_interleaved=True, rope_dim=rope_dim, xpos_scale_base=base).transformer.wpe
    ref = ret.RotaryEmbedding(dim=rope_dim, use_xpos=True, xpos_scale_base=base)
    q, k = torch.randn(2, 2, 4, N, 8, generator=torch.Generator().manual_seed(2))
    q_ref, k_ref = ref.rotate_queries_and_keys(q, k)
    center = xpos_scale(rope_dim, torch.tensor(N // 2), base, interleaved=True)  # (d,)
    for offset, T in [(0, N), (5, 12), (39, 1)]:
        sl = slice(offset, offset + T)
        qk = torch.cat((q[..., sl, :], k[..., sl, :]), dim=1)  # (B, nh + n_kv, T, hs)
        q_ours, k_ours = pe.rotate(qk, Positions(T, offset + T), 0).chunk(2, dim=1)
        q_ours[..., :rope_dim] /= center
        k_ours[..., :rope_dim] *= center
        torch.testing.assert_close(q_ours, q_ref[..., sl, :])
        torch.testing.assert_close(k_ours, k_ref[..., sl, :])
        assert torch.equal(q_ours[..., rope_dim:], q[..., sl, rope_dim:])  # partial: the rest untouched


@pytest.mark.parametrize(("n_layer", "k"), [(4, 4), (6, 4), (8, 2), (5, 3), (3, 1)])
def test_nope_layer_pattern_is_smollm3s(n_layer, k):
    transformers = pytest.importorskip("transformers")
    hf = transformers.SmolLM3Config(num_hidden_layers=n_layer, no_rope_layer_interval=k).no_rope_layers
    pe = model_for("rope", n_layer=n_layer, rope_nope_interval=k).transformer.wpe
    assert [int(layer not in pe.nope_layers) for layer in range(n_layer)] == hf  # 1 = uses RoPE


def test_nope_layers_attend_like_none():
    """A NoPE layer of a hybrid is the `none` scheme's layer; with every layer NoPE the model is `none`."""
    hybrid = model_for("rope", n_layer=3, rope_nope_layers="0,2", seed=4)
    none = model_for("none", n_layer=3, seed=4)
    assert hybrid.transformer.wpe.nope_layers == {0, 2}
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(5))
    pos = Positions(12, 12, *[torch.arange(3, 15).expand(2, 12)] * 2)  # positions 3 .. 14
    for layer, same in [(0, True), (1, False), (2, True)]:
        ours, theirs = (m.transformer.h[layer].attn(x, m.transformer.wpe, None, pos) for m in (hybrid, none))
        assert torch.equal(ours, theirs) == same
    every = model_for("rope", n_layer=3, rope_nope_interval=1, seed=4)
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(6))
    assert torch.equal(every(idx, targets=idx)[0], none(idx, targets=idx)[0])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(rope_nope_interval=3), r"rope_nope_interval must be an integer in \[1, n_layer=2\]"),
        (dict(rope_nope_interval=0), r"rope_nope_interval must be an integer in \[1, n_layer=2\]"),
        (dict(rope_nope_layers="2"), r"rope_nope_layers must list distinct layer indices in \[0, 1\]"),
        (dict(rope_nope_layers="1,1"), "distinct"),
        (dict(rope_nope_layers="a"), "not a valid int"),
        (dict(rope_nope_layers="1", rope_nope_interval=2), "not both"),
        (dict(rope_fraction=0.0), r"fraction \(p-RoPE\) must be a number in \(0, 1\]"),
        (dict(pos_enc="xpos", xpos_scale_base=0.0), "xpos_scale_base must be a positive number"),
        (dict(pos_enc="alibi", rope_fraction=0.5), r"rope_fraction=0.5 is only used by pos_enc in"),
        (dict(pos_enc="rope", xpos_scale_base=64.0), r"xpos_scale_base=64.0 is only used by .*\['xpos'\]"),
    ],
)
def test_rope_family_knobs_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


TAKERS = [n for n in SCHEMES if POS_ENCODINGS[n].position_ids != "none"]
RELATIVE = ["rope", "xpos", "alibi", "t5", "kerple"]  # attention depends on id_i - id_j only (FIRE: on i too)


def _ids(pos_enc: str, seed: int) -> torch.Tensor:
    """(3, 16) ids in [1, 40): coupled-like ids that go back and forth where the scheme takes any ids,
    sorted distinct ones (randomized positions) where it takes monotone ids."""
    g = torch.Generator().manual_seed(seed)
    if pos_enc == "abacus" or POS_ENCODINGS[pos_enc].position_ids == "any":
        return torch.randint(1, 40, (3, 16), generator=g)
    return torch.stack([torch.randperm(39, generator=g)[:16].sort().values + 1 for _ in range(3)])


@pytest.mark.parametrize("pos_enc", TAKERS)
def test_explicit_ids_0_to_T_minus_1_are_the_default(pos_enc):
    model = model_for(pos_enc, random_positions=48)
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(idx, idx, torch.arange(16).expand(3, 16)), model(idx, idx))
    same = torch.allclose(model(idx, idx, _ids(pos_enc, 2))[0], model(idx, idx)[0])
    assert same == (pos_enc == "none")  # none takes ids and has no use for them


@pytest.mark.parametrize("pos_enc", RELATIVE)
def test_relative_schemes_ignore_a_constant_shift_of_the_ids(pos_enc):
    model = model_for(pos_enc, random_positions=48)
    idx, ids = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(3)), _ids(pos_enc, 4)
    torch.testing.assert_close(model(idx, idx, ids + 7), model(idx, idx, ids), rtol=1e-4, atol=1e-5)


def _assert_decoding_equals_recomputation(model, idx: torch.Tensor, **ids) -> None:
    """Greedy decoding of idx[:, 5:] through the cache at the given ids == a full forward per step."""
    steps = idx.size(1) - 5
    out, ref = model.generate(idx[:, :5], steps, temperature=0, **ids), idx[:, :5]
    for _ in range(steps):
        logits, _ = model(ref, **{k: v[:, : ref.size(1)] for k, v in ids.items()})
        ref = torch.cat((ref, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("pos_enc", [*TAKERS, "abacus"])
def test_kv_cache_decoding_with_ids_equals_recomputation(pos_enc):
    """The cache keeps every key with its id: greedy decoding through it == a full forward per step."""
    abacus = pos_enc == "abacus"
    model = model_for("none", abacus=40) if abacus else model_for(pos_enc, random_positions=48)
    idx, ids = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(5)), _ids(pos_enc, 6)
    _assert_decoding_equals_recomputation(model, idx, **{"abacus" if abacus else "positions": ids})


@pytest.mark.parametrize("pos_enc", [n for n in TAKERS if POS_ENCODINGS[n].position_ids == "any"])
def test_decoding_with_ids_is_not_cropped_to_the_id_range(pos_enc):
    """Coupled ids repeat, so a problem is longer than its id range M: decoding at given ids keeps the
    whole context (a crop to M rows dropped the first operand's top digits past 2 M / 3 tokens)."""
    model = model_for(pos_enc, random_positions=8)
    with torch.no_grad():  # weights far from init, so that greedy tokens depend on the whole context
        for p in model.parameters():
            p.mul_(20)
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(7))
    ids = torch.randint(1, 8, (3, 16), generator=torch.Generator().manual_seed(8))
    _assert_decoding_equals_recomputation(model, idx, positions=ids)


@pytest.mark.parametrize("pos_enc", [n for n in TAKERS if POS_ENCODINGS[n].position_ids == "any"])
def test_an_id_window_decodes_through_the_cache_and_a_wide_one_is_no_window(pos_enc):
    """id_window=D hides the keys more than D ids from the query, per sequence and in the cache too (it keeps
    each key's id); a D past every distance in the ids changes nothing."""
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(9))
    ids = torch.randint(1, 8, (3, 16), generator=torch.Generator().manual_seed(10))  # back and forth
    model = model_for(pos_enc, random_positions=8, id_window=2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20)
    _assert_decoding_equals_recomputation(model, idx, positions=ids)
    wide, plain = model_for(pos_enc, random_positions=8, id_window=6), model_for(pos_enc, random_positions=8)
    plain.load_state_dict(model.state_dict()), wide.load_state_dict(model.state_dict())
    torch.testing.assert_close(wide(idx, idx, ids), plain(idx, idx, ids))
    assert not torch.allclose(model(idx, idx, ids)[0], plain(idx, idx, ids)[0])
