"""positional.py: the registry and each scheme against its paper's formula (ALiBi slopes, Vaswani's
sinusoids, RoPE through rope.py), position parameters, lengths past block_size."""

import math

import pytest
import torch
from helpers import model_for

from positional import POS_ENCODINGS, alibi_slopes

SCHEMES = sorted(POS_ENCODINGS)


def test_registry_has_the_five_schemes():
    assert set(SCHEMES) == {"learned", "sinusoidal", "rope", "alibi", "none"}


@pytest.mark.parametrize("pos_enc", SCHEMES)
def test_only_learned_has_position_parameters(pos_enc):
    model = model_for(pos_enc)
    pos_params = sum(p.numel() for p in model.transformer.wpe.parameters())
    assert pos_params == (16 * 32 if pos_enc == "learned" else 0)
    assert model.num_params(non_embedding=False) - model.num_params() == 128 * 32 + pos_params
    assert not any(k.startswith("transformer.wpe") and "weight" not in k for k in model.state_dict())


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


def test_alibi_slopes_match_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # non-power-of-two: slopes of 4 heads, then every other slope of 8 heads (paper's get_slopes)
    expected = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))
    assert alibi_slopes(12).shape == (12,)


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
    q2, k2 = model.transformer.wpe.rotate(qk, 3).unbind(0)
    torch.testing.assert_close(q2, ref(q, 3))
    torch.testing.assert_close(k2, ref(k, 3))
