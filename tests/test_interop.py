"""interop.py: every exportable scheme round-trips into transformers with equal logits (past block_size for
rope and alibi) and equal greedy generations; tokenizers that encode as ours; GPT-2 weights in."""

import tempfile

import pytest
import torch
from helpers import gpt2_or_skip, tiny

import interop
from data.tokenizers import GPT2Tokenizer, bpe_from_meta, checkpoint_meta
from model import GPT

transformers = pytest.importorskip("transformers")

CASES = {  # id: ModelConfig overrides of helpers.tiny (vocab 65, block 16, 2 layers, 4 heads, 32 wide)
    "learned": dict(pos_enc="learned", bias=True),
    "learned-untied-tanh": dict(pos_enc="learned", bias=False, tie_embeddings=False, gelu="tanh"),
    "rope-neox": dict(pos_enc="rope", bias=True, rope_base=500.0),
    "rope-neox-partial-interleaved": dict(pos_enc="rope", bias=False, rope_dim=4, rope_interleaved=True),
    "rope-neox-linear": dict(pos_enc="rope", rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "rope-neox-dynamic": dict(  # original length != block_size: transformers reads it from elsewhere
        pos_enc="rope",
        rope_scaling={"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 12},
    ),
    "rope-llama-gqa": dict(pos_enc="rope", block="llama", bias=False, n_kv_head=2, tie_embeddings=False),
    "rope-llama-bias-tied": dict(pos_enc="rope", block="llama", bias=True, rope_interleaved=True),
    "alibi-mpt": dict(pos_enc="alibi", bias=False),
}


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
        (dict(pos_enc="rope", id_window=4), "'id_window': 4"),
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


def test_gpt2_tokenizer_encodes_as_tiktoken(tmp_path, monkeypatch):
    """From tiktoken's cache, or from the BPE a checkpoint carries (then without any cache); the BPE file the
    converter reads leaves no temporary file behind (an 835 KB leak per export once)."""
    ours = gpt2_or_skip()
    meta = checkpoint_meta({"tokenizer": "gpt2"})
    assert GPT2Tokenizer(bpe_from_meta(meta)).encode("Hello, world!") == [15496, 11, 995, 0]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tok = interop.hf_tokenizer(meta)
    assert list(tmp_path.iterdir()) == []
    text = "Hello, world! It's 2026; numbers 12345 and   spaces.\n\nNew paragraph, d\u00e9j\u00e0 vu \u2014"
    assert tok(text)["input_ids"] == ours.encode(text) and tok.decode(ours.encode(text)) == text
    assert tok.eos_token_id == 50256


def saved_gpt2(folder, **kw):
    cfg = transformers.GPT2Config(
        **(dict(vocab_size=50257, n_positions=32, n_embd=32, n_layer=2, n_head=4) | kw)
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(folder)
    return hf


def test_gpt2_weights_in_give_gpt2s_logits(tmp_path):
    """A config-built GPT2LMHeadModel saved with save_pretrained, loaded as init_from: identical logits (tied
    or untied head); its tanh GELU is kept; a smaller block_size crops the position table; another scheme
    drops it."""
    for name, kw in (("tied", {}), ("untied", dict(tie_word_embeddings=False))):
        hf = saved_gpt2(tmp_path / name, **kw)
        ours_cfg, load = interop.gpt2_config(str(tmp_path / name), tiny(pos_enc="learned", block_size=32))
        assert (ours_cfg.n_layer, ours_cfg.gelu, ours_cfg.tie_embeddings) == (2, "tanh", name == "tied")
        model = GPT(ours_cfg)
        model.load_state_dict(load())
        idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            torch.testing.assert_close(
                model.eval()(idx, targets=idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-5
            )
    cropped, load = interop.gpt2_config(str(tmp_path / "tied"), tiny(pos_enc="learned", block_size=8))
    assert cropped.block_size == 8 and load()["transformer.wpe.weight"].shape == (8, 32)
    rope, load = interop.gpt2_config(str(tmp_path / "tied"), tiny(pos_enc="rope", block_size=1024))
    sd = load()
    assert "transformer.wpe.weight" not in sd and rope.block_size == 1024
    GPT(rope).load_state_dict(sd)


def test_init_from_refuses_what_it_cannot_map_by_name(tmp_path):
    """Other architectures, GPT-2 switches our model lacks, another vocabulary, too few positions, a missing
    folder: each one clear error before any weight is read."""
    transformers.LlamaConfig(
        vocab_size=50257, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    ).save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match=r"is a llama model; only GPT-2 checkpoints"):
        interop.gpt2_config(str(tmp_path / "llama"), tiny(pos_enc="learned"))
    cases = [
        (dict(activation_function="relu"), "activation_function"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
        (dict(n_inner=48), "n_inner"),
        (dict(vocab_size=60000), "vocabulary of 60000 tokens, the gpt2 tokenizer 50257"),
        (dict(vocab_size=1000), "vocabulary of 1000 tokens"),
    ]
    for i, (kw, match) in enumerate(cases):
        transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, n_positions=16, **kw).save_pretrained(
            tmp_path / f"c{i}"
        )
        with pytest.raises(ValueError, match=match):
            interop.gpt2_config(str(tmp_path / f"c{i}"), tiny(pos_enc="learned"))
    saved_gpt2(tmp_path / "gpt2", n_positions=8)
    with pytest.raises(
        ValueError, match=r"8 learned positions, fewer than block_size=16: use --block_size=8"
    ):
        interop.gpt2_config(str(tmp_path / "gpt2"), tiny(pos_enc="learned"))
    with pytest.raises(ValueError, match="init_from loads GPT-2 blocks"):
        interop.gpt2_config(str(tmp_path / "gpt2"), tiny(pos_enc="rope", block="llama"))
    with pytest.raises(ValueError, match=r"init_from='.*nothing': no such directory"):
        interop.gpt2_config(str(tmp_path / "nothing"), tiny())
