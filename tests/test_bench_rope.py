"""scripts/bench_rope.py: one tiny size end to end (RoPE's share of an attention block), the CLI's checks."""

import time

import pytest

from scripts import bench_rope


def test_bench_times_the_three_steps():
    ms = bench_rope.bench(2, 8, 2, 8, iters=2, rounds=1, device="cpu", clock=time.perf_counter)
    assert set(ms) == {"attn+rope", "attn", "rope"} and all(v > 0 for v in ms.values())


@pytest.mark.parametrize(("argv", "match"), [(["--clock=cpu"], "clock"), (["--rounds=0"], "rounds")])
def test_cli_names_bad_values(argv, match):
    with pytest.raises(ValueError, match=match):
        bench_rope.main(argv)
