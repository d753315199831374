"""Attention diagnostics: what each layer and head does at lengths inside and past the training length L,
the quantities the papers use to explain why a scheme holds or breaks there.

A forward pass runs with the model's `observe` hook, which sees each layer's attention weights (B, nh, T, S)
in turn (attention.weights: softmax, with a sink's column dropped, or stick-breaking's); each layer's are
reduced to per-head numbers at once, so no more than one layer's weights are alive at a time. For query i
(0-based, S = T), its visible keys j (n_i of them: i + 1, at most the layer's window, and only those within
its id window when the model has one), weights w_ij and
the rest r_i = 1 - sum_j w_ij (a learned sink's share; stick-breaking's leftover, which goes to the query's
own value):

    entropy       H_i = -sum_j w_ij log w_ij - r_i log r_i      nats, the rest counted as one more outcome
    normalised    H_i / log n_i (queries with n_i = 1 left out): 1 = uniform over the visible keys, the
                  fading of attention that log-n scaling and SSMax counter (Nakanishi 2025); with a rest
                  it can reach log(n_i + 1) / log n_i
    distance      sum_j w_ij (i - j) / sum_j w_ij               mean token distance attended to
    first         w_i0                                         mass on the first token, where attention
                                                               sinks form (Xiao et al. 2024)
    beyond L      sum_{j <= i - L} w_ij                        mass on keys farther back than any key in
                                                               training (distances 0 .. L - 1)

Each is the mean over queries and sequences, per layer and head; the entropy also per bin of L / 2 query
positions. Ids a task sets (positions, Abacus) pass through; distances are in tokens.
"""

import math

import torch

from attention import visible_keys
from model import GPT
from positional import Positions
from runtime import Precision

KEYS = ("entropy", "entropy_norm", "distance", "first", "beyond_L")


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * p.clamp_min(1e-30).log(), torch.zeros_like(p))


def row_stats(w: torch.Tensor, L: int, seen: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The per-query quantities (module docstring) of weights w (B, nh, T, T), each (B, nh, T) float32;
    `seen` the keys each query sees ((T, T) or (B, 1, T, T) bool, attention.visible_keys), None: causal."""
    w = w.float()
    T = w.size(-1)
    i = torch.arange(T, device=w.device)
    dist = (i[:, None] - i[None, :]).clamp_min(0).float()  # (T, T)
    held = w.sum(-1)
    rest = (1 - held).clamp_min(0)
    entropy = -_xlogx(w).sum(-1) - _xlogx(rest)
    n = i + 1.0 if seen is None else seen.sum(-1, dtype=torch.float32)  # (T,) or (B, 1, T)
    log_n = n.log()
    return {
        "entropy": entropy,
        "entropy_norm": entropy / torch.where(log_n > 0, log_n, torch.nan),
        "distance": (w * dist).sum(-1) / held.clamp_min(1e-30),
        "first": w[..., 0],
        "beyond_L": (w * (dist >= L)).sum(-1),
    }


class _Accumulator:
    """Sums of each quantity per layer and head (and of the entropy per query bin) over sequences."""

    def __init__(self, model: GPT, L: int):
        self.model, self.L, self.bin = model, L, max(1, L // 2)
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.pos = None  # the Positions of the batch in the model, set per batch

    def __call__(self, layer: int, w: torch.Tensor) -> None:
        config = self.model.config
        seen = visible_keys(self.pos, config.windowed(layer), config.id_window, w.device)
        stats = row_stats(w, self.L, seen)
        T = w.size(-1)
        bins = torch.arange(T, device=w.device) // self.bin
        stats["entropy_by_pos"] = stats["entropy"]
        for key, x in stats.items():  # x (B, nh, T): sums over B (and queries) of the finite values
            ok = torch.isfinite(x)
            x = torch.where(ok, x, 0.0)
            if key == "entropy_by_pos":
                n_bins = int(bins.max()) + 1
                total = torch.zeros(*x.shape[:2], n_bins, device=x.device).index_add_(2, bins, x).sum(0)
                count = (
                    torch.zeros(*x.shape[:2], n_bins, device=x.device).index_add_(2, bins, ok.float()).sum(0)
                )
            else:
                total, count = x.sum((0, 2)), ok.float().sum((0, 2))  # (nh,)
            self._add(key, layer, total.double().cpu(), count.double().cpu())

    def _add(self, key, layer, total, count):
        n_layer = self.model.config.n_layer
        if key not in self.sums:
            self.sums[key] = torch.zeros(n_layer, *total.shape, dtype=torch.float64)
            self.counts[key] = torch.zeros_like(self.sums[key])
        self.sums[key][layer] += total
        self.counts[key][layer] += count

    def result(self) -> dict[str, list]:
        return {k: (self.sums[k] / self.counts[k]).tolist() for k in self.sums}


@torch.no_grad()
def attention_stats(model: GPT, batches: list[tuple], L: int, precision: Precision) -> dict[str, list]:
    """The diagnostics (module docstring) of `model` over `batches` of (idx (B, T), positions, abacus), the
    ids None or (B, T), all of one T: {quantity: [layer][head] mean}, and "entropy_by_pos": [layer][head]
    [bin] the entropy's mean over query positions bin * L/2 .. (bin + 1) * L/2 - 1 (NaN where undefined)."""
    model.eval()
    acc = _Accumulator(model, L)
    for idx, positions, abacus in batches:
        T = idx.size(1)
        acc.pos = Positions(T, T) if positions is None else Positions(T, T, positions, positions)
        with precision.autocast():
            model(idx, None, positions, abacus, observe=acc)
    return acc.result()


def summarise(stats: dict[str, list]) -> dict[str, float]:
    """The mean of each quantity over layers and heads (NaN entries left out)."""
    out = {}
    for key in KEYS:
        x = torch.tensor(stats[key], dtype=torch.float64)
        out[key] = float(x[torch.isfinite(x)].mean()) if torch.isfinite(x).any() else math.nan
    return out
