"""flex.py: FlexAttention == SDPA for every softmax scheme and option (a scheme's own score_mod and the
bias read from layer_bias alike), through the KV cache too; the kernel choice; the CPU's limits are clear
errors. Gradients through FlexAttention need a GPU (torch 2.13 has no backward on CPU): checked there."""

import dataclasses

import pytest
import torch
from helpers import model_for

from attention import Spec
from flex import choose, flex_attend
from positional import POS_ENCODINGS

SOFTMAX = [s for s in sorted(POS_ENCODINGS) if POS_ENCODINGS[s].normalise == "softmax"]
G = torch.Generator().manual_seed(0)


def both(model):
    """The model and a copy with the same weights whose layers run FlexAttention."""
    flex = type(model)(dataclasses.replace(model.config, attention="flex")).eval()
    flex.load_state_dict(model.state_dict())
    return model.eval(), flex


@pytest.mark.parametrize("pos_enc", SOFTMAX)
def test_flex_equals_sdpa_for_every_scheme(pos_enc):
    sdpa, flex = both(model_for(pos_enc))
    idx = torch.randint(0, 65, (2, 24), generator=G)  # past block_size (16) where the scheme can go
    idx = idx[:, :16] if sdpa.transformer.wpe.max_len else idx
    with torch.no_grad():
        torch.testing.assert_close(flex(idx, idx)[0], sdpa(idx, idx)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [dict(attn_sink=True), dict(ssmax=True), dict(window=5, window_pattern="SL"), dict(n_kv_head=2)],
    ids=str,
)
@pytest.mark.parametrize("pos_enc", ["alibi", "fox", "t5"])  # own score_mods (and a cache state), a table
def test_flex_equals_sdpa_with_options_and_through_the_cache(pos_enc, options):
    sdpa, flex = both(model_for(pos_enc, **options))
    idx = torch.randint(0, 65, (2, 20), generator=G)
    with torch.no_grad():
        torch.testing.assert_close(flex(idx, idx)[0], sdpa(idx, idx)[0], rtol=1e-4, atol=1e-5)
        assert torch.equal(
            flex.generate(idx[:, :6], 8, temperature=0), sdpa.generate(idx[:, :6], 8, temperature=0)
        )


def test_the_kernel_choice_and_the_cpus_limits():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = [choose("auto", needs_mask, d) for needs_mask in (True, False) for d in (cpu, cuda)]
    assert auto == ["sdpa", "flex", "sdpa", "sdpa"]
    assert choose("flex", False, cpu) == "flex" and choose("sdpa", True, cuda) == "sdpa"
    q = torch.randn(1, 2, 4, 8, requires_grad=True)
    spec = Spec(4, 4, 8**-0.5)
    with pytest.raises(ValueError, match="no backward on CPU"):
        flex_attend(q, q.detach(), q.detach(), spec)
    with pytest.raises(ValueError, match="no attention dropout"):
        flex_attend(q.detach(), q.detach(), q.detach(), spec, dropout=0.1)
    with pytest.raises(ValueError, match="attention must be one of"):
        model_for("rope", attention="triton")


def test_flex_equals_sdpa_with_an_id_window_over_a_tasks_ids():
    """An id window is a mask per sequence (a BlockMask with a batch dim); SSMax counts what it sees."""
    sdpa, flex = both(model_for("rope", random_positions=8, id_window=2, ssmax=True))
    idx, ids = torch.randint(0, 65, (2, 16), generator=G), torch.randint(1, 8, (2, 16), generator=G)
    with torch.no_grad():
        torch.testing.assert_close(flex(idx, idx, ids)[0], sdpa(idx, idx, ids)[0], rtol=1e-4, atol=1e-5)
