"""interop.py: every exportable scheme round-trips into transformers with equal logits (past block_size for
rope and alibi) and equal greedy generations; tokenizers that encode as ours; GPT-2 weights in."""

import pytest
import torch
from helpers import gpt2_or_skip, tiny

import interop
from model import GPT

transformers = pytest.importorskip("transformers")

CASES = {  # id: ModelConfig overrides of helpers.tiny (vocab 65, block 16, 2 layers, 4 heads, 32 wide)
    "learned": dict(pos_enc="learned", bias=True),
    "learned-untied-tanh": dict(pos_enc="learned", bias=False, tie_embeddings=False, gelu="tanh"),
    "rope-neox": dict(pos_enc="rope", bias=True, rope_base=500.0),
    "rope-neox-partial-interleaved": dict(pos_enc="rope", bias=False, rope_dim=4, rope_interleaved=True),
    "rope-neox-linear": dict(pos_enc="rope", rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "rope-llama-gqa": dict(pos_enc="rope", block="llama", bias=False, n_kv_head=2, tie_embeddings=False),
    "rope-llama-bias-tied": dict(pos_enc="rope", block="llama", bias=True, rope_interleaved=True),
    "alibi-mpt": dict(pos_enc="alibi", bias=False),
}  # fmt: skip


def trained_looking(cfg, seed=0) -> GPT:
    """A model with every weight (biases and gains too) away from its init, so that no mapping hides."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("case", list(CASES))
def test_export_has_our_logits_and_greedy_generations(case):
    model = trained_looking(tiny(**CASES[case]))
    hf = interop.to_hf(model)
    T = 16 if model.config.pos_enc == "learned" else 40  # relative schemes also past block_size
    idx = torch.randint(0, 65, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx, targets=idx)[0], rtol=1e-4, atol=1e-5)
        prompt = idx[:, :5]
        theirs = hf.generate(prompt, max_new_tokens=11 if T == 16 else 20, do_sample=False, pad_token_id=0)
        assert torch.equal(theirs, model.generate(prompt, theirs.size(1) - 5, temperature=0))


def test_export_saves_a_directory_that_auto_classes_load(tmp_path):
    model = trained_looking(tiny(pos_enc="rope", block="llama", bias=False, n_kv_head=2))
    interop.to_hf(model).save_pretrained(tmp_path)
    text = "Hello, world!\n  two spaces"
    tok = interop.hf_tokenizer({"tokenizer": "char", "chars": sorted(set(text))})
    tok.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "LlamaForCausalLM" and (tmp_path / "model.safetensors").is_file()
    idx = torch.randint(0, 65, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx).logits, model(idx, targets=idx)[0], rtol=1e-4, atol=1e-5)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = auto(text)["input_ids"]
    assert ids == [sorted(set(text)).index(c) for c in text] and auto.decode(ids) == text


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(pos_enc="t5"), r"pos_enc='t5' with block='gpt2' has no transformers model; exportable: le"),
        (dict(pos_enc="learned", block="llama"), "no transformers model"),
        (dict(pos_enc="alibi", n_head=4, n_embd=24, bias=False), None),  # 4 heads: fine
        (dict(pos_enc="alibi", bias=True), r"MptForCausalLM has no counterpart for \{'bias': True\}"),
        (dict(pos_enc="alibi", n_head=3, n_embd=24, bias=False), r"'n_head': 3"),
        (dict(pos_enc="rope", qk_norm=True), "'qk_norm': True"),
        (dict(pos_enc="rope", rope_fraction=0.5), "'rope_fraction': 0.5"),
        (dict(pos_enc="rope", rope_scaling={"rope_type": "ntk", "factor": 2.0}), "rope_scaling"),
        (dict(pos_enc="rope", n_kv_head=2), "'n_kv_head': 2"),
        (dict(pos_enc="rope", block="llama", rope_dim=4), "'rope_dim': 4"),
    ],
)
def test_what_cannot_be_exported_says_so(kw, match):
    model = GPT(tiny(**kw))
    if match is None:
        interop.to_hf(model)
        return
    with pytest.raises(ValueError, match=match):
        interop.to_hf(model)


def test_char_tokenizer_encodes_and_decodes_as_ours():
    chars = sorted(set("To be, or not to be:\nthat is the question."))
    tok = interop.hf_tokenizer({"tokenizer": "char", "chars": chars})
    text = "to be: or not\nto be"
    ids = tok(text)["input_ids"]
    assert ids == [chars.index(c) for c in text] and tok.decode(ids) == text


def test_gpt2_tokenizer_encodes_as_tiktoken():
    ours = gpt2_or_skip()
    tok = interop.hf_tokenizer({"tokenizer": "gpt2"})
    text = "Hello, world! It's 2026; numbers 12345 and   spaces.\n\nNew paragraph, d\u00e9j\u00e0 vu \u2014"
    assert tok(text)["input_ids"] == ours.encode(text) and tok.decode(ours.encode(text)) == text
    assert tok.eos_token_id == 50256


def test_gpt2_weights_in_give_gpt2s_logits(tmp_path):
    """A config-built GPT2LMHeadModel saved with save_pretrained, loaded as init_from: identical logits; its
    tanh GELU is kept; a smaller block_size crops the position table; another scheme drops it."""
    cfg = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours_cfg, sd = interop.gpt2_weights(str(tmp_path), tiny(pos_enc="learned", block_size=1024))
    assert (ours_cfg.n_layer, ours_cfg.block_size, ours_cfg.gelu, ours_cfg.vocab_size) == (2, 32, "tanh", 100)
    model = GPT(ours_cfg)
    model.load_state_dict(sd)
    idx = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(idx, targets=idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-5)
    cropped, sd = interop.gpt2_weights(str(tmp_path), tiny(pos_enc="learned", block_size=8))
    assert cropped.block_size == 8 and sd["transformer.wpe.weight"].shape == (8, 32)
    rope, sd = interop.gpt2_weights(str(tmp_path), tiny(pos_enc="rope"))
    assert "transformer.wpe.weight" not in sd
    GPT(rope).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"init_from='.*nothing' is not a Hugging Face GPT-2"):
        interop.gpt2_weights(str(tmp_path / "nothing"), tiny())
