"""sample.py: rebuilds the model from the checkpoint alone and decodes with the KV cache."""

import runpy
import sys

import pytest
import torch
from helpers import REPO, TINY_RUN, tiny_corpus

import sample as S
import train as T
from configurator import parse_config
from data.tokenizers import get_tokenizer
from model import ModelConfig
from rundir import load_run
from training import TrainConfig


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    corpus = tiny_corpus(tmp)
    settings = TINY_RUN | dict(max_iters=3, lr_decay_iters=3, eval_interval=3, eval_iters=1)
    settings |= dict(dataset=corpus, data_dir=tmp / "data", out_dir=tmp / "run")
    argv = [f"--{k}={v}" for k, v in settings.items()]
    T.train(*parse_config(argv, ModelConfig, TrainConfig), progress=False)
    return tmp / "run"


def sample(run_dir, **kw) -> list[str]:
    return S.sample(S.SampleConfig(out_dir=str(run_dir), **{"device": "cpu"} | kw))


def test_greedy_sample_equals_the_checkpoint_model(run_dir):
    text = sample(run_dir, prompt="def ", max_new_tokens=12, temperature=0)[0]  # 16 = block_size
    model, _, _, meta = load_run(run_dir)
    tok = get_tokenizer(meta)
    ids = torch.tensor([tok.encode("def ")])
    for _ in range(12):  # full recomputation, no cache
        logits, _ = model(ids)
        ids = torch.cat((ids, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert text == tok.decode(ids[0].tolist()) and text.startswith("def ")


def test_sampling_is_seeded(run_dir):
    a = sample(run_dir, max_new_tokens=30, num_samples=2, seed=3)
    assert a == sample(run_dir, max_new_tokens=30, num_samples=2, seed=3) and len(a) == 2
    assert all(len(t) == 31 for t in a)  # char tokenizer: the "\n" prompt + 30 characters


def test_bad_input(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"\['€'\] are not in this"):
        sample(run_dir, prompt="price: 5€")
    with pytest.raises(ValueError, match="empty"):
        sample(run_dir, prompt="")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        sample(tmp_path)


def run_cli(monkeypatch, *args):
    """sample.py as a script, `if __name__ == "__main__"` block included, without a new interpreter; a
    successful run exits 0."""
    monkeypatch.setattr(sys, "argv", ["sample.py", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "sample.py"), run_name="__main__")
    if info.value.code != 0:
        raise info.value


def test_cli(run_dir, monkeypatch, capsys):
    run_cli(
        monkeypatch,
        f"--out_dir={run_dir}",
        "--prompt=x",
        "--max_new_tokens=5",
        "--temperature=0",
        "--num_samples=2",
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == lines[2] and len(lines[0]) == 6 and lines[0].startswith("x")
    with pytest.raises(SystemExit, match=r"^error: characters \['€'\]"):
        run_cli(monkeypatch, f"--out_dir={run_dir}", "--prompt=€")
    with pytest.raises(SystemExit, match=r"^error: unexpected argument .*: use --key=value"):
        run_cli(monkeypatch, run_dir)  # the old positional form
    with pytest.raises(SystemExit, match=r"^error: num_samples must be an integer in \[1, 256\], got 0"):
        run_cli(monkeypatch, f"--out_dir={run_dir}", "--num_samples=0")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable nanorope checkpoint"):
        sample(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_a_missing_device_is_not_called_a_bad_checkpoint(run_dir):
    with pytest.raises(ValueError, match="CUDA is not available; use --device=cpu") as info:
        sample(run_dir, device="cuda")
    assert "checkpoint" not in str(info.value)
    for device in ("xpu", "meta"):
        with pytest.raises(ValueError, match="device must be 'auto' or a torch device"):
            S.SampleConfig(out_dir=str(run_dir), device=device)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(num_samples=10**6), r"num_samples must be an integer in \[1, 256\]"),
        (dict(max_new_tokens=10**9), r"max_new_tokens must be an integer in \[0, 100000\]"),
        (dict(top_k=-1), "top_k"),
    ],
)
def test_sample_config_bounds(kw, match):
    with pytest.raises(ValueError, match=match):
        S.SampleConfig(**kw)


def test_a_task_run_samples_a_problem_by_default_and_says_what_a_prompt_looks_like(tmp_path):
    argv = [
        "--dataset=task:reverse",
        "--task_n_train=3",
        "--n_layer=1",
        "--n_embd=16",
        "--max_iters=1",
        "--eval_iters=1",
        "--sample_tokens=0",
        "--device=cpu",
        f"--out_dir={tmp_path / 'run'}",
    ]
    T.train(*parse_config(argv, ModelConfig, TrainConfig), progress=False)
    text = sample(tmp_path / "run", max_new_tokens=4, temperature=0)[0]
    assert text.index("=") == 3  # a problem of size 3, then the model's answer
    prompt_like = r"not a task:reverse problem; a prompt is a problem such as --prompt='[a-j]{3}='"
    with pytest.raises(ValueError, match=prompt_like):
        sample(tmp_path / "run", prompt="\n")
