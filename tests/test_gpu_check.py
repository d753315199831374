"""scripts/gpu_check.py: refuses clearly without CUDA; the report renders every section from results of
the shape the check writes (the check itself runs on a GPU: docs/BENCH.md)."""

import pytest
import torch

from scripts import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_check_says_so():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        gpu_check.main(["--train_iters=1"])


def test_the_report_has_every_section():
    results = {
        "device": "NVIDIA H100",
        "gpus": 1,
        "torch": "2.13.0",
        "tests": {"rc": 0, "wall_s": 12.0, "tail": "30 passed"},
        "kernels": [
            {"case": "alibi", "logit_diff": 1e-3, "grad_rel_diff": 2e-3, "sdpa_ms": 4.0, "flex_ms": 3.0}
        ],
        "preset": {
            "rc": 0,
            "wall_s": 150.0,
            "summary": {"iters": 5000, "final_val_loss": 1.47, "tokens_per_sec": 5e5, "mfu": 0.3},
        },
        "ddp": {"skipped": "1 GPU: DDP needs 2 or more"},
        "batched": {"sequential_ms": 40.0, "batched_ms": 10.0, "ratio": 0.25, "matmul_share": None},
    }
    md = gpu_check.markdown(results)
    assert "| alibi | 1.00e-03 | 2.00e-03 | 4.0 | 3.0 | 0.75x |" in md
    assert "final val loss 1.4700 (nanoGPT: 1.4697), wall 2.5 min, 500,000 tokens/s, MFU 30.0%" in md
    assert "DDP needs 2 or more" in md
    assert "one after another: 40.0 ms; one stacked step: 10.0 ms: 0.25x" in md
