"""export.py end to end: a trained run written as a Hugging Face directory that transformers' Auto classes
load with our logits; what cannot be exported, or an occupied folder, is a one-line error."""

import pytest
import torch
from helpers import tiny_corpus

import export
import train as T
from configurator import parse_config
from model import ModelConfig
from rundir import load_run
from training import TrainConfig

transformers = pytest.importorskip("transformers")
RUN = [
    "--n_layer=2",
    "--n_head=2",
    "--n_embd=32",
    "--block_size=16",
    "--batch_size=4",
    "--max_iters=3",
    "--eval_interval=3",
    "--eval_iters=1",
    "--warmup_iters=1",
    "--lr_decay_iters=3",
    "--sample_tokens=0",
    "--device=cpu",
    "--bias=false",
]


def trained(tmp_path, pos_enc):
    paths = [
        f"--dataset={tiny_corpus(tmp_path)}",
        f"--data_dir={tmp_path / 'data'}",
        f"--out_dir={tmp_path / pos_enc}",
    ]
    argv = [*RUN, f"--pos_enc={pos_enc}", *paths]
    T.train(*parse_config(argv, ModelConfig, TrainConfig), progress=False)
    return tmp_path / pos_enc


@pytest.mark.parametrize("pos_enc", ["learned", "rope", "alibi"])
def test_exported_run_loads_with_auto_classes_and_our_logits(tmp_path, pos_enc, capsys):
    run = trained(tmp_path, pos_enc)
    dest = export.main([f"--out_dir={run}"])
    assert dest == run / "hf" and "AutoModelForCausalLM.from_pretrained" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(dest).eval()
    tok = transformers.AutoTokenizer.from_pretrained(dest)
    model, _, _, meta = load_run(run)
    text = "def f(x):\n  x"  # within block_size: learned has no rows past it
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == [meta["chars"].index(c) for c in text]
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids, targets=ids)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(
        ValueError,
        match="is not empty; choose another --hf_dir or replace the export there with --overwrite=true",
    ):
        export.main([f"--out_dir={run}"])
    export.main([f"--out_dir={run}", "--overwrite=true"])


def test_a_scheme_without_a_transformers_model_is_refused_before_writing(tmp_path):
    run = trained(tmp_path, "kerple")
    with pytest.raises(ValueError, match="pos_enc='kerple' with block='gpt2' has no transformers model"):
        export.main([f"--out_dir={run}", f"--hf_dir={tmp_path / 'hf'}"])
    assert not (tmp_path / "hf").exists()


def test_an_export_never_lands_in_a_run_or_mixes_with_old_files(tmp_path):
    run = trained(tmp_path, "rope")
    config = (run / "config.json").read_bytes()
    for dest in (run, tmp_path):  # the run itself; a folder of other files (a run dir, data, the corpus)
        with pytest.raises(ValueError, match=r"holds a nanorope run|holds files that are not an export"):
            export.main([f"--out_dir={run}", f"--hf_dir={dest}", "--overwrite=true"])
    assert (run / "config.json").read_bytes() == config
    export.main([f"--out_dir={run}"])
    (run / "hf" / "stale.bin").write_text("from an older export")
    export.main([f"--out_dir={run}", "--overwrite=true"])
    assert "stale.bin" not in {p.name for p in (run / "hf").iterdir()}  # replaced, not merged
    assert not [p for p in run.iterdir() if p.name.endswith((".tmp", ".old"))]
