"""Rotary Position Embedding (RoPE, Su et al. 2021, https://arxiv.org/abs/2104.09864).

Shapes: B batch, nh heads, T positions, hs head_dim, d rotary_dim (<= hs, even).

Formula. Feature pair i (i = 0 .. d/2 - 1) of a query or key at position m is rotated by the
angle m * inv_freq_i with

    inv_freq_i = base ** (-2i / d)                         (RoFormer section 3.3)

and the rotation is counter-clockwise (positive sign, as in RoFormer, GPT-NeoX and Llama): a pair
(a, b) becomes (a cos - b sin, b cos + a sin), i.e. the complex number a + ib times e^{i m inv_freq_i}.
Then <rope(q, m), rope(k, n)> depends on m - n only. Angles are computed in float32 from integer
(or float32) positions; cos/sin are cast to the activations' dtype only when applied.

Pairing conventions (the two are NOT interchangeable without converting the weights):
- half-split, `interleaved=False` (default; GPT-NeoX, Hugging Face Llama `rotate_half`):
  feature i pairs with feature i + d/2.
- interleaved, `interleaved=True` (Meta's original Llama complex-number code, GPT-J, RoFormer):
  feature 2i pairs with feature 2i + 1.
Converting a checkpoint: only the q and k projections change. Within every head, reorder the
output rows of W_q and W_k (weights and biases; nh = that projection's number of heads) with
    perm = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2), torch.arange(d, hs)))  # evens, odds, rest
    w_half = w_interleaved.view(nh, hs, -1)[:, perm].reshape_as(w_interleaved)
and with torch.argsort(perm) for the other direction. Then q and k come out with their features in
half-split order, and half-split RoPE on them is the same permutation of interleaved RoPE on the old
ones; q.k is unchanged because q and k are permuted alike, so everything else loads as it is.

Partial rotary (GPT-NeoX `rotary_pct`): only the first d of the hs features rotate; the rest pass
through bit-for-bit.

Context extension (`scaling`: Hugging Face `rope_parameters` keys and maths; checked against
transformers element-wise in tests/test_rope.py):
- linear  {factor}: position interpolation, inv_freq / factor (Chen et al. 2023).
- ntk     {factor}: static NTK-aware base, base * factor ** (d / (d - 2)) (bloc97; not in transformers).
- dynamic {factor, original_max_position_embeddings}: the NTK base is recomputed from the current
  total length L once L > original (base * (factor * L / original - factor + 1) ** (d / (d - 2))),
  unscaled below it. transformers reads `original` from config.max_position_embeddings and keeps
  the largest L seen so far; here it is a pure function of the current L, the same thing while a
  sequence grows. Keys already in a KV cache keep the rotation they got, as in transformers.
- yarn    {factor, original_max_position_embeddings, beta_fast=32, beta_slow=1, attention_factor}:
  high-frequency pairs (more than beta_fast turns over the original length) keep their frequency,
  low-frequency pairs (fewer than beta_slow turns) are interpolated by `factor`, a linear ramp in
  between (its ends rounded outwards, as in the reference code); cos/sin are multiplied by
  attention_factor (default 0.1 ln(factor) + 1), so q.k logits scale by its square (Peng et al. 2023).
- llama3  {factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}: wavelengths
  above original / low_freq_factor are divided by factor, below original / high_freq_factor kept,
  smoothly blended in between (Llama 3.1).
- longrope {short_factor, long_factor, factor, original_max_position_embeddings, attention_factor}:
  per-pair rescaling, inv_freq_i / ext_i, with ext = short_factor (d/2 numbers) while the total length L
  is <= original and long_factor once it is longer (for every position, recomputed like dynamic; keys
  already cached keep theirs); cos/sin times attention_factor, default sqrt(1 + ln(factor) /
  ln(original)) (1 for factor <= 1) (Ding et al. 2024, LongRoPE; Phi-3).

p-RoPE (`fraction` p, Barbero et al. 2024): only the int(p * d) // 2 fastest pairs rotate; the slower
pairs get frequency zero (cos 1, sin 0: they pass through unchanged) and carry no position, whereas
partial rotary keeps every frequency of a geometric series over fewer features.

xPos (Sun et al. 2022, `xpos_scale`): after rotation, pair i of a query at position m is multiplied by
zeta_i^(m / scale_base) and of a key at n by zeta_i^(-n / scale_base), zeta_i = (2i/d + 0.4) / 1.4, so
q.k gains a factor zeta_i^((m - n) / scale_base) that decays with distance (for m >= n only: causal use).
Positions are absolute (rotary-embedding-torch centres them per call, which cancels in q.k but would not
survive a KV cache); the factors reach zeta_0^(-m / scale_base) ~ 3.5^(m / scale_base) on keys, fine in
float32 and bfloat16 (fp32's range), past float16's 65504 from m ~ 8.8 scale_base.
"""

import math

import torch
from torch import Tensor, nn

# rope_type -> (required keys, optional keys). `base` and `rotary_dim` are constructor arguments,
# so Hugging Face's `rope_theta` / `partial_rotary_factor` are rejected rather than silently ignored.
SCALING_KEYS = {
    "default": (set(), set()),
    "linear": ({"factor"}, set()),
    "ntk": ({"factor"}, set()),
    "dynamic": ({"factor", "original_max_position_embeddings"}, set()),
    "yarn": ({"factor", "original_max_position_embeddings"}, {"beta_fast", "beta_slow", "attention_factor"}),
    "llama3": ({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}, set()),
    "longrope": (
        {"short_factor", "long_factor", "factor", "original_max_position_embeddings"},
        {"attention_factor"},
    ),
}
LENGTH_DEPENDENT = {"dynamic", "longrope"}  # frequencies that change once the total length passes original


def _check_positive(name: str, value, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


def _check_rotary_dim(rotary_dim: int) -> None:
    # an odd d would leave one feature without a partner (and make base**(-2i/d) ambiguous)
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int) or rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be a positive even integer, got {rotary_dim!r}")


def _check_scaling(scaling: dict, rotary_dim: int) -> None:
    example = '{"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 64}'
    if not isinstance(scaling, dict) or "rope_type" not in scaling:
        raise ValueError(f"scaling must be a dict with a 'rope_type' key like {example}, got {scaling!r}")
    kind = scaling["rope_type"]
    if not isinstance(kind, str) or kind not in SCALING_KEYS:
        raise ValueError(f"unknown scaling rope_type {kind!r}; known: {sorted(SCALING_KEYS)}")
    required, optional = SCALING_KEYS[kind]
    keys = set(scaling) - {"rope_type"}
    if missing := required - keys:
        raise ValueError(f"scaling rope_type {kind!r} is missing keys {sorted(missing)}")
    if unknown := keys - required - optional:
        allowed = sorted(required | optional)
        raise ValueError(
            f"scaling rope_type {kind!r} got unknown keys {sorted(unknown)}; allowed: {allowed}"
            " (base and rotary_dim are separate arguments)"
        )
    for key in sorted(keys):
        if key in ("short_factor", "long_factor"):  # one rescaling factor per rotated pair
            value = scaling[key]
            if not isinstance(value, list | tuple) or len(value) != rotary_dim // 2:
                need = f"a list of rotary_dim / 2 = {rotary_dim // 2} numbers"
                raise ValueError(f"scaling[{key!r}] must be {need}, got {value!r}")
            for i, v in enumerate(value):
                _check_positive(f"scaling[{key!r}][{i}]", v)
            continue
        _check_positive(f"scaling[{key!r}]", scaling[key], integer=key == "original_max_position_embeddings")
    if kind == "llama3" and scaling["low_freq_factor"] >= scaling["high_freq_factor"]:
        raise ValueError(f"scaling needs low_freq_factor < high_freq_factor, got {scaling}")
    if kind == "yarn" and scaling.get("beta_slow", 1) >= scaling.get("beta_fast", 32):
        raise ValueError(f"scaling needs beta_slow < beta_fast (defaults 1 and 32), got {scaling}")
    if kind in ("ntk", "dynamic") and rotary_dim <= 2:
        raise ValueError(f"scaling rope_type {kind!r} needs rotary_dim > 2 (d/(d-2)), got {rotary_dim}")


def _yarn(inv_freq: Tensor, theta_pow: Tensor, base: float, d: int, s: dict) -> tuple[Tensor, float]:
    factor, original = s["factor"], s["original_max_position_embeddings"]
    beta_fast, beta_slow = s.get("beta_fast", 32), s.get("beta_slow", 1)

    def pair_index(turns):  # the (fractional) pair index that makes `turns` turns over `original`
        return d * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(math.floor(pair_index(beta_fast)), 0), min(math.ceil(pair_index(beta_slow)), d - 1)
    if low == high:
        high += 0.001  # avoid 0/0 in the ramp, as the reference code does
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # share of the original frequency each pair keeps
    inv_freq = 1.0 / (factor * theta_pow) * (1 - keep) + inv_freq * keep
    default_scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, s.get("attention_factor", default_scale)


def _llama3(inv_freq: Tensor, s: dict) -> Tensor:
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    original = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return torch.where(medium, blended, scaled)


def _longrope(theta_pow: Tensor, s: dict, seq_len: int | None) -> tuple[Tensor, float]:
    factor, original = s["factor"], s["original_max_position_embeddings"]
    long = seq_len is not None and seq_len > original
    ext = torch.tensor(s["long_factor" if long else "short_factor"], dtype=torch.float32)
    default_scale = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
    return 1.0 / (ext * theta_pow), s.get("attention_factor", default_scale)


def kept_pairs(rotary_dim: int, fraction: float = 1.0) -> int:
    """How many of the d/2 pairs p-RoPE keeps rotating (the fastest ones): int(fraction * d) // 2."""
    _check_rotary_dim(rotary_dim)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ValueError(f"fraction (p-RoPE) must be a number in (0, 1], got {fraction!r}")
    kept = int(fraction * rotary_dim) // 2
    if kept < 1:
        raise ValueError(f"fraction={fraction} keeps no pair of rotary_dim={rotary_dim} rotating (need >= 1)")
    return kept


def rope_inv_freq(
    rotary_dim: int,
    base: float = 10000.0,
    scaling: dict | None = None,
    seq_len: int | None = None,
    fraction: float = 1.0,
) -> tuple[Tensor, float]:
    """Per-pair inverse frequencies, with an optional context-extension method applied.

    Args:
        rotary_dim: d, the number of rotated features (even).
        base: theta in inv_freq_i = base ** (-2i / d).
        scaling: None or a dict with "rope_type" in SCALING_KEYS and that type's keys (module docstring).
        seq_len: current total length (cached + new positions); only 'dynamic' and 'longrope' use it.
        fraction: p-RoPE's p: the slowest pairs past `kept_pairs(d, p)` get frequency 0.

    Returns:
        inv_freq: (d // 2,) float32, on the default device.
        attention_scaling: factor for cos and sin (1.0 except for yarn and longrope).
    """
    kept = kept_pairs(rotary_dim, fraction)
    inv_freq, scale = _scaled_inv_freq(rotary_dim, base, scaling, seq_len)
    if kept < rotary_dim // 2:
        inv_freq[kept:] = 0.0
    return inv_freq, scale


def _scaled_inv_freq(rotary_dim, base, scaling, seq_len) -> tuple[Tensor, float]:
    _check_positive("base", base)
    scaling = {"rope_type": "default"} if scaling is None else scaling
    _check_scaling(scaling, rotary_dim)
    kind, d = scaling["rope_type"], rotary_dim
    if kind == "ntk":
        base = base * scaling["factor"] ** (d / (d - 2))
    if kind == "dynamic" and seq_len is not None and seq_len > scaling["original_max_position_embeddings"]:
        factor, original = scaling["factor"], scaling["original_max_position_embeddings"]
        base = base * (factor * seq_len / original - (factor - 1)) ** (d / (d - 2))
    # 2i / d with i the pair index; equal to i / (d/2) for even d (see tests/test_rope.py)
    theta_pow = base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,)
    inv_freq = 1.0 / theta_pow
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    if kind == "yarn":
        return _yarn(inv_freq, theta_pow, base, d, scaling)
    if kind == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    if kind == "longrope":
        return _longrope(theta_pow, scaling, seq_len)
    return inv_freq, 1.0


def rope_cos_sin(
    inv_freq: Tensor, positions: Tensor, attention_scaling: float = 1.0, interleaved: bool = False
) -> tuple[Tensor, Tensor]:
    """cos and sin of positions * inv_freq, (T, d) float32, each pair's angle written at both of its
    features: [a0..a_{d/2-1}, a0..a_{d/2-1}] for half-split, [a0, a0, a1, a1, ...] for interleaved.
    """
    angles = _layout(_float_positions(positions)[:, None] * inv_freq.to(torch.float32)[None, :], interleaved)
    cos, sin = angles.cos(), angles.sin()  # (T, d)
    if attention_scaling != 1.0:
        cos, sin = cos * attention_scaling, sin * attention_scaling
    return cos, sin


def xpos_scale(
    rotary_dim: int, positions: Tensor, scale_base: float = 512.0, interleaved: bool = False
) -> Tensor:
    """xPos' query factors zeta_i ** (m / scale_base), zeta_i = (2i/d + 0.4) / 1.4, for positions (..., T):
    (..., T, d) float32, laid out as cos/sin; keys take their inverse (module docstring)."""
    _check_rotary_dim(rotary_dim)
    _check_positive("scale_base", scale_base)
    zeta = (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim + 0.4) / 1.4  # (d/2,)
    power = _float_positions(positions)[..., None] / scale_base  # (..., T, 1)
    return _layout(zeta.to(power.device) ** power, interleaved)


def _float_positions(positions: Tensor) -> Tensor:
    if positions.dtype in (torch.float16, torch.bfloat16):
        raise ValueError(f"positions must be integer or float32/float64 (exact), got {positions.dtype}")
    return positions.to(torch.float32)


def _layout(per_pair: Tensor, interleaved: bool) -> Tensor:
    """(T, d/2) -> (T, d), each pair's value at both of its features."""
    return per_pair.repeat_interleave(2, dim=-1) if interleaved else torch.cat((per_pair, per_pair), dim=-1)


def _pairs(t: Tensor, interleaved: bool) -> tuple[Tensor, Tensor]:
    """Views of the first and second member of every pair along the last dim."""
    return (t[..., 0::2], t[..., 1::2]) if interleaved else t.chunk(2, dim=-1)


class _Rotate(torch.autograd.Function):
    """x -> x rotated by sign * angle, pair by pair. The gradient of a rotation is the opposite
    rotation, so backward is the same three kernels as forward; autograd through the textbook
    `x * cos + rotate_half(x) * sin` runs ten (two of them cats) and is ~1.5x slower on CPU."""

    @staticmethod
    def forward(ctx, x, cos, sin, interleaved, sign):
        ctx.save_for_backward(cos, sin)
        ctx.interleaved, ctx.sign = interleaved, sign
        # the cos term of every feature, into a contiguous tensor of x's dtype: `x * cos` would copy
        # the layout of a strided x (q is a view into the fused qkv) and run 2x slower
        out = torch.mul(x, cos, out=torch.empty_like(x, memory_format=torch.contiguous_format))
        (x1, x2), (out1, out2) = _pairs(x, interleaved), _pairs(out, interleaved)
        s = _pairs(sin, interleaved)[0]  # sin is equal within a pair too
        out1.addcmul_(x2, s, value=-sign)  # a cos - b sin
        out2.addcmul_(x1, s, value=sign)  # b cos + a sin
        return out

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors  # through .apply, so that double backward works too
        return _Rotate.apply(grad, cos, sin, ctx.interleaved, -ctx.sign), None, None, None, None


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool = False) -> Tensor:
    """Rotate the first d = cos.shape[-1] features of x (..., T, hs) by cos/sin (T, d) (or broadcastable),
    laid out as `rope_cos_sin` makes them; features d.. pass through unchanged. Returns x's dtype.
    cos/sin are constants here: no gradient flows to them."""
    if cos.requires_grad or sin.requires_grad:
        raise ValueError("apply_rope treats cos/sin as constants; got cos/sin that require grad")
    d, hs = cos.shape[-1], x.shape[-1]
    if d == hs:
        return _Rotate.apply(x, cos, sin, interleaved, 1)
    return torch.cat((_Rotate.apply(x[..., :d], cos, sin, interleaved, 1), x[..., d:]), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotates q or k (..., T, hs) at positions offset .. offset + T - 1 (module docstring), or at given
    positions (B, T) for x (..., B, nh, T, hs) (randomized positions).

    cos/sin for positions 0 .. max_seq_len - 1 are cached in float32 buffers (not saved in the
    state_dict, moved by .to()); the cache grows on demand when offset + T exceeds it, e.g. when
    evaluating beyond the training length. `fraction` < 1 is p-RoPE.
    """

    def __init__(
        self,
        head_dim: int,
        base: float = 10000.0,
        rotary_dim: int | None = None,
        interleaved: bool = False,
        scaling: dict | None = None,
        max_seq_len: int = 2048,
        fraction: float = 1.0,
    ):
        super().__init__()
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
        rotary_dim = head_dim if rotary_dim is None else rotary_dim
        _check_rotary_dim(rotary_dim)
        if rotary_dim > head_dim:
            raise ValueError(f"rotary_dim must be <= head_dim ({head_dim}), got {rotary_dim}")
        _check_positive("max_seq_len", max_seq_len, integer=True)
        self.head_dim, self.rotary_dim, self.base, self.interleaved = head_dim, rotary_dim, base, interleaved
        self.scaling, self.fraction = None if scaling is None else dict(scaling), fraction
        self._inv_freq()  # validate base, scaling and fraction before building anything
        switches = self.scaling is not None and self.scaling["rope_type"] in LENGTH_DEPENDENT
        self._switch_from = self.scaling["original_max_position_embeddings"] if switches else None
        self._build_cache(max_seq_len, torch.device("cpu"))

    def _inv_freq(self, seq_len: int | None = None) -> tuple[Tensor, float]:
        return rope_inv_freq(self.rotary_dim, self.base, self.scaling, seq_len, self.fraction)

    def _build_cache(self, length: int, device: torch.device) -> None:
        inv_freq, scale = self._inv_freq()
        positions = torch.arange(length, device=device)
        cos, sin = rope_cos_sin(inv_freq.to(device), positions, scale, self.interleaved)  # (length, d)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"x must have last dim head_dim={self.head_dim}, got shape {tuple(x.shape)}")
        if torch.is_tensor(offset):  # positions (B, T), within the cache (the scheme sizes it)
            cos, sin = self.cos[offset].unsqueeze(-3), self.sin[offset].unsqueeze(-3)  # (B, 1, T, d)
            return apply_rope(x, cos.to(x.dtype), sin.to(x.dtype), self.interleaved)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        end = offset + x.shape[-2]
        if self._switch_from is not None and end > self._switch_from:
            # dynamic / longrope past the original length: frequencies depend on `end`, nothing to cache
            device = self.cos.device
            inv_freq, scale = self._inv_freq(seq_len=end)
            positions = torch.arange(offset, end, device=device)
            cos, sin = rope_cos_sin(inv_freq.to(device), positions, scale, self.interleaved)
        else:
            if end > self.cos.shape[0]:  # doubling keeps a long left-to-right sweep to O(log T) rebuilds
                self._build_cache(max(end, 2 * self.cos.shape[0]), self.cos.device)
            cos, sin = self.cos[offset:end], self.sin[offset:end]  # (T, d) views
        return apply_rope(x, cos.to(x.dtype), sin.to(x.dtype), self.interleaved)

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, base={self.base}, "
            f"interleaved={self.interleaved}, scaling={self.scaling}, fraction={self.fraction}, "
            f"cached={self.cos.shape[0]}"
        )
