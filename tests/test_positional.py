"""positional.py: the registry (every scheme, attention_bias.py's included), the absolute and rotary
schemes against their papers' formulas (Vaswani's sinusoids, RoPE through rope.py), position parameters
of every scheme, lengths past block_size."""

import math

import pytest
import torch
from helpers import model_for

from positional import POS_ENCODINGS

SCHEMES = sorted(POS_ENCODINGS)


# position parameters of `tiny` (block 16, 2 layers, 4 heads, 32 wide, head size 8), from the papers' sizes
POSITION_PARAMS = {
    "none": 0, "sinusoidal": 0, "rope": 0, "alibi": 0,
    "learned": 16 * 32,  # a row per position
    "t5": 32 * 4,  # 32 buckets x heads, one table
    "kerple": 2 * 2 * 4,  # r1, r2 per layer and head
    "fire": (32 + 32) + (4 * 32 + 4) + 2,  # MLP 1 -> 32 -> heads, c, threshold
    "cope": 2 * 16 * 8,  # per layer: block_size positions x head size
}  # fmt: skip


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
    out = model.transformer.wpe.embed(long_x, 0)  # grows past block_size
    torch.testing.assert_close(out[0, :16], model.transformer.wpe.pe[:16])


def test_rope_scheme_uses_rope_py():
    from rope import RotaryEmbedding

    model = model_for("rope", rope_base=500.0, rope_dim=4)
    qk = torch.randn(2, 1, 4, 10, 8)  # (2, B, nh, T, hs): q and k stacked
    q, k = qk.unbind(0)
    ref = RotaryEmbedding(8, base=500.0, rotary_dim=4)
    q2, k2 = model.transformer.wpe.rotate(qk, 3, 0).unbind(0)
    torch.testing.assert_close(q2, ref(q, 3))
    torch.testing.assert_close(k2, ref(k, 3))
