"""scripts/attention_maps.py: the maps are the model's own weights (causal, rows summing to 1 for softmax
schemes), one PNG per length for a text run past L, one for a task problem; learned refuses lengths past L."""

import pytest
import torch
from helpers import tiny_corpus

import train as T
from configurator import parse_config
from model import ModelConfig
from rundir import load_run
from scripts import attention_maps as A
from training import TrainConfig

pytest.importorskip("matplotlib")


def trained(tmp, **kw):
    settings = dict(block_size=16, n_layer=2, n_head=2, n_embd=32, device="cpu", batch_size=4, max_iters=2)
    settings |= dict(
        eval_iters=1, warmup_iters=1, sample_tokens=0, data_dir=tmp / "data", out_dir=tmp / "run"
    )
    settings |= kw
    argv = [f"--{k}={v}" for k, v in settings.items()]
    T.train(*parse_config(argv, ModelConfig, TrainConfig), progress=False)
    return tmp / "run"


def test_maps_of_a_text_run_inside_and_past_L(tmp_path):
    run = trained(tmp_path, dataset=tiny_corpus(tmp_path), pos_enc="alibi")
    paths = A.main([f"--out_dir={run}", "--prompt=def ", "--lengths=1,2.5", "--device=cpu"])
    assert [p.name for p in paths] == ["attention_T16.png", "attention_T40.png"] and all(
        p.stat().st_size for p in paths
    )
    model = load_run(run)[0]
    w = A.maps(model, torch.randint(0, model.config.vocab_size, (1, 20)))
    assert len(w) == 2 and w[0].shape == (2, 20, 20)
    assert (w[1].triu(1) == 0).all() and torch.allclose(w[1].sum(-1), torch.ones(2, 20))
    learned = trained(tmp_path / "b", dataset=tiny_corpus(tmp_path), pos_enc="learned")
    with pytest.raises(ValueError, match="no positions past 16: use --lengths=1"):
        A.main([f"--out_dir={learned}", "--lengths=2", "--device=cpu"])


def test_a_task_problem_is_mapped_whole_with_its_ids(tmp_path):
    run = trained(tmp_path, dataset="task:addition", task_n_train=2, task_positions="coupled", pos_enc="rope")
    (path,) = A.main([f"--out_dir={run}", "--prompt=12+34=", f"--to={tmp_path / 'maps'}", "--device=cpu"])
    assert path.name == "attention_T10.png" and path.parent == tmp_path / "maps"
