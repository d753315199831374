"""scripts/bench_batched.py: the stacked model computes each member's loss and gradients; one tiny timing;
the CLI's checks."""

import pytest
import torch

from scripts import bench_batched
from scripts.bench_batched import BenchBatchedConfig, Stacked

TINY = dict(members=3, batch_size=2, block_size=8, n_layer=2, n_head=2, n_embd=16)
# Stacked's (L, E, in, out) weights -> each member's nn.Linear (out, in)
LINEARS = {"c_attn": "attn.c_attn", "attn_proj": "attn.c_proj", "c_fc": "mlp.c_fc", "mlp_proj": "mlp.c_proj"}


def test_stacked_model_equals_its_members():
    torch.manual_seed(0)
    models = bench_batched._models(BenchBatchedConfig(**TINY))
    stacked = Stacked(models)
    idx = torch.randint(0, bench_batched.VOCAB, (3, 2, 8))
    targets = torch.randint(0, bench_batched.VOCAB, idx.shape)
    total = sum(m(x, y)[1] for m, x, y in zip(models, idx, targets, strict=True))
    loss = stacked(idx, targets)
    torch.testing.assert_close(loss, total)
    (total + loss).backward()
    grads = {name: p.grad for name, p in stacked.named_parameters()}
    for e, m in enumerate(models):
        grad = {
            n.removeprefix("transformer.").removesuffix(".weight"): p.grad for n, p in m.named_parameters()
        }
        torch.testing.assert_close(grads["wte"][e], grad["wte"])
        torch.testing.assert_close(grads["wpe"][e], grad["wpe"])
        torch.testing.assert_close(grads["ln_f"][e, 0], grad["ln_f"])
        for i in range(len(m.transformer.h)):
            for mine, theirs in LINEARS.items():
                torch.testing.assert_close(grads[mine][i, e].mT, grad[f"h.{i}.{theirs}"])
            for norm in ("ln_1", "ln_2"):
                torch.testing.assert_close(grads[norm][i, e, 0], grad[f"h.{i}.{norm}"])


def test_bench_times_both_sides():
    r = bench_batched.bench(BenchBatchedConfig(**TINY, rounds=2))
    assert r["sequential_ms"] > 0 and r["batched_ms"] > 0 and 0 < r["matmul_share"] < 1


@pytest.mark.parametrize(("argv", "match"), [(["--members=0"], "members"), (["--n_head=3"], "n_embd")])
def test_cli_names_bad_values(argv, match):
    with pytest.raises(ValueError, match=match):
        bench_batched.main(argv)
