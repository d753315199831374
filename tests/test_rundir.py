"""rundir.py: the checkpoint schema (written, read with weights_only=True, rebuilt into a model), the
resume checks, metrics.jsonl appends and truncation on resume, summary.json and its rebuild."""

import json

import pytest
import torch
from helpers import model_for

import rundir
from runtime import Precision
from training import TrainConfig, configure_optimizers

META = {"source": "tiny.txt", "source_sha256": "ab" * 32, "tokenizer": "char", "vocab_size": 65}


def saved_run(tmp_path, iter_num=4, pos_enc="rope", **options):
    model = model_for(pos_enc, **options)
    optimizer = configure_optimizers(model, 0.1, 1e-3, (0.9, 0.95), "cpu")
    scaler = Precision.of("float32", "cpu").grad_scaler()
    cfg = TrainConfig(out_dir=str(tmp_path), max_iters=10)
    rng = [{"torch": torch.get_rng_state()}]
    rundir.save_checkpoint(
        tmp_path,
        model,
        optimizer,
        scaler,
        cfg,
        META,
        iter_num=iter_num,
        best_val_loss=1.5,
        elapsed_s=2.0,
        rng=rng,
    )
    return model, cfg


# every scheme knob and model option, as a checkpoint records it (config.json holds the same dict)
OPTIONS = [
    ("rope", {}),
    ("xpos", dict(xpos_scale_base=64.0, rope_fraction=0.5, qk_norm=True)),
    ("rope", dict(rope_nope_interval=2, random_positions=40)),
    ("rope", dict(rope_nope_layers="0")),
    ("learned", dict(random_positions=40)),
    ("t5", dict(t5_num_buckets=8, t5_max_distance=20)),
    ("fire", dict(fire_threshold=6.0)),
    ("cope", dict(cope_max_pos=7)),
    ("kerple", dict(qk_norm=True)),
    ("rope", dict(block="llama", bias=False, n_kv_head=2, tie_embeddings=False, mlp_hidden=48)),
    (
        "rope",
        dict(
            rope_scaling={
                "rope_type": "longrope",
                "factor": 2.0,
                "short_factor": [1.0] * 4,
                "long_factor": [2.0] * 4,
                "original_max_position_embeddings": 16,
            }
        ),
    ),
]


@pytest.mark.parametrize(("pos_enc", "options"), OPTIONS)
def test_checkpoint_round_trip_rebuilds_the_model(tmp_path, pos_enc, options):
    model, cfg = saved_run(tmp_path, pos_enc=pos_enc, **options)
    ckpt, model_cfg, train_cfg = rundir.read_checkpoint(tmp_path / rundir.CKPT)
    assert (model_cfg, train_cfg) == (model.config, cfg)
    assert (ckpt["iter_num"], ckpt["best_val_loss"], ckpt["meta"]) == (4, 1.5, META)
    rebuilt, _, _, meta = rundir.load_run(tmp_path)
    assert meta == META and not rebuilt.training
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rebuilt(idx, idx)[0], model(idx, idx)[0], rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == [rundir.CKPT]  # no temporary file left


def test_unreadable_or_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*train one first"):
        rundir.load_run(tmp_path)
    (tmp_path / rundir.CKPT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable nanorope checkpoint"):
        rundir.load_run(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / rundir.CKPT)  # another program's file
    with pytest.raises(
        ValueError, match=r"not a readable nanorope checkpoint \(ValueError: its 'model' is NoneType"
    ):
        rundir.read_checkpoint(tmp_path / rundir.CKPT)


def test_resume_checks_name_what_differs(tmp_path):
    model, cfg = saved_run(tmp_path, iter_num=4)
    assert rundir.resume_checkpoint(tmp_path, model.config, cfg, META)["iter_num"] == 4
    other = model_for("rope", n_layer=3).config
    with pytest.raises(ValueError, match=r"'n_layer': \(3, 2\)"):
        rundir.resume_checkpoint(tmp_path, other, cfg, META)
    with pytest.raises(ValueError, match=r"was trained on tiny\.txt"):
        rundir.resume_checkpoint(tmp_path, model.config, cfg, META | {"source_sha256": "cd" * 32})
    with pytest.raises(ValueError, match="iter 4 > max_iters=3"):
        rundir.resume_checkpoint(tmp_path, model.config, TrainConfig(max_iters=3), META)
    with pytest.raises(ValueError, match="no checkpoint"):
        rundir.resume_checkpoint(tmp_path / "none", model.config, cfg, META)


def test_metrics_log_appends_and_a_resume_drops_replayed_rows(tmp_path):
    log = rundir.MetricsLog(tmp_path)
    for it in range(5):
        log.write({"iter": it, "train_loss": 1.0 / (it + 1)})
    log.close()
    assert [r["iter"] for r in rundir.read_metrics(tmp_path)] == [0, 1, 2, 3, 4]
    log = rundir.MetricsLog(tmp_path, keep_before=3)  # resuming at iteration 3
    log.write({"iter": 3, "train_loss": 0.0})
    log.close()
    assert [r["iter"] for r in rundir.read_metrics(tmp_path)] == [0, 1, 2, 3]
    rundir.MetricsLog(tmp_path).close()  # a fresh run starts an empty log
    assert rundir.read_metrics(tmp_path) == []


def test_summary_is_read_back_or_rebuilt_from_metrics(tmp_path):
    rows = [
        {"iter": 0, "val_loss": 3.0, "train_loss": 3.1, "elapsed_s": 0.5},
        {"iter": 0, "train_loss": 3.2, "tokens_per_sec": 100.0, "ms_per_iter": 10.0, "elapsed_s": 1},
        {"iter": 1, "train_loss": 3.0, "tokens_per_sec": 300.0, "ms_per_iter": 30.0, "elapsed_s": 2},
        {"iter": 2, "val_loss": 2.5, "train_loss": 2.6, "elapsed_s": 3.0},
    ]
    (tmp_path / rundir.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    rebuilt = rundir.read_summary(tmp_path)
    assert rebuilt == {
        "out_dir": str(tmp_path),
        "iters": 2,
        "final_val_loss": 2.5,
        "final_train_loss": 2.6,
        "best_val_loss": 2.5,
        "elapsed_s": 3.0,
        "ms_per_iter": 20.0,
        "tokens_per_sec": 200.0,
    }
    rundir.write_summary(tmp_path, rebuilt | {"interrupted": False})
    assert rundir.read_summary(tmp_path)["interrupted"] is False


def test_a_new_run_never_replaces_an_old_one_untold(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path))
    assert rundir.open_run_dir(cfg) == tmp_path  # empty: fine
    (tmp_path / rundir.METRICS).write_text("")
    assert rundir.open_run_dir(cfg) == tmp_path  # a start that died before its first checkpoint: no run
    (tmp_path / rundir.CKPT).write_bytes(b"weights")
    with pytest.raises(ValueError, match=r"holds a run \(ckpt.pt\); continue it with --resume=true"):
        rundir.open_run_dir(cfg)
    (tmp_path / rundir.SUMMARY).write_text("{}")
    (tmp_path / rundir.RECORD).write_text("{}")
    (tmp_path / ".ckpt.pt.abc.tmp").write_bytes(b"half")  # a kill -9 mid-write
    rundir.open_run_dir(TrainConfig(out_dir=str(tmp_path), overwrite=True))
    # stale temp, summary and grid record gone; the checkpoint stays until the new run saves its own
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.CKPT, rundir.METRICS]
    with pytest.raises(ValueError, match="pick one"):
        TrainConfig(resume=True, overwrite=True)


def test_a_torn_line_is_dropped_only_at_the_end(tmp_path, capsys):
    (tmp_path / rundir.METRICS).write_text('{"iter": 0}\n{"iter": 1}\n{"iter": 2, "tr')
    assert rundir.read_metrics(tmp_path) == [{"iter": 0}, {"iter": 1}]
    assert f"{rundir.METRICS}:3: dropped a torn last line" in capsys.readouterr().err
    (tmp_path / rundir.METRICS).write_text('{"iter": 0}\n{"it\n{"iter": 2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2 is not a JSON row"):
        rundir.read_metrics(tmp_path)


def test_inconsistent_checkpoints_are_refused_before_any_model_is_built(tmp_path, monkeypatch):
    saved_run(tmp_path)
    ckpt = torch.load(tmp_path / rundir.CKPT, weights_only=True)
    crafted = dict(ckpt, model_config=ckpt["model_config"] | {"n_embd": 2**16, "n_head": 2**10})
    torch.save(crafted, tmp_path / "crafted.pt")
    monkeypatch.setattr(rundir, "GPT", None)  # building a model would fail the test with a TypeError
    with pytest.raises(ValueError, match=r"implies ~[\d,]+ weights but the file holds"):
        rundir.read_checkpoint(tmp_path / "crafted.pt")
    torch.save(dict(ckpt, meta=META | {"chars": list("ab")}), tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="tokenizer of vocab_size"):
        rundir.read_checkpoint(tmp_path / "meta.pt")
    monkeypatch.undo()
    torch.save(dict(ckpt, model={k: v[:1] for k, v in ckpt["model"].items()}), tmp_path / rundir.CKPT)
    with pytest.raises(ValueError, match="weights do not fit its model_config"):
        rundir.load_run(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(meta=[]), "its 'meta' is list"),
        (dict(model=[1, 2]), "its 'model' is list"),
        (dict(iter_num="5"), "its 'iter_num' is str"),
        (dict(rng=[{"torch": 1}]), "its 'rng'"),
        (dict(meta={"vocab_size": 65}), "its .meta. has no tokenizer and vocab_size"),
        (dict(model_config={"n_layr": 2}), "unknown config key 'n_layr' in its model_config"),
    ],
)
def test_a_foreign_checkpoint_is_refused_field_by_field(tmp_path, change, match):
    """weights_only loads anything made of tensors, lists and dicts: every field is checked before use."""
    saved_run(tmp_path)
    ckpt = torch.load(tmp_path / rundir.CKPT, weights_only=True)
    torch.save(ckpt | change, tmp_path / rundir.CKPT)
    with pytest.raises(ValueError, match=rf"not a readable nanorope checkpoint \(ValueError: {match}"):
        rundir.load_run(tmp_path)


def test_a_finished_run_is_not_resumed_but_said_to_be_finished(tmp_path):
    model, cfg = saved_run(tmp_path, iter_num=10)
    with pytest.raises(
        ValueError, match=r"is finished \(iter 10 = max_iters\); .*python sample.py --out_dir="
    ):
        rundir.resume_checkpoint(tmp_path, model.config, cfg, META)
