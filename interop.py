"""Models in and out of the Hugging Face ecosystem (transformers is optional: imported only here, only when
asked). Out (`to_hf`): a trained run becomes the transformers model of its architecture, whose logits equal
ours (tests/test_interop.py), plus a tokenizer (`hf_tokenizer`):

    learned, block gpt2   GPT2LMHeadModel      Conv1D weights transposed; biases nanorope omits are zeros
    rope, block gpt2      GPTNeoXForCausalLM   sequential residual, per-head [q k v] rows, partial rotary
    rope, block llama     LlamaForCausalLM     grouped-query attention, untied or tied embeddings
    alibi, block gpt2     MptForCausalLM       bias=False (HF's MPT has no biases), a power-of-2 head count

Interleaved RoPE is exported as half-split, its q and k rows permuted within every head (rope.py). In
(`gpt2_weights`): a Hugging Face GPT-2 (a directory, or a hub name when online) as a state dict for our
learned model (nanoGPT's from_pretrained); another pos_enc drops its position table.
"""

from pathlib import Path

import torch

from model import GPT, ModelConfig

EXPORTS = {
    ("learned", "gpt2"): "GPT2LMHeadModel",
    ("rope", "gpt2"): "GPTNeoXForCausalLM",
    ("rope", "llama"): "LlamaForCausalLM",
    ("alibi", "gpt2"): "MptForCausalLM",
}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError("moving models to or from Hugging Face needs `pip install transformers`") from None
    return transformers


def _check_exportable(cfg: ModelConfig) -> str:
    target = EXPORTS.get((cfg.pos_enc, cfg.block))
    if target is None:
        listed = ", ".join(f"{p} ({b} block) -> {t}" for (p, b), t in EXPORTS.items())
        raise ValueError(
            f"pos_enc={cfg.pos_enc!r} with block={cfg.block!r} has no transformers model; "
            f"exportable: {listed}"
        )
    unsupported = {
        "qk_norm": cfg.qk_norm,
        "random_positions": cfg.random_positions,
        "rope_fraction": cfg.rope_fraction,
        "rope_nope_interval": cfg.rope_nope_interval,
        "rope_nope_layers": cfg.rope_nope_layers,
        "abacus": cfg.abacus,
        "window": cfg.window,  # HF's sliding windows see window - 1 keys back (Mistral's off by one)
        "id_window": cfg.id_window,
        "ssmax": cfg.ssmax,
        "attn_sink": cfg.attn_sink,  # gpt-oss has sinks, but its blocks are mixtures of experts
    }
    if cfg.block == "gpt2":
        unsupported["n_kv_head"] = cfg.n_kv_head if cfg.kv_heads != cfg.n_head else None
    if cfg.pos_enc == "rope" and (cfg.rope_scaling or {}).get("rope_type") == "ntk":
        unsupported["rope_scaling"] = cfg.rope_scaling  # transformers has no static NTK type
    if cfg.block == "llama" and (cfg.rope_dim or cfg.head_size) != cfg.head_size:
        unsupported["rope_dim"] = cfg.rope_dim  # HF Llama rotates whole heads
    if cfg.pos_enc == "alibi":
        if cfg.n_head & (cfg.n_head - 1):
            unsupported["n_head"] = cfg.n_head  # MPT orders the slopes of other head counts differently
        if cfg.bias:
            unsupported["bias"] = True
    set_ = {k: v for k, v in unsupported.items() if v not in (None, False)}
    if set_:
        raise ValueError(f"{target} has no counterpart for {set_}; export a run without it")
    return target


def _max_positions(cfg: ModelConfig) -> int:
    """max_position_embeddings of the exported config: block_size, but for dynamic NTK the original length,
    which transformers' dynamic scaling reads from there (not from rope_parameters)."""
    scaling = cfg.rope_scaling or {}
    return (
        scaling["original_max_position_embeddings"]
        if scaling.get("rope_type") == "dynamic"
        else cfg.block_size
    )


def _rope_parameters(cfg: ModelConfig) -> dict:
    params = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rope_base or 10000.0}
    params["partial_rotary_factor"] = (cfg.rope_dim or cfg.head_size) / cfg.head_size
    return params


def _qk_half_split(w: torch.Tensor, cfg: ModelConfig, heads: int) -> torch.Tensor:
    """Rows of a q or k projection (heads * hs, ...) of an interleaved-RoPE model in half-split order."""
    if not cfg.rope_interleaved:
        return w
    d, hs = cfg.rope_dim or cfg.head_size, cfg.head_size
    perm = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2), torch.arange(d, hs)))
    return w.view(heads, hs, *w.shape[1:])[:, perm].reshape(w.shape)


def _split_qkv(sd: dict, p: str, cfg: ModelConfig, what: str) -> list:
    """[q, k, v] weights or biases (`what`) of layer prefix p; q and k in half-split order; zero biases
    when the model has none."""
    hs, nh, nkv = cfg.head_size, cfg.n_head, cfg.kv_heads
    name = p + "attn.c_attn." + what
    if name not in sd:  # bias=False
        return [torch.zeros(n * hs) for n in (nh, nkv, nkv)]
    q, k, v = sd[name].split((nh * hs, nkv * hs, nkv * hs))
    return [_qk_half_split(q, cfg, nh), _qk_half_split(k, cfg, nkv), v]


def _copy(sd: dict, out: dict, src: str, dst: str, n: int | None = None, t: bool = False) -> None:
    """out[dst.weight] (and .bias, zeros of size n where nanorope has none; t: Conv1D, transposed)."""
    w = sd[src + ".weight"]
    out[dst + ".weight"] = w.t() if t else w
    if n is not None:
        out[dst + ".bias"] = sd.get(src + ".bias", torch.zeros(n))


def _gpt2(tf, cfg: ModelConfig, sd: dict, common: dict):
    C = cfg.n_embd
    hf = tf.GPT2LMHeadModel(
        tf.GPT2Config(
            n_positions=cfg.block_size,
            n_embd=C,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            layer_norm_epsilon=1e-5,
            activation_function="gelu" if cfg.gelu == "exact" else "gelu_new",
            **common,
        )
    )
    out = {"transformer.wpe.weight": sd["transformer.wpe.weight"]}
    _copy(sd, out, "transformer.ln_f", "transformer.ln_f", C)
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for name, n, t in (
            ("ln_1", C, False),
            ("ln_2", C, False),
            ("attn.c_attn", 3 * C, True),
            ("attn.c_proj", C, True),
            ("mlp.c_fc", 4 * C, True),
            ("mlp.c_proj", C, True),
        ):
            _copy(sd, out, p + name, p + name, n, t)
    return hf, out, "transformer.wte.weight", "lm_head.weight"


def _neox(tf, cfg: ModelConfig, sd: dict, common: dict):
    C, nh, hs = cfg.n_embd, cfg.n_head, cfg.head_size
    hf = tf.GPTNeoXForCausalLM(
        tf.GPTNeoXConfig(
            hidden_size=C,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=nh,
            intermediate_size=4 * C,
            hidden_act="gelu" if cfg.gelu == "exact" else "gelu_new",
            max_position_embeddings=_max_positions(cfg),
            layer_norm_eps=1e-5,
            use_parallel_residual=False,
            attention_bias=True,
            rope_parameters=_rope_parameters(cfg),
            **common,
        )
    )
    out = {}
    _copy(sd, out, "transformer.ln_f", "gpt_neox.final_layer_norm", C)

    def per_head(ts):  # NeoX's fused projection is per head: [q_0 k_0 v_0 | q_1 k_1 v_1 | ...]
        return torch.stack([t.view(nh, hs, *t.shape[1:]) for t in ts], 1).flatten(0, 2)

    for i in range(cfg.n_layer):
        p, q = f"transformer.h.{i}.", f"gpt_neox.layers.{i}."
        out[q + "attention.query_key_value.weight"] = per_head(_split_qkv(sd, p, cfg, "weight"))
        out[q + "attention.query_key_value.bias"] = per_head(_split_qkv(sd, p, cfg, "bias"))
        for ours, theirs, n in (
            ("attn.c_proj", "attention.dense", C),
            ("mlp.c_fc", "mlp.dense_h_to_4h", 4 * C),
            ("mlp.c_proj", "mlp.dense_4h_to_h", C),
            ("ln_1", "input_layernorm", C),
            ("ln_2", "post_attention_layernorm", C),
        ):
            _copy(sd, out, p + ours, q + theirs, n)
    head = "embed_out.weight" if "embed_out.weight" in hf.state_dict() else "lm_head.weight"  # transformers 5
    return hf, out, "gpt_neox.embed_in.weight", head


def _llama(tf, cfg: ModelConfig, sd: dict, common: dict):
    hf = tf.LlamaForCausalLM(
        tf.LlamaConfig(
            hidden_size=cfg.n_embd,
            intermediate_size=cfg.swiglu_hidden,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.kv_heads,
            rms_norm_eps=1e-5,
            max_position_embeddings=_max_positions(cfg),
            rope_parameters=_rope_parameters(cfg),
            attention_bias=cfg.bias,
            mlp_bias=cfg.bias,
            **common,
        )
    )
    out = {"model.norm.weight": sd["transformer.ln_f.weight"]}
    n = 0 if cfg.bias else None  # copy biases only where the model has them (size unused: they exist)
    for i in range(cfg.n_layer):
        p, q = f"transformer.h.{i}.", f"model.layers.{i}."
        weights, biases = _split_qkv(sd, p, cfg, "weight"), _split_qkv(sd, p, cfg, "bias")
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weights, biases, strict=True):
            out[q + f"self_attn.{name}.weight"] = w
            if cfg.bias:
                out[q + f"self_attn.{name}.bias"] = b
        for ours, theirs in (
            ("attn.c_proj", "self_attn.o_proj"),
            ("mlp.c_gate", "mlp.gate_proj"),
            ("mlp.c_fc", "mlp.up_proj"),
            ("mlp.c_proj", "mlp.down_proj"),
        ):
            _copy(sd, out, p + ours, q + theirs, n)
        _copy(sd, out, p + "ln_1", q + "input_layernorm")
        _copy(sd, out, p + "ln_2", q + "post_attention_layernorm")
    return hf, out, "model.embed_tokens.weight", "lm_head.weight"


def _mpt(tf, cfg: ModelConfig, sd: dict, common: dict):
    """ALiBi as MPT: its slopes are 2^(-8 i / n), the paper's, for a power-of-2 n; it has no biases at all.
    Its bias table is built for max_seq_len positions, set to 8 x block_size (at least 2048) here."""
    hf = tf.MptForCausalLM(
        tf.MptConfig(
            d_model=cfg.n_embd,
            n_heads=cfg.n_head,
            n_layers=cfg.n_layer,
            expansion_ratio=4,
            no_bias=True,
            max_seq_len=max(2048, 8 * cfg.block_size),
            layer_norm_epsilon=1e-5,
            learned_pos_emb=False,
            attn_config={"alibi": True, "alibi_bias_max": 8, "attn_pdrop": 0},
            **common,
        )
    )
    out = {"transformer.norm_f.weight": sd["transformer.ln_f.weight"]}
    for i in range(cfg.n_layer):
        p, q = f"transformer.h.{i}.", f"transformer.blocks.{i}."
        for ours, theirs in (
            ("ln_1", "norm_1"),
            ("ln_2", "norm_2"),
            ("attn.c_attn", "attn.Wqkv"),
            ("attn.c_proj", "attn.out_proj"),
            ("mlp.c_fc", "ffn.up_proj"),
            ("mlp.c_proj", "ffn.down_proj"),
        ):
            _copy(sd, out, p + ours, q + theirs)
    return hf, out, "transformer.wte.weight", "lm_head.weight"


TARGETS = {
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _neox,
    "LlamaForCausalLM": _llama,
    "MptForCausalLM": _mpt,
}


def to_hf(model: GPT):
    """The transformers model with `model`'s weights, fp32, in eval mode (ValueError for what has none)."""
    cfg = model.config
    target = _check_exportable(cfg)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    common = dict(
        vocab_size=cfg.vocab_size,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    hf, out, embed, head = TARGETS[target](_transformers(), cfg, sd, common)
    out[embed] = sd["transformer.wte.weight"][: cfg.vocab_size]  # our table is padded to a multiple of 64
    if not cfg.tie_embeddings:
        out[head] = sd["lm_head.weight"][: cfg.vocab_size]
    missing, unexpected = hf.load_state_dict(out, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == head)]
    if missing or unexpected:
        raise ValueError(f"export to {target} missed weights: {missing[:5]}, unexpected: {unexpected[:5]}")
    if cfg.tie_embeddings:
        hf.tie_weights()
    return hf.float().eval()


def hf_tokenizer(meta: dict):
    """A transformers tokenizer equal to the run's: GPT-2's BPE rebuilt from tiktoken's ranks (offline, from
    its cache), or the char vocabulary as a one-character-per-token WordLevel model."""
    tf = _transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if meta["tokenizer"] == "gpt2":
        import base64
        import tempfile

        from transformers.convert_slow_tokenizer import TikTokenConverter

        from data.tokenizers import GPT2Tokenizer, bpe_from_meta

        enc = GPT2Tokenizer(bpe_from_meta(meta)).enc  # the checkpoint's own BPE (older ones: tiktoken's)
        with tempfile.TemporaryDirectory() as folder:  # TikTokenConverter reads tiktoken's file format
            path = f"{folder}/gpt2.tiktoken"
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(f"{base64.b64encode(t).decode()} {r}\n" for t, r in enc._mergeable_ranks.items())
            tok = TikTokenConverter(
                path, pattern=enc._pat_str, extra_special_tokens=["<|endoftext|>"]
            ).converted()
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    chars = meta["chars"]
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tok.decoder = decoders.Fuse()  # and joined back without spaces
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok)


GPT2_GELUS = {"gelu": "exact", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
GPT2_VOCAB = 50257  # the gpt2 tokenizer's, which a run with init_from trains on


def _gpt2_source(name_or_dir: str, tf):
    """The config of a Hugging Face checkpoint (a local directory, or a hub name: downloaded as transformers
    does), or a ValueError that says which of the two failed."""
    local = Path(name_or_dir).expanduser()
    looks_local = local.exists() or name_or_dir.startswith((".", "/", "~")) or name_or_dir.count("/") > 1
    if looks_local and not local.is_dir():
        raise ValueError(
            f"init_from={name_or_dir!r}: no such directory (give a save_pretrained folder or a hub name)"
        )
    try:
        return tf.AutoConfig.from_pretrained(str(local) if looks_local else name_or_dir)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"init_from={name_or_dir!r} is not a Hugging Face model (directory or hub name): "
            f"{str(e).splitlines()[0]}"
        ) from None


def gpt2_config(name_or_dir: str, cfg: ModelConfig):
    """A Hugging Face GPT-2 (directory or hub name) as (our config, a function returning our state dict):
    its dimensions, its GELU, tied or untied head, and the run's block_size (at most its n_positions with
    learned positions, whose table is cropped as nanoGPT's crop_block_size does; with another pos_enc its
    position table is dropped: the "retrofit RoPE onto GPT-2" experiment). Every GPT-2 config switch is
    mapped or refused by name, and the vocabulary must be the gpt2 tokenizer's: checked before any weight
    is read."""
    tf = _transformers()
    h = _gpt2_source(name_or_dir, tf)
    if h.model_type != "gpt2":
        raise ValueError(
            f"init_from={name_or_dir!r} is a {h.model_type} model; only GPT-2 checkpoints (model_type "
            "'gpt2') map onto nanorope's model"
        )
    refused = {
        "activation_function": h.activation_function not in GPT2_GELUS,
        "n_inner": h.n_inner not in (None, 4 * h.n_embd),
        "layer_norm_epsilon": h.layer_norm_epsilon != 1e-5,
        "scale_attn_weights": not h.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": h.scale_attn_by_inverse_layer_idx,
        "reorder_and_upcast_attn": h.reorder_and_upcast_attn,
        "add_cross_attention": getattr(h, "add_cross_attention", False),
    }
    if bad := [k for k, no in refused.items() if no]:
        values = {k: getattr(h, k, None) for k in bad}
        raise ValueError(f"init_from={name_or_dir!r}: GPT-2 options nanorope's model does not have: {values}")
    if h.vocab_size != GPT2_VOCAB:
        raise ValueError(
            f"init_from={name_or_dir!r} has a vocabulary of {h.vocab_size} tokens, the gpt2 tokenizer "
            f"{GPT2_VOCAB}: its embeddings would not fit the data"
        )
    if cfg.block != "gpt2" or cfg.n_kv_head is not None:
        raise ValueError("init_from loads GPT-2 blocks: drop --block / --n_kv_head (GPT-2 has neither)")
    if cfg.pos_enc == "learned" and cfg.random_positions is not None:
        raise ValueError(
            "init_from with pos_enc=learned takes GPT-2's position table: drop --random_positions"
        )
    if cfg.pos_enc == "learned" and cfg.block_size > h.n_positions:
        raise ValueError(
            f"init_from={name_or_dir!r} has {h.n_positions} learned positions, fewer than block_size="
            f"{cfg.block_size}: use --block_size={h.n_positions} (or less)"
        )
    tied = getattr(h, "tie_word_embeddings", True)
    dims = dict(
        vocab_size=h.vocab_size,
        n_layer=h.n_layer,
        n_head=h.n_head,
        n_embd=h.n_embd,
        bias=True,
        gelu=GPT2_GELUS[h.activation_function],
        tie_embeddings=tied,
    )
    ours = ModelConfig(**(cfg.to_dict() | dims))

    def load() -> dict:
        hf = tf.GPT2LMHeadModel.from_pretrained(name_or_dir, config=h)
        V, T, sd = ours.vocab_size, ours.block_size, {}
        pad = ours.padded_vocab_size - V
        for k, v in hf.state_dict().items():
            if k.endswith((".attn.bias", ".attn.masked_bias")) or (k == "lm_head.weight" and tied):
                continue  # causal-mask buffers of old checkpoints; a tied head is wte
            if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                v = v.t()  # Conv1D -> Linear
            if k in ("transformer.wte.weight", "lm_head.weight"):
                v = torch.cat((v, torch.zeros(pad, v.size(1))))
            if k == "transformer.wpe.weight":
                if ours.pos_enc != "learned":
                    continue
                v = v[:T]
            sd[k] = v
        if tied:
            sd["lm_head.weight"] = sd["transformer.wte.weight"]
        return sd

    return ours, load
