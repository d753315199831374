"""The GPT: ModelConfig, a GPT-2-style decoder with a pluggable positional encoding, its KV cache and
text generation (`generate_text`).

Shape legend: B batch, T sequence length (new tokens), S = offset + T keys seen so far,
C n_embd, nh n_head, hs head size (C // nh), V vocab size.

The model is nanoGPT's (pre-LayerNorm blocks, GELU MLP, tied `wte`/`lm_head`, GPT-2 init, GPT-2
parameter names) with one difference: position enters only through `transformer.wpe`, an instance of
a `PositionalEncoding` subclass (positional.py, attention_bias.py) chosen by `ModelConfig.pos_enc`. The
forward pass calls its hooks unconditionally, `embed` and `attn_bias` once per forward, `rotate` and
`layer_bias` once per layer; each scheme overrides the ones it needs, so adding a scheme never touches the
forward pass. Position parameters (`learned`'s table `transformer.wpe.weight`, GPT-2's name, so nanoGPT /
Hugging Face GPT-2 weights map one to one; the learned biases) all live under `transformer.wpe`.
"""

import dataclasses
import math
import typing
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import attention_bias  # noqa: F401  (registers the attention-bias schemes in POS_ENCODINGS)
import attention_mods  # noqa: F401  (registers fox, stickbreaking, pope)
from attention import CausalSelfAttention
from configurator import Config, check_ints
from flex import KERNELS
from positional import POS_ENCODINGS, Positions

# Options that combine with any scheme (where it supports them): a compare.py entry may set them as it sets
# its scheme's knobs (rope:qk_norm=true), and a run's label shows them.
POSITION_OPTIONS = ("qk_norm", "random_positions", "abacus", "attn_sink", "ssmax", "window", "window_pattern")
POSITION_OPTIONS += ("id_window",)
MAX_SIZE = 2**20  # bound on sizes and lengths: past it a config would only exhaust memory
# Names of the parameters that `GPT.position_parameters` counts as positional (not as the model's own).
POSITION_PREFIXES, POSITION_SUFFIXES = (
    ("transformer.wpe.", "transformer.abacus."),
    (".attn.sink", ".attn.ssmax"),
)
# What people call the schemes, for the hint of a pos_enc that is not registered.
SCHEME_NAMES = {"nope": "none", "rotary": "rope", "absolute": "learned", "gpt2": "learned", "wpe": "learned"}
SCHEME_NAMES |= {"sinusoid": "sinusoidal", "sin": "sinusoidal", "t5bias": "t5", "relative": "t5"}
SCHEME_NAMES |= {"forgetting": "fox", "polar": "pope", "stick": "stickbreaking"}


@dataclass(frozen=True)
class ModelConfig(Config):
    """Model hyper-parameters; the defaults are nanoGPT's "baby GPT" (the default run), the GPT-2 124M size
    is config/gpt2_124m.py. Scheme knobs (`rope_*`, `t5_*`, `fire_*`, `cope_*`) are None unless set; setting
    one for another scheme is an error.

    Hidden defaults, written down: rope rotates the full head (`rope_dim = head size`), base 10000,
    half-split pairing; every scheme uses GPT-2 init (`init="torch"` keeps PyTorch's, as the book does);
    `vocab_size` is padded to a multiple of 64 inside the model (faster matmuls) and logits are sliced
    back to `vocab_size`. `block="llama"` is the book's GPT-to-Llama step: RMSNorm (eps 1e-5, Llama 2's)
    and a SwiGLU MLP of hidden size `mlp_hidden` (None: Llama's rule, 8C/3 rounded up to a multiple of
    256), usually with bias=False, tie_embeddings=False.
    """

    vocab_size: int = 65  # set from the dataset's tokenizer by train.py (GPT-2 BPE: 50257)
    block_size: int = 64  # context length L (tasks: set from the longest evaluated problem)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads (query heads with grouped-query attention)
    n_embd: int = 128  # width C; head size = n_embd / n_head
    dropout: float = 0.0  # on embeddings, attention weights and residual branches, in training only
    bias: bool = False  # biases in Linear layers and LayerNorms (GPT-2: true)
    block: str = "gpt2"  # gpt2 (LayerNorm, GELU MLP) or llama (RMSNorm, SwiGLU MLP)
    gelu: str = "exact"  # block=gpt2: exact (erf, nanoGPT) or tanh (OpenAI's GPT-2 and the book: gelu_new)
    n_kv_head: int | None = None  # grouped-query attention: key/value heads; None -> n_head
    mlp_hidden: int | None = None  # block=llama: SwiGLU hidden size; None -> Llama's rule
    tie_embeddings: bool = True  # lm_head shares wte's weight (GPT-2); false: separate (Llama, the book)
    init: str = "gpt2"  # gpt2: N(0, 0.02), residual projections / sqrt(2 n_layer); torch: PyTorch's defaults
    # --- positional encoding
    pos_enc: str = "rope"  # the scheme: learned, rope, alibi, none, fox, ... (docs/SCHEMES.md)
    rope_base: float | None = None  # None -> 10000.0
    rope_dim: int | None = None  # rotary features per head; None -> head size (full rotary)
    rope_interleaved: bool | None = None  # None -> False: pairs (i, i + d/2), GPT-NeoX / HF Llama
    rope_scaling: dict | None = None  # HF-style {"rope_type": "yarn", "factor": 4, ...}, see rope.py
    rope_fraction: float | None = None  # p-RoPE: share of the fastest pairs that rotate; None -> 1.0
    rope_nope_interval: int | None = None  # every k-th layer NoPE (SmolLM3: (layer + 1) % k == 0)
    rope_nope_layers: tuple[int, ...] | None = None  # or NoPE layers listed: 0,3 ([0,3] in a grid entry)
    xpos_scale_base: float | None = None  # None -> 512 (positional.XPos)
    t5_num_buckets: int | None = None  # None -> 32 (attention_bias.T5Bias)
    t5_max_distance: int | None = None  # None -> 128
    fire_threshold: float | None = None  # initial L_thr; None -> block_size / 4 (attention_bias.FIRE)
    cope_max_pos: int | None = None  # None -> block_size (attention_bias.CoPE)
    qk_norm: bool = False  # RMS-normalise q and k per head (no gain) before the positional encoding
    random_positions: int | None = None  # M: positions drawn from [0, M) in training (Ruoss et al. 2023)
    abacus: int | None = None  # rows of an Abacus table: digit-significance ids of a task (McLeish et al.)
    # --- attention options (combine with every scheme)
    attn_sink: bool = False  # a learned sink logit per head and layer joins each softmax (gpt-oss)
    ssmax: bool = False  # scalable softmax: q.k times s_h log(keys seen), s learned (Nakanishi 2025)
    window: int | None = None  # sliding-window layers see only their last `window` keys (the query's own too)
    window_pattern: str | None = None  # per-layer S (window) or L (all keys), repeated: SSSL; None -> all S
    id_window: int | None = None  # only keys within this many position ids of the query (|id_i - id_j| <= D):
    # a window in a task's id space; with implicit ids one of D + 1 tokens (docs/SCHEMES.md)
    attention: str = "sdpa"  # the kernel: sdpa, flex (FlexAttention: no backward on CPU) or auto (flex.py)

    EXAMPLES: typing.ClassVar[dict[str, str]] = {
        "rope_scaling": '--rope_scaling=\'{"rope_type": "yarn", "factor": 4, '
        '"original_max_position_embeddings": 64}\'',
        "rope_nope_layers": "--rope_nope_layers=0,3",
    }

    def validate(self):
        check_ints(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"), 1, MAX_SIZE)
        for name in ("n_kv_head", "mlp_hidden"):
            if getattr(self, name) is not None:
                check_ints(self, (name,), 1, MAX_SIZE)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                "(head size = n_embd / n_head)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (grouped-query)")
        if self.init not in ("gpt2", "torch"):
            raise ValueError(f"init must be 'gpt2' or 'torch', got {self.init!r}")
        if self.gelu not in ("exact", "tanh") or (self.gelu != "exact" and self.block != "gpt2"):
            raise ValueError(f"gelu must be 'exact' or 'tanh' (block='gpt2' only), got {self.gelu!r}")
        if self.mlp_hidden is not None and self.block != "llama":
            raise ValueError(f"mlp_hidden is the SwiGLU width of block='llama', not of block={self.block!r}")
        if self.pos_enc not in POS_ENCODINGS:
            name = self.pos_enc.lower().replace("-", "").replace("_", "")
            meant = SCHEME_NAMES.get(name, name if name in POS_ENCODINGS else None)
            hint = f"; did you mean --pos_enc={meant}?" if meant else ""
            raise ValueError(f"pos_enc={self.pos_enc!r} is not one of {sorted(POS_ENCODINGS)}{hint}")
        scheme = POS_ENCODINGS[self.pos_enc]
        for knob in sorted({k for cls in POS_ENCODINGS.values() for k in cls.knobs} - set(scheme.knobs)):
            if getattr(self, knob) is not None:
                users = [n for n, cls in POS_ENCODINGS.items() if knob in cls.knobs]
                raise ValueError(
                    f"{knob}={getattr(self, knob)!r} is only used by pos_enc in {users}, "
                    f"not by pos_enc={self.pos_enc!r}; remove it"
                )
        if self.random_positions is not None:  # the data check it against their sequences' length
            takers = sorted(n for n, cls in POS_ENCODINGS.items() if cls.position_ids != "none")
            if self.pos_enc not in takers:
                raise ValueError(f"random_positions is for pos_enc in {takers}, not {self.pos_enc!r}")
            check_ints(self, ("random_positions",), 2, MAX_SIZE)
        if self.abacus is not None:
            check_ints(self, ("abacus",), 2, MAX_SIZE)
        if self.window is not None:
            check_ints(self, ("window",), 1, MAX_SIZE)
        if self.id_window is not None:
            check_ints(self, ("id_window",), 0, MAX_SIZE)
        pattern = self.window_pattern
        if pattern is not None and (not pattern or set(pattern) - set("SL")):
            upper = set(pattern.upper()) <= set("SL")
            hint = f"; did you mean --window_pattern={pattern.upper()}?" if upper else ""
            raise ValueError(
                f"window_pattern lists S (window) or L (all keys) per layer, like SSSL; got {pattern!r}{hint}"
            )
        if pattern is not None and self.window is None:
            raise ValueError(
                f"window_pattern={pattern} needs a window: e.g. --window=16 --window_pattern={pattern}"
            )
        if self.attention not in KERNELS:
            raise ValueError(f"attention must be one of {list(KERNELS)}, got {self.attention!r}")
        if self.attn_sink and scheme.normalise != "softmax":
            raise ValueError(
                f"attn_sink joins a softmax; pos_enc={self.pos_enc!r} has none ({scheme.normalise})"
            )
        scheme.validate(self)

    def with_scheme(self, pos_enc: str, **knobs) -> "ModelConfig":
        """This config under another scheme: the knobs of every other scheme cleared, `knobs` set."""
        kept = POS_ENCODINGS[pos_enc].knobs if pos_enc in POS_ENCODINGS else ()
        unused = {k: None for cls in POS_ENCODINGS.values() for k in cls.knobs if k not in kept}
        return dataclasses.replace(self, pos_enc=pos_enc, **unused, **knobs)

    def windowed(self, layer: int) -> int | None:
        """The window of `layer` (window_pattern's letter for it, cycled), None for all keys."""
        if self.window is None:
            return None
        pattern = self.window_pattern or "S"
        return self.window if pattern[layer % len(pattern)] == "S" else None

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def swiglu_hidden(self) -> int:
        return self.mlp_hidden or 256 * -(-8 * self.n_embd // 3 // 256)

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // 64) * 64

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- transformer


class KVCache:
    """Keys and values of past tokens for incremental decoding, allocated on first use.

    `k`, `v`: (n_layer, B, nkv, max_len, E | hs); `pos`: how many tokens are filled (the next offset).
    Keys are stored position-encoded (rotated), so RoPE needs no re-rotation. With explicit position ids
    the cache keeps the keys' ids (`ids`, (B, S)); a scheme keeps per-token state of its own in `state`
    (`extend`), e.g. FoX's forget gates.
    """

    def __init__(self, n_layer: int, max_len: int):
        self.n_layer, self.max_len, self.pos = n_layer, max_len, 0
        self.k = self.v = self.ids = None
        self.state: dict = {}

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, E | hs) at tokens pos..pos+T-1 of `layer`; return all keys and values
        (B, nkv, S, E | hs)."""
        if self.k is None:
            self.k = k.new_empty(self.n_layer, *k.shape[:2], self.max_len, k.size(3))
            self.v = v.new_empty(self.n_layer, *v.shape[:2], self.max_len, v.size(3))
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KVCache holds {self.max_len} positions, {end} were asked for")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def positions(self, T: int, ids: torch.Tensor | None) -> Positions:
        """The Positions of T new tokens (explicit `ids` (B, T), kept for later steps, or None); once per
        forward, before `pos` moves on."""
        if (ids is None) != (self.ids is None) and self.pos:
            raise ValueError("a KV cache continues with explicit position ids only if it started with them")
        if ids is not None:
            self.ids = ids if self.ids is None else torch.cat((self.ids, ids), dim=1)
        return Positions(T, self.pos + T, ids, self.ids)

    def extend(self, key, t: torch.Tensor) -> torch.Tensor:
        """Append a scheme's state of the new tokens t (..., T) under `key` (e.g. (layer, name)); return
        that of all tokens so far (..., S)."""
        self.state[key] = t if key not in self.state else torch.cat((self.state[key], t), dim=-1)
        return self.state[key]


class Abacus(nn.Module):
    """Abacus embeddings (McLeish et al. 2024): a learned table indexed by each token's digit significance
    (0 for a token that is not a digit, 1 + significance for one, plus a random offset in training; the data
    set them, data/tasks.py), added to the token embeddings, beside whatever the positional encoding does.
    With `abacus` None the identity. Like `learned`, rows that training never reached stay at their init:
    ids past the largest trained one read untrained rows."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        rows = config.abacus
        self.weight = None if rows is None else nn.Parameter(torch.empty(rows, config.n_embd))
        if rows is not None:
            nn.init.normal_(self.weight, mean=0.0, std=1.0 if config.init == "torch" else 0.02)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        if self.weight is None:
            if ids is not None:
                raise ValueError("the batch has abacus ids but the model has no Abacus table: set --abacus")
            return x
        if ids is None:
            raise ValueError(
                "a model with an Abacus table needs the abacus ids of its tokens (a task's data)"
            )
        return x + self.weight[ids]  # (B, T, C)


class MLP(nn.Module):
    """GPT-2's: Linear 4C, GELU, Linear."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU("none" if config.gelu == "exact" else "tanh")  # nanoGPT's exact, or GPT-2's tanh
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLU(nn.Module):
    """Llama's MLP: c_proj(silu(c_gate(x)) * c_fc(x)) (HF names: gate_proj, up_proj, down_proj)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.swiglu_hidden
        self.c_gate = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))


# The two block variants: (norm, MLP). Both are pre-norm residual blocks around the same attention.
BLOCKS = {
    "gpt2": (lambda cfg: nn.LayerNorm(cfg.n_embd, bias=cfg.bias), MLP),
    "llama": (lambda cfg: nn.RMSNorm(cfg.n_embd, eps=1e-5), SwiGLU),
}


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        norm, mlp = BLOCKS[config.block]
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = norm(config)
        self.mlp = mlp(config)

    def forward(self, x, pe, shared, pos, cache, observe=None):
        x = x + self.attn(self.ln_1(x), pe, shared, pos, cache, observe)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                wpe=POS_ENCODINGS[config.pos_enc](config),
                abacus=Abacus(config),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config, layer) for layer in range(config.n_layer)),
                ln_f=BLOCKS[config.block][0](config),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf 2017)
        if config.init == "torch":  # PyTorch's module defaults, as the book's GPTModel keeps them
            return
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def switch_scheme(self, config: ModelConfig) -> None:
        """Continue under `config`, this model's config with another scheme, neither holding parameters
        (DroPE: every weight stays, the positional encoding goes)."""
        free = POS_ENCODINGS[config.pos_enc].parameter_free and self.transformer.wpe.parameter_free
        if config != self.config.with_scheme(config.pos_enc) or not free:
            raise ValueError(f"a {self.config.pos_enc} model cannot switch to {config}")
        device = self.lm_head.weight.device
        self.transformer.wpe = POS_ENCODINGS[config.pos_enc](config).to(device)
        self.config = config

    def position_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters position or attention schemes add to the GPT: the scheme's (transformer.wpe), an
        Abacus table, and attention options' (sinks, SSMax scales)."""
        return {
            n: p
            for n, p in self.named_parameters()
            if n.startswith(POSITION_PREFIXES) or n.endswith(POSITION_SUFFIXES)
        }

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; `non_embedding` leaves out wte (tied with lm_head) and position parameters."""
        n = sum(p.numel() for p in self.parameters())  # the tied weight is counted once
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            n -= sum(p.numel() for p in self.position_parameters().values())
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6 per matmul weight, lm_head included,
        plus attention scores and values, 12 * n_layer * C * T (PaLM, Chowdhery et al. 2022, app. B)."""
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        tied_head = self.lm_head.weight.numel() if cfg.tie_embeddings else 0  # untied: already counted
        matmul_params = self.num_params(non_embedding=True) + tied_head
        return 6.0 * matmul_params + 12.0 * cfg.n_layer * cfg.n_embd * T

    def forward(
        self, idx, targets=None, positions=None, abacus=None, *, cache: KVCache | None = None, observe=None
    ):
        """idx (B, T) -> (logits, loss). With targets (B, T) (-1 = ignore): logits (B, T, V) and mean
        cross-entropy; without: logits (B, 1, V) of the last position only, loss None. `positions` (B, T):
        explicit position ids of the tokens (positional.Positions; None: token t at t), `abacus` (B, T):
        their Abacus ids, so that a batch (x, y[, positions[, abacus]]) is `model(*batch)`. With a cache, idx
        continues the cached tokens. `observe(layer, weights)`, if given, sees each layer's attention weights
        (B, nh, T, S), one layer at a time (diagnostics)."""
        T = idx.size(1)
        for name, ids in (("positions", positions), ("abacus", abacus)):
            if ids is not None and ids.shape != idx.shape:
                raise ValueError(f"{name} must be (B, T) = {tuple(idx.shape)}, got {tuple(ids.shape)}")
        pos = Positions(T, T, positions, positions) if cache is None else cache.positions(T, positions)
        pe = self.transformer.wpe
        x = self.transformer.abacus(self.transformer.wte(idx), abacus)
        x = self.transformer.drop(pe.embed(x, pos))  # (B, T, C)
        shared = pe.attn_bias(pos, idx.device)  # once per forward; each layer's bias from it
        for block in self.transformer.h:
            x = block(x, pe, shared, pos, cache, observe)
        if cache is not None:
            cache.pos += T
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :])[..., : self.config.vocab_size], None  # (B, 1, V)
        logits = self.lm_head(x)[..., : self.config.vocab_size]  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        positions=None,
        abacus=None,
    ):
        """Append max_new_tokens sampled tokens to idx (B, T0); temperature 0 = greedy. Uses a KV cache;
        with `learned` and no `positions` the context is cropped to its rows like nanoGPT (then every step
        recomputes).
        `positions`, `abacus` (B, T0 + max_new_tokens): the ids of every token, given and generated (a task
        knows them in advance, data/tasks.py)."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        # Without ids a token's position is its place in idx, so the context is cropped to what the scheme
        # encodes; given ids (a task's coupled ids can repeat), the sequence is not bounded by the table.
        max_len = self.transformer.wpe.max_len if positions is None else None
        cache = None
        for step in range(max_new_tokens):
            end = idx.size(1)
            if cache is None or cache.pos == cache.max_len:
                ctx = idx if max_len is None else idx[:, -max_len:]
                capacity = ctx.size(1) + max_new_tokens - step - 1 if max_len is None else max_len
                cache = KVCache(self.config.n_layer, capacity)
                ids = [None if t is None else t[:, end - ctx.size(1) : end] for t in (positions, abacus)]
                logits, _ = self(ctx, None, *ids, cache=cache)
            else:
                ids = [None if t is None else t[:, end - 1 : end] for t in (positions, abacus)]
                logits, _ = self(idx[:, -1:], None, *ids, cache=cache)
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx


def generate_text(
    model: GPT, tok, prompt: str, max_new_tokens: int, temperature=0.8, top_k=200, num_samples=1
) -> list[str]:
    """`num_samples` continuations of `prompt`, each returned with the prompt in front; `tok` is any
    tokenizer with encode/decode (data/tokenizers.py).

    The model never sees more than block_size positions, whatever its scheme: relative schemes could
    run further, but past the training length they degrade (that is what compare.py measures, not what
    a sample should show). Once the text outgrows block_size, decoding restarts from its last
    block_size // 2 tokens, so the cache is refilled once per half block instead of once per token
    (nanoGPT's cropping).
    """
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: give at least one character, e.g. --prompt=$'\\n'")
    block, keep = model.config.block_size, max(1, model.config.block_size // 2)
    device = next(model.parameters()).device
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    while max_new_tokens > 0:
        ctx = idx if idx.size(1) < block else idx[:, -keep:]
        n = min(max_new_tokens, block + 1 - ctx.size(1))  # generate feeds ctx + n - 1 <= block positions
        out = model.generate(ctx, n, temperature=temperature, top_k=top_k)
        idx = torch.cat((idx, out[:, ctx.size(1) :]), dim=1)
        max_new_tokens -= n
    return [tok.decode(row.tolist()) for row in idx]
