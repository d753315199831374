"""bench.py: a 2-step smoke run at a tiny shape, the FLOPs formula and argument errors (no timings
asserted)."""

import math
from pathlib import Path

import pytest
import torch

import bench
from positional import POS_ENCODINGS

TINY = bench.Shape(batch_size=2, block_size=16, n_layer=1, n_head=2, n_embd=32, vocab_size=65)


def test_smoke_two_steps_with_peers():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    results = bench.run(TINY, "cpu", "float32", steps=2, warmup=1, memory=False)
    assert [r.name for r in results] == [f"ours:{p}" for p in POS_ENCODINGS] + ["hf:gpt2", "hf:llama"]
    for r in results:
        assert len(r.step_times) == 2 and r.tokens_per_s > 0 and r.peak_mib is None and r.mfu is None
    table = bench.format_table(results)
    assert table.count("\n") == len(results) + 1 and "1.00x" in table
    assert "hf:llama" in bench.format_checks(results)


def test_main_cli_without_peers(capsys):
    torch.manual_seed(0)
    bench.main(["--device=cpu", "--shape=baby", "--steps=2", "--warmup=0", "--peers=false", "--memory=false"])
    out = capsys.readouterr().out
    assert "torch " + torch.__version__ in out and "| ours:rope |" in out and "hf:" not in out
    assert "| ours:rope:attn_sink=true |" in out and "x vs ours:rope |" in out  # options against rope
    assert "| ours:learned@math |" in out and "x vs ours:learned |" in out  # the math kernel's floor


def test_math_row_runs_sdpa_math_kernel():
    trainer = bench.Trainer(bench.MATH, TINY, "cpu", "float32", compile=False)
    batch = bench.make_batch(TINY, "cpu")
    with torch.profiler.profile() as prof:
        trainer.step(*batch)
    names = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_attention_math" in names
    assert not any("flash" in n for n in names)


def test_flops_per_token_and_peer_sizes():
    pytest.importorskip("transformers")
    ours = bench.build("ours:rope", TINY)
    assert bench.flops_per_token(ours, TINY) == ours.flops_per_token(TINY.block_size)
    llama = bench.build("hf:llama", TINY)
    L, C, T, V, inter = (
        TINY.n_layer,
        TINY.n_embd,
        TINY.block_size,
        TINY.vocab_size,
        bench.llama_intermediate_size(32),
    )
    weights = (
        L * (4 * C * C + 3 * C * inter + 2 * C) + C + V * C
    )  # q k v o, SwiGLU, 2 RMSNorms; final norm; head
    assert bench.flops_per_token(llama, TINY) == 6 * weights + 12 * L * C * T
    assert math.isclose(3 * C * inter, 8 * C * C, rel_tol=0.05)  # SwiGLU sized like our 4C GELU MLP
    assert llama.lm_head.weight is llama.model.embed_tokens.weight


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS needs Linux /proc")
def test_cpu_peak_rss_is_measured_in_a_fresh_process():
    baby = bench.SHAPES["cpu"]["baby"]
    (mib,) = bench.cpu_peak_rss_fresh(["ours:learned"], baby, "float32", compile=False)
    # at least parameters, gradients and the two AdamW moments in float32
    assert mib > 4 * 4 * 0.8e6 / 2**20


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps=0"], "steps must be an integer in [1, 100000], got 0"),
        (["--warmup=-1"], "warmup must be an integer in [0, 100000], got -1"),
        (["--shape=huge"], "shape must be one of ('baby', 'small', 'all'), got 'huge'"),
        (["--config=baby"], "unknown config key 'config'"),
        (["--dtype=fp8"], "dtype must be one of"),
        (["--compile", "--warmup=0"], "compile=true needs warmup >= 1"),
        (["baby"], "unexpected argument 'baby'"),
    ],
)
def test_bad_arguments_are_named(argv, message):
    with pytest.raises(ValueError) as info:
        bench.main(argv)
    assert message in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        bench.main(["--device=cuda"])
