"""sample.py: rebuilds the model from the checkpoint alone and decodes with the KV cache."""

import pydoc_data.topics
import runpy
import sys
from pathlib import Path

import pytest
import torch

import sample as S
import train as T
from data.tokenizers import get_tokenizer
from model import ModelConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    corpus = tmp / "tiny.txt"
    corpus.write_text("".join(pydoc_data.topics.topics.values())[:20_000], encoding="utf-8")
    settings = dict(
        block_size=16, n_layer=2, n_head=2, n_embd=32, pos_enc="rope", device="cpu", batch_size=4,
        max_iters=3, eval_iters=1, warmup_iters=1, sample_tokens=0, dataset=corpus, data_dir=tmp / "data",
        out_dir=tmp / "run",
    )  # fmt: skip
    argv = [f"--{k}={v}" for k, v in settings.items()]
    T.train(*T.parse_config(argv, ModelConfig, T.TrainConfig), progress=False)
    return tmp / "run"


def test_greedy_sample_equals_the_checkpoint_model(run_dir):
    text = S.sample(run_dir, prompt="def ", max_new_tokens=12, temperature=0)[0]  # 16 = block_size
    model, _, _, meta = T.load_run(run_dir)
    tok = get_tokenizer(meta)
    ids = torch.tensor([tok.encode("def ")])
    for _ in range(12):  # full recomputation, no cache
        logits, _ = model(ids)
        ids = torch.cat((ids, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert text == tok.decode(ids[0].tolist()) and text.startswith("def ")


def test_long_samples_never_go_past_block_size(run_dir):
    model, model_cfg, _, meta = T.load_run(run_dir)
    seen = []
    model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(
            args[0].size(1) + (kwargs["cache"].pos if kwargs.get("cache") else 0)
        ),
        with_kwargs=True,
    )
    tok = get_tokenizer(meta)
    prompt = "x" * 20  # longer than block_size
    texts = S.generate_text(model, tok, prompt, max_new_tokens=50, temperature=0, num_samples=2)
    assert [len(t) for t in texts] == [70, 70] and texts[0] == texts[1] and texts[0].startswith(prompt)
    assert max(seen) == model_cfg.block_size


def test_sampling_is_seeded(run_dir):
    a = S.sample(run_dir, max_new_tokens=30, num_samples=2, seed=3)
    assert a == S.sample(run_dir, max_new_tokens=30, num_samples=2, seed=3) and len(a) == 2
    assert all(len(t) == 31 for t in a)  # char tokenizer: the "\n" prompt + 30 characters


def test_bad_input(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"\['€'\] are not in this"):
        S.sample(run_dir, prompt="price: 5€")
    with pytest.raises(ValueError, match="empty"):
        S.sample(run_dir, prompt="")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        S.sample(tmp_path)


def run_cli(monkeypatch, *args):
    """sample.py as a script, `if __name__ == "__main__"` block included, without a new interpreter."""
    monkeypatch.setattr(sys, "argv", ["sample.py", *map(str, args)])
    runpy.run_path(str(REPO / "sample.py"), run_name="__main__")


def test_cli(run_dir, monkeypatch, capsys):
    run_cli(monkeypatch, run_dir, "--prompt=x", "--max_new_tokens=5", "--temperature=0", "--num_samples=2")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == lines[2] and len(lines[0]) == 6 and lines[0].startswith("x")
    with pytest.raises(SystemExit, match=r"^error: characters \['€'\]"):
        run_cli(monkeypatch, run_dir, "--prompt=€")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable nanorope checkpoint"):
        T.load_run(tmp_path)
