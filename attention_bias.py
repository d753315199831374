"""The attention-bias family of positional encodings: nothing is added to the embeddings or rotated; every
attention score gets a bias that depends on where the key is relative to the query.

    alibi   Press et al. 2022       fixed head slopes: -m_h (i - j)
    t5      Raffel et al. 2020      a learned scalar per head per log-spaced distance bucket, one table
    kerple  Chi et al. 2022         -r1 log(1 + r2 (i - j)), r1, r2 > 0 learned per head and layer
    fire    Li et al. 2023          MLP(psi(i - j) / psi(max(L_thr, i))), psi(x) = log(c x + 1), one MLP
    cope    Golovneva et al. 2024   contextual positions (sums of sigmoid(q.k) gates), interpolated embeddings

Conventions: query position i, key position j (the tokens' positions, or their explicit ids: positional.
Positions), distance i - j, >= 0 at every key a query sees when ids never decrease along a sequence (the
only explicit ids these schemes take: `position_ids = "monotone"`; CoPE takes none, it counts its own).
Positions are absolute, so the KV cache gives the bias of a full forward at any offset. Each scheme returns
the bias added to the scaled scores q.k / sqrt(hs), (1 or B, nh, T, S); attention.py masks the keys a query
does not see. What is computed once per forward (`attn_bias`) and what once per layer (`layer_bias`) is
said per scheme.

Kernels: a float bias rules out SDPA's flash kernel on CUDA (it takes is_causal only), so these schemes get
the memory-efficient kernel there, which takes the mask and its gradient (PyTorch's backend rules; not
measured here). On CPU (measured, torch 2.13) a 4-D float mask runs the flash-CPU kernel when no gradient
flows into it (alibi; every scheme under no_grad) and the math kernel when one does (the learned biases in
training). Parameters live here, in `transformer.wpe`, so `GPT.num_params` counts them as position ones.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from positional import LayerContext, PositionalEncoding, Positions, register


def _ids(B: int, pos: Positions, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries' and keys' positions as float32 (B, T) and (B, S), for a score_mod to index."""
    return pos.query_ids(device).float().expand(B, -1), pos.key_ids(device).float().expand(B, -1)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Head slopes of Press et al. (2022): geometric from 2^(-8/n); for n not a power of two, the slopes
    of the nearest lower power of two followed by every other slope of the next power (paper's code)."""

    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    p = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(p) + geometric(2 * p)[0::2][: n_head - p]
    return torch.tensor(slopes, dtype=torch.float32)


@register("alibi")
class ALiBi(PositionalEncoding):
    """ALiBi (Press et al. 2022): score(i, j) -= slope_h * (i - j), computed once per forward; no parameters,
    any length (past block_size the same line goes on)."""

    adds_bias = True

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("slopes", alibi_slopes(config.n_head), persistent=False)

    def attn_bias(self, pos: Positions, device):
        return -self.slopes[:, None, None] * pos.distances(device)[:, None]  # (B|1, nh, T, S)

    def score_mod(self, shared, q, k, ctx):
        (qid, kid), slopes = _ids(q.size(0), ctx.pos, q.device), self.slopes

        def bias(b, h, i, j):
            return -slopes[h] * (qid[b, i] - kid[b, j])

        return bias


def t5_bucket(distance: torch.Tensor, num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """T5's causal (unidirectional) bucket of each distance i - j: distances below num_buckets // 2 get one
    bucket each, longer ones log-spaced buckets up to max_distance, and all distances from there on share
    the last bucket; the future (negative) gets bucket 0. int64, distance's shape. Computed in float32 as
    the reference code does, so that bucket edges fall exactly where T5's fall."""
    n = distance.clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(n.clamp(min=exact).float() / exact) / math.log(max_distance / exact)  # 0 at exact
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(n < exact, n, large)


@register("t5")
class T5Bias(PositionalEncoding):
    """T5's relative position bias (Raffel et al. 2020): a learned scalar per head and distance bucket
    (`t5_bucket`), in one table shared by all layers as in T5 (Hugging Face keeps it in layer 0 and passes
    the bias on), so the bias is computed once per forward. Knobs: t5_num_buckets (default 32),
    t5_max_distance (default 128). Table `relative_attention_bias` (num_buckets, nh), GPT-2 init N(0, 0.02).
    Past block_size: every distance >= max_distance reads the last bucket, so the bias is flat out there;
    buckets of distances never seen in training (block_size < max_distance) keep their initial values."""

    adds_bias = True

    parameter_free = False

    knobs = ("t5_num_buckets", "t5_max_distance")

    def __init__(self, config):
        super().__init__(config)
        self.num_buckets, self.max_distance = self._knobs(config)
        self.relative_attention_bias = nn.Embedding(self.num_buckets, config.n_head)

    @staticmethod
    def _knobs(config) -> tuple[int, int]:
        buckets, distance = config.t5_num_buckets, config.t5_max_distance
        return 32 if buckets is None else buckets, 128 if distance is None else distance

    @classmethod
    def validate(cls, config):
        buckets, distance = cls._knobs(config)
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 2:
            raise ValueError(f"t5_num_buckets must be an integer >= 2, got {buckets!r}")
        if isinstance(distance, bool) or not isinstance(distance, int) or distance <= buckets // 2:
            raise ValueError(
                f"t5_max_distance must be an integer > t5_num_buckets // 2 = {buckets // 2} (where the "
                f"log-spaced buckets start), got {distance!r}"
            )

    def attn_bias(self, pos: Positions, device):
        buckets = t5_bucket(pos.distances(device), self.num_buckets, self.max_distance)  # (B|1, T, S)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)  # (B|1, nh, T, S)


@register("kerple")
class KERPLE(PositionalEncoding):
    """KERPLE, logarithmic variant (Chi et al. 2022): bias_h(i, j) = -r1_h log(1 + r2_h (i - j)), with r1, r2
    learned per head and per layer (each attention layer has its own kernel, as in the paper's GPT-NeoX
    code). Positivity by parametrisation: r = softplus(rho), rho learned; initially r1 ~ U(0, 2) and
    r2 ~ U(0, 1), floored at 0.01 (the paper's code's init and eps). The distances are computed once per
    forward, the kernel once per layer. No knobs. Past block_size: the same kernel at longer distances, a
    logarithmic decay with no length built in."""

    adds_bias = True

    parameter_free = False

    EPS = 0.01

    def __init__(self, config):
        super().__init__(config)

        def rho(high):  # softplus(rho) ~ U(EPS, high); one vector (nh,) per layer, so no weight decay
            r = torch.empty(config.n_head).uniform_(0, high).clamp(min=self.EPS)
            return nn.Parameter(r.expm1().log())

        self.rho1 = nn.ParameterList(rho(2.0) for _ in range(config.n_layer))
        self.rho2 = nn.ParameterList(rho(1.0) for _ in range(config.n_layer))

    def attn_bias(self, pos: Positions, device):
        return pos.distances(device).float().clamp(min=0)[:, None]  # (B|1, 1, T, S), i - j; the future 0

    def layer_bias(self, dist, q, k, ctx: LayerContext):
        r1 = F.softplus(self.rho1[ctx.layer])[:, None, None]  # (nh, 1, 1)
        r2 = F.softplus(self.rho2[ctx.layer])[:, None, None]
        return -r1 * torch.log1p(r2 * dist)  # (B|1, nh, T, S)

    def score_mod(self, shared, q, k, ctx):
        qid, kid = _ids(q.size(0), ctx.pos, q.device)
        r1, r2 = F.softplus(self.rho1[ctx.layer]), F.softplus(self.rho2[ctx.layer])

        def bias(b, h, i, j):
            return -r1[h] * torch.log1p(r2[h] * (qid[b, i] - kid[b, j]).clamp(min=0))

        return bias


@register("fire")
class FIRE(PositionalEncoding):
    """FIRE (Li et al. 2023, "Functional Interpolation for Relative Positions"): bias(i, j) = f(psi(i - j) /
    psi(max(L_thr, i))), psi(x) = log(|c| x + 1), f: R -> R^nh an MLP 1 -> 32 -> nh with ReLU (the paper's
    width), all learned. One FIRE for all layers (the paper's cheaper layer-shared variant), so the bias is
    computed once per forward. Initial values as in the paper's code: c = 0.1, the MLP's PyTorch Linear
    init, eps 1e-6 added to the normaliser. The threshold is learned as L_thr = |l| * fire_threshold with
    l = 1 initially, so it moves at the pace of the other parameters; knob fire_threshold (initial L_thr),
    default block_size / 4 (the paper: 512 at training length 2048).

    Below the threshold the normaliser is fixed and the bias depends on i - j alone; past it, on the ratio
    of log-distances (progressive interpolation). Past block_size the MLP's input stays in [0, 1], the range
    it was trained on, which is FIRE's answer to length extrapolation."""

    adds_bias = True

    parameter_free = False

    knobs = ("fire_threshold",)
    WIDTH, C0, EPS = 32, 0.1, 1e-6

    def __init__(self, config):
        super().__init__(config)
        self.threshold = self._threshold(config)

        def uniform(*shape, fan_in):  # nn.Linear's default init
            return nn.Parameter(torch.empty(*shape).uniform_(-(fan_in**-0.5), fan_in**-0.5))

        self.w1, self.b1 = uniform(self.WIDTH, 1, fan_in=1), uniform(self.WIDTH, fan_in=1)
        self.w2 = uniform(config.n_head, self.WIDTH, fan_in=self.WIDTH)
        self.b2 = uniform(config.n_head, fan_in=self.WIDTH)
        self.c = nn.Parameter(torch.tensor(self.C0))
        self.l = nn.Parameter(torch.tensor(1.0))

    @staticmethod
    def _threshold(config) -> float:
        return config.block_size / 4 if config.fire_threshold is None else config.fire_threshold

    @classmethod
    def validate(cls, config):
        threshold = cls._threshold(config)
        number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
        if not number or not 0 < threshold < math.inf:
            raise ValueError(f"fire_threshold must be a positive number (initial L_thr), got {threshold!r}")

    def attn_bias(self, pos: Positions, device):
        i = pos.query_ids(device).float()  # (B|1, T), the queries' positions

        def psi(x):
            return torch.log1p(self.c.abs() * x)

        norm = psi(torch.maximum(i, self.l.abs() * self.threshold)) + self.EPS  # (B|1, T)
        x = psi(pos.distances(device).clamp(min=0).float()) / norm[..., None]  # (B|1, T, S), in [0, 1]
        bias = F.linear(
            torch.relu(F.linear(x[..., None], self.w1, self.b1)), self.w2, self.b2
        )  # (., T, S, nh)
        return bias.permute(0, 3, 1, 2)  # (B|1, nh, T, S)


@register("cope")
class CoPE(PositionalEncoding):
    """CoPE (Golovneva et al. 2024, "Contextual Position Encoding"): a query counts the keys it finds
    relevant. Gates g_ij = sigmoid(q_i.k_j / sqrt(hs)) (the layer's own scaled scores, causal), contextual
    position p_ij = sum of g_it over t = j .. i, clamped to cope_max_pos - 1; the embedding e[p] (hs,) is
    interpolated between e[floor p] and e[ceil p], and q_i.e[p_ij] is added to score(i, j). One table per
    layer, `pos_emb` (n_layer, cope_max_pos, hs), shared by the heads, zero at init (the paper's code:
    training starts from NoPE). Knob cope_max_pos, default block_size.

    Everything is per layer (it depends on q and k): the gates need the scores q.k once more besides
    SDPA's, in float32, (B, nh, T, S). Past block_size: positions are sums of gates, not token distances,
    so longer inputs need no new rows until the sums reach cope_max_pos - 1; from there on every key shares
    the last row."""

    adds_bias = True

    knobs = ("cope_max_pos",)
    position_ids = "none"  # contextual positions: it counts its own
    parameter_free = False

    def __init__(self, config):
        super().__init__(config)
        self.max_pos = self._max_pos(config)
        self.pos_emb = nn.Parameter(torch.zeros(config.n_layer, self.max_pos, config.head_size))

    @staticmethod
    def _max_pos(config) -> int:
        return config.block_size if config.cope_max_pos is None else config.cope_max_pos

    @classmethod
    def validate(cls, config):
        max_pos = cls._max_pos(config)
        if isinstance(max_pos, bool) or not isinstance(max_pos, int) or max_pos < 1:
            raise ValueError(f"cope_max_pos must be a positive integer, got {max_pos!r}")

    def layer_bias(self, shared, q, k, ctx: LayerContext):
        with torch.autocast(q.device.type, enabled=False):  # sums of up to S gates: float32
            # q and k are views of c_attn's output: copied once here, not in each matmul that reads them
            q, k = q.float().contiguous(), k.float().contiguous()
            return ContextualBias.apply(q, k, self.pos_emb[ctx.layer], ctx.visible)


class ContextualBias(torch.autograd.Function):
    """CoPE's bias, (B, nh, T, S): q (B, nh, T, hs) and k (B, nh, S, hs) float32, the layer's table e (P, hs),
    `seen` (T, S) or (B|1, 1, T, S) bool. Its backward is written out: autograd through the same ops saves
    more (B, nh, T, S) tensors (an int64 index twice S wide among them) and runs more kernels, 1.6x the
    time forward and backward on the 2-core CPU (docs/BENCH.md). With L = q e^T (B, nh, T, P) and the
    differences D_p = L_(p+1) - L_p, D_(P-1) = 0, the interpolation is L[lo] + w D[lo], lo = floor(p),
    w = p - lo; a position clamped to P - 1 has lo = P - 1, hence D[lo] = 0 and no gradient, which is what
    clamp's backward would give."""

    @staticmethod
    def forward(ctx, q, k, table, seen):
        scale = 1 / math.sqrt(q.size(-1))
        gates = torch.sigmoid(q @ k.transpose(-2, -1) * scale).masked_fill_(~seen, 0.0)  # (B, nh, T, S)
        cum = gates.cumsum(-1)  # p_ij = the row's total - (sum over t < j): one pass, no flips
        pos = torch.sub(cum[..., -1:], cum).add_(gates).clamp_(max=table.size(0) - 1)
        lo = pos.long()
        w = pos.frac_()  # p >= 0: frac = p - floor(p)
        logits = q @ table.t()  # (B, nh, T, P): q_i.e[p] at every integer p
        d = F.pad(logits.diff(dim=-1), (0, 1)).gather(-1, lo)
        ctx.save_for_backward(q, k, table, gates, lo, w, d)
        return torch.addcmul(logits.gather(-1, lo), w, d)

    @staticmethod
    @once_differentiable  # a first derivative only: double backward raises, it is not silently wrong
    def backward(ctx, grad):
        q, k, table, gates, lo, w, d = ctx.saved_tensors
        scale = 1 / math.sqrt(q.size(-1))
        # p_j sums the gates t >= j, so a gate's gradient sums the positions' over j <= t
        d_scores = torch.ops.aten.sigmoid_backward((grad * d).cumsum_(-1), gates)  # 0 where masked (g = 0)
        shape = (*grad.shape[:-1], table.size(0))
        d_logits = grad.new_zeros(shape).scatter_add_(-1, lo, grad)
        d_diff = grad.new_zeros(shape).scatter_add_(-1, lo, grad * w)[..., :-1]
        d_logits[..., 1:] += d_diff
        d_logits[..., :-1] -= d_diff
        d_q = (d_scores @ k).mul_(scale).add_(d_logits @ table)
        d_k = (d_scores.transpose(-2, -1) @ q).mul_(scale)
        d_table = d_logits.flatten(0, -2).t() @ q.flatten(0, -2)
        return d_q, d_k, d_table, None
