"""train.py end to end on a tiny model: run dir contents, exact resume after Ctrl-C, NaN handling,
the fixed-batch evaluation, bad input and DDP (2 CPU processes, gloo) against one process."""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, TINY_RUN, gpt2_or_skip, read_until, tiny_corpus

import rundir
import sample
import train as T
import training
from configurator import parse_config
from data import batches
from data.prepare import folder_of
from model import ModelConfig
from training import TrainConfig

TIMING_KEYS = ("elapsed_s", "ms_per_iter", "tokens_per_sec")


@pytest.fixture
def corpus(tmp_path):
    return tiny_corpus(tmp_path)


def argv(tmp_path, corpus, **overrides):
    paths = dict(dataset=corpus, data_dir=tmp_path / "data", out_dir=tmp_path / "run")
    return [f"--{k}={v}" for k, v in (TINY_RUN | paths | overrides).items()]


def run(tmp_path, corpus, **overrides):
    model_cfg, train_cfg = parse_config(argv(tmp_path, corpus, **overrides), ModelConfig, TrainConfig)
    return T.train(model_cfg, train_cfg, progress=False)


def rows(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def test_main_default_preset_writes_run_dir_and_prints_sample(tmp_path, corpus, capsys):
    torch.manual_seed(0)
    summary = T.main(argv(tmp_path, corpus, sample_tokens=20))  # the defaults + overrides
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".lock",
        "ckpt.pt",
        "config.json",
        "env.json",
        "metrics.jsonl",
        "summary.json",
    ]
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        config["model"]["vocab_size"]
        == json.loads((folder_of(str(corpus), "char", tmp_path / "data") / "meta.json").read_text())[
            "vocab_size"
        ]
    )
    assert config["train"]["max_iters"] == 6 and config["train"]["out_dir"] == str(run_dir)
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and "git_sha" in env
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_loss" in r]
    steps = [r for r in log if "val_loss" not in r]
    assert [r["iter"] for r in evals] == [0, 3, 6] and [r["iter"] for r in steps] == list(range(6))
    assert set(steps[0]) >= {"iter", "train_loss", "lr", "tokens_per_sec", "elapsed_s"}
    assert set(evals[0]) >= {"iter", "val_loss", "train_loss", "elapsed_s"}
    assert summary["iters"] == 6 and summary["final_val_loss"] == evals[-1]["val_loss"]
    assert (
        summary["best_val_loss"]
        == min(r["val_loss"] for r in evals)
        < math.log(config["model"]["vocab_size"])
    )
    assert summary["ms_per_iter"] > 0 and summary["num_params"] > 0 and not summary["interrupted"]
    assert summary["mfu"] is None  # CPU
    assert summary["sample"] and summary["sample"] in capsys.readouterr().out
    assert rundir.read_summary(run_dir) == json.loads(json.dumps(summary))


def test_checkpoint_rebuilds_the_model_and_eval_is_on_fixed_batches(tmp_path, corpus):
    summary = run(tmp_path, corpus)
    model, model_cfg, train_cfg, meta = rundir.load_run(tmp_path / "run")
    assert model_cfg.vocab_size == meta["vocab_size"] and train_cfg.max_iters == 6 and not model.training
    val = np.memmap(folder_of(str(corpus), "char", tmp_path / "data") / "val.bin", dtype=np.uint16, mode="r")
    with torch.no_grad():
        losses = [model(x, y)[1] for x, y in batches.fixed_eval_batches(val, 16, 4, 2, batches.EVAL_SEED)]
    torch.testing.assert_close(torch.stack(losses).mean().item(), summary["final_val_loss"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        rundir.load_run(tmp_path / "nothing")


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"pos_enc": "learned", "random_positions": 40},
        {"dataset": "task:reverse", "task_n_train": 4},
        {"drope_iter": 2},  # dropped before the stop: the checkpoint resumed is a NoPE model
        {"drope_iter": 6},  # dropped after the resume
    ],
)
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path, corpus, monkeypatch, model):
    """Dropout on, so the saved RNG state matters; batch order (randomized positions, a task's problems)
    come from (data_seed, iter); DroPE's switch of scheme on either side of the stop."""
    extra = dict(dropout=0.1, max_iters=8, lr_decay_iters=8, **model)
    full = run(tmp_path / "a", corpus, **extra)
    step = T.Run.step

    def interrupt_at_iter_3(self, it, stop):
        if it == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does; the handler lets iteration 3 finish
        return step(self, it, stop)

    monkeypatch.setattr(T.Run, "step", interrupt_at_iter_3)
    stopped = run(tmp_path / "b", corpus, **extra)
    assert stopped["interrupted"] and stopped["iters"] == 4
    assert torch.load(tmp_path / "b/run/ckpt.pt", weights_only=True)["iter_num"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.setattr(T.Run, "step", step)
    resumed = run(tmp_path / "b", corpus, **extra, resume=True)
    assert not resumed["interrupted"] and resumed["iters"] == 8
    assert rows(tmp_path / "b/run") == rows(tmp_path / "a/run")  # bit-identical losses, same rows
    assert resumed["final_val_loss"] == full["final_val_loss"]


def test_resume_checks(tmp_path, corpus):
    with pytest.raises(ValueError, match="no checkpoint"):
        run(tmp_path, corpus, resume=True)
    run(tmp_path, corpus, max_iters=0)
    with pytest.raises(ValueError, match="n_layer"):
        run(tmp_path, corpus, resume=True, n_layer=3)
    (tmp_path / "run/ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable nanorope checkpoint"):
        run(tmp_path, corpus, resume=True)


@pytest.mark.parametrize("eval_interval, message, kept", [(2, "eval loss", 2), (100, "train loss is nan", 0)])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, corpus, monkeypatch, eval_interval, message, kept
):
    get_lr = training.get_lr
    monkeypatch.setattr(
        training, "get_lr", lambda it, cfg: math.nan if it == 3 else get_lr(it, cfg)
    )  # poisons weights
    with pytest.raises(FloatingPointError, match=message):
        run(tmp_path, corpus, eval_interval=eval_interval)
    ckpt = torch.load(tmp_path / "run/ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == kept and all(torch.isfinite(p).all() for p in ckpt["model"].values())


def test_corpus_shorter_than_block_size_is_a_clear_error(tmp_path, corpus):
    with pytest.raises(ValueError, match=r"block_size=4096 needs at least 4097"):
        run(tmp_path, corpus, block_size=4096)


def test_ddp_two_cpu_processes_match_one_process(tmp_path, corpus):
    """torchrun, 2 processes, gloo: each rank takes one micro-batch of the global accumulation of 2, so the
    run sees the same batches as one process accumulating 2, and the losses agree."""
    extra = dict(gradient_accumulation_steps=2, max_iters=4, eval_interval=2)
    T.main(argv(tmp_path / "one", corpus, **extra))  # the same preset (config/default.py) as train.py below
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun leaves logs in TMPDIR
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*torchrun, "train.py", *argv(tmp_path / "two", corpus, **extra)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = rows(tmp_path / "one/run"), rows(tmp_path / "two/run")
    assert [r["iter"] for r in one] == [r["iter"] for r in two]
    for key in ("train_loss", "val_loss"):
        torch.testing.assert_close(
            [r.get(key, 0.0) for r in two], [r.get(key, 0.0) for r in one], rtol=1e-5, atol=1e-5
        )
    assert json.loads((tmp_path / "two/run/env.json").read_text())["world_size"] == 2


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        T.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("Train a GPT on one corpus")
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")}
    assert (lines["max_iters"], lines["pos_enc"], lines["block_size"], lines["dataset"]) == (
        "2000",
        "rope",
        "64",
        "pydocs",
    )


# --- nothing lost, every failure one line (issue 11) ----------------------------------------------


def files_of(run_dir):
    """The run's files (the lock file records who last held it)."""
    return {p.name: p.read_bytes() for p in Path(run_dir).iterdir() if p.name != ".lock"}


def test_a_finished_run_is_never_restarted_silently(tmp_path, corpus):
    run(tmp_path, corpus)
    before = files_of(tmp_path / "run")
    with pytest.raises(ValueError, match=r"already holds a run .*--resume=true.*--overwrite=true"):
        run(tmp_path, corpus)
    assert files_of(tmp_path / "run") == before  # nothing touched
    again = run(tmp_path, corpus, overwrite=True, max_iters=3, lr_decay_iters=3)  # told to: starts again
    assert again["iters"] == 3 and max(r["iter"] for r in rows(tmp_path / "run")) == 3


def test_resume_with_other_training_values_is_refused_with_the_diff(tmp_path, corpus):
    run(tmp_path, corpus, max_iters=3, lr_decay_iters=6)
    with pytest.raises(ValueError, match=r"'batch_size': \(8, 4\)"):
        run(tmp_path, corpus, resume=True, batch_size=8)
    assert run(tmp_path, corpus, resume=True, log_interval=5)["iters"] == 6  # reporting keys may change


def test_a_torn_metrics_line_from_a_full_disk_does_not_block_resume(tmp_path, corpus, monkeypatch, capsys):
    """ENOSPC mid-line at iteration 4: the run stops with the OSError; --resume drops the torn line and
    continues from the checkpoint to the same rows as an uninterrupted run."""
    full = run(tmp_path / "a", corpus)
    write = rundir.MetricsLog.write

    def disk_full_at_iter_4(self, row):
        if row["iter"] == 4:
            self.file.write(json.dumps(row)[:25])  # half a line reaches the disk
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device", str(self.file.name))
        write(self, row)

    monkeypatch.setattr(rundir.MetricsLog, "write", disk_full_at_iter_4)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path / "b", corpus)
    monkeypatch.setattr(rundir.MetricsLog, "write", write)
    resumed = run(tmp_path / "b", corpus, resume=True)
    assert "dropped a torn last line" in capsys.readouterr().err
    assert rows(tmp_path / "b/run") == rows(tmp_path / "a/run")
    assert resumed["final_val_loss"] == full["final_val_loss"]


def test_out_dir_that_is_a_file_and_bad_values_are_named(tmp_path, corpus):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run(tmp_path, corpus, out_dir=tmp_path / "file")
    for bad, match in [
        ("device=meta", "device"),
        ("device=xpu", "device"),
        ("learning_rate=inf", "finite"),
        ("weight_decay=inf", "finite"),
        ("seed=18446744073709551615", r"seed .*in \[0, "),
    ]:
        key, _, value = bad.partition("=")
        with pytest.raises(ValueError, match=match):
            run(tmp_path, corpus, **{key: value})


def test_big_seeds_are_taken_exactly():
    (cfg,) = parse_config(["--seed=9007199254740993"], TrainConfig)
    assert cfg.seed == 9007199254740993  # 2**53 + 1: through float it would lose the 1


def cli(*args, cwd=REPO, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "train.py", *map(str, args)],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_cli_errors_are_one_line_and_ctrl_c_exits_130(tmp_path, corpus):
    args = argv(tmp_path, corpus, max_iters=10_000, lr_decay_iters=10_000, eval_interval=10_000)
    proc = cli(*args)
    read_until(proc, lambda line: line.startswith("iter 0: val loss"))  # training has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; continue with --resume=true" in err
    again = cli(*args)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 1 and err.count("\n") == 1 and err.startswith("error: ") and "--resume" in err


def test_kill_9_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path, corpus):
    """A few kill -9s at random moments (checkpoints written every iteration), each followed by a resume:
    the checkpoint always loads, and the next start removes the temporary files the kills left."""
    rng = np.random.default_rng(0)
    args = argv(tmp_path, corpus, max_iters=10_000, lr_decay_iters=10_000, eval_interval=1, eval_iters=1)
    for attempt in range(3):
        proc = cli(*args, *(["--resume=true"] if attempt else []))
        read_until(proc, lambda line: line.startswith("iter") and "val loss" in line and rng.random() < 0.3)
        time.sleep(rng.random() * 0.05)
        proc.kill()
        proc.communicate(timeout=60)
        ckpt, _, _ = rundir.read_checkpoint(tmp_path / "run" / rundir.CKPT)
        assert ckpt["iter_num"] >= 0
    (tmp_path / "run" / ".ckpt.pt.k9x7q2.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    stale = list((tmp_path / "run").glob(".*.tmp"))
    T.main([*args, "--resume=true", f"--max_iters={ckpt['iter_num'] + 1}"])  # a normal start cleans up
    assert not list((tmp_path / "run").glob(".*.tmp")), stale


def test_tensorboard_events_hold_the_logged_scalars(tmp_path, corpus):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path, corpus, log="tensorboard", max_iters=20, lr_decay_iters=20, eval_interval=10)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = {"train/loss", "train/lr", "train/tokens_per_sec", "eval/val_loss", "eval/train_loss"}
    assert tags <= set(events.Tags()["scalars"]) and "train_loss" not in events.Tags()["scalars"]
    logged = [r for r in rows(tmp_path / "run") if "val_loss" in r]
    val = events.Scalars("eval/val_loss")
    assert [e.step for e in val] == [r["iter"] for r in logged] == [0, 10, 20]
    assert [e.value for e in val] == pytest.approx([r["val_loss"] for r in logged])  # float32 in the events


def test_init_from_gpt2_starts_from_its_weights(tmp_path, corpus):
    """--init_from a config-built GPT-2 saved with save_pretrained: the run starts from its logits on the
    eval batches, with GPT-2's dimensions; a wrong directory or tokenizer is a one-line error."""
    transformers = pytest.importorskip("transformers")
    gpt2_or_skip()
    cfg = transformers.GPT2Config(
        vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2, activation_function="gelu"
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    summary = run(
        tmp_path,
        corpus,
        tokenizer="gpt2",
        pos_enc="learned",
        init_from=str(tmp_path / "gpt2"),
        max_iters=0,
        n_layer=5,
        n_embd=64,
    )
    model, model_cfg, _, _ = rundir.load_run(tmp_path / "run")
    assert (model_cfg.n_layer, model_cfg.n_embd, model_cfg.block_size) == (2, 32, 16)  # GPT-2's, cropped
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    val = np.memmap(folder_of(str(corpus), "gpt2", tmp_path / "data") / "val.bin", dtype=np.uint16, mode="r")
    with torch.no_grad():
        for x, y in batches.fixed_eval_batches(val, 16, 4, 2, batches.EVAL_SEED):
            torch.testing.assert_close(model(x, y)[0], hf(x).logits, rtol=1e-4, atol=1e-5)
    assert summary["iters"] == 0
    # the run is an ordinary run: it resumes, samples and exports
    init = dict(tokenizer="gpt2", pos_enc="learned", init_from=str(tmp_path / "gpt2"), n_layer=5, n_embd=64)
    assert run(tmp_path, corpus, **init, max_iters=2, resume=True)["iters"] == 2
    assert sample.sample(sample.SampleConfig(out_dir=str(tmp_path / "run"), max_new_tokens=5))[0]
    with pytest.raises(ValueError, match="needs GPT-2's vocabulary"):
        run(tmp_path / "c", corpus, init_from=str(tmp_path / "gpt2"))
    with pytest.raises(ValueError, match="no such directory"):
        run(tmp_path / "d", corpus, tokenizer="gpt2", init_from=str(tmp_path / "missing"))
    assert not (tmp_path / "d" / "run").exists()  # refused before the run dir was made


# --- one owner per run directory (issue 23) ---------------------------------------------------------------


def test_flex_training_on_a_cpu_is_refused_before_a_run_dir_and_a_run_resumes_on_another_kernel(
    tmp_path, corpus
):
    with pytest.raises(ValueError, match="attention=flex has no backward on CPU"):
        run(tmp_path, corpus, attention="flex")
    assert not (tmp_path / "run").exists()
    run(tmp_path, corpus, max_iters=3)
    assert run(tmp_path, corpus, resume=True, attention="auto")["iters"] == 6  # the kernel is not the model


def test_two_starts_into_one_fresh_out_dir_one_is_refused_and_the_other_intact(tmp_path, corpus):
    """Two train.py (rope and alibi) started together into one folder: exactly one trains it, the other is
    refused with one line naming the holder (or, started late, the run), and the folder holds one run."""
    common = dict(max_iters=40, lr_decay_iters=40, eval_interval=20)
    procs = {pe: cli(*argv(tmp_path, corpus, pos_enc=pe, **common)) for pe in ("rope", "alibi")}
    outcome = {pe: (p.wait(timeout=120), p.communicate()[1]) for pe, p in procs.items()}
    codes = sorted(code for code, _ in outcome.values())
    assert codes == [0, 1], outcome
    winner = next(pe for pe, (code, _) in outcome.items() if code == 0)
    refused = next(err for code, err in outcome.values() if code == 1)
    assert refused.startswith("error: ") and refused.count("\n") == 1
    assert "is in use by pid" in refused or "already holds a run" in refused
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["pos_enc"] == winner
    assert [r["iter"] for r in rows(tmp_path / "run") if "val_loss" in r] == [0, 20, 40]
    assert rundir.read_checkpoint(tmp_path / "run" / rundir.CKPT)[1].pos_enc == winner


def test_a_refused_start_never_harms_a_live_run(tmp_path, corpus):
    """A live run saving every iteration; three refused starts meanwhile (a resume with another batch_size):
    each refused before touching the folder; the live run goes on and stops cleanly when asked."""
    args = argv(tmp_path, corpus, max_iters=10**6, lr_decay_iters=10**6, eval_interval=1, eval_iters=1)
    live = cli(*args)
    read_until(live, lambda line: line.startswith("iter 2: val loss"))
    for _ in range(3):
        refused = cli(*args, "--resume=true", "--batch_size=999")
        _, err = refused.communicate(timeout=60)
        assert refused.returncode == 1 and f"is in use by pid {live.pid}" in err, err
    live.send_signal(signal.SIGINT)
    _, err = live.communicate(timeout=60)
    assert live.returncode == 130 and "Error" not in err, err
    assert torch.load(tmp_path / "run/ckpt.pt", weights_only=True)["iter_num"] > 2


def test_a_start_that_fails_on_its_logs_leaves_nothing_that_blocks_the_next(tmp_path, corpus):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        run(tmp_path, corpus, log="tensorboard", tensorboard_dir=tmp_path / "file" / "tb")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # no config, no metrics
    assert run(tmp_path, corpus)["iters"] == 6
    with pytest.raises(ValueError, match="tensorboard_dir is where log=tensorboard writes"):
        run(tmp_path / "b", corpus, tensorboard_dir=tmp_path / "tb")


def test_tensorboard_hides_the_replayed_steps_of_a_resume(tmp_path, corpus, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    step = T.Run.step

    def interrupt_at_iter_3(self, it, stop):
        if it == 3:
            signal.raise_signal(signal.SIGINT)
        return step(self, it, stop)

    monkeypatch.setattr(T.Run, "step", interrupt_at_iter_3)
    run(tmp_path, corpus, log="tensorboard")
    monkeypatch.setattr(T.Run, "step", step)
    run(tmp_path, corpus, log="tensorboard", resume=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(6))  # each step once


def test_drope_drops_the_scheme_at_its_iteration_and_keeps_every_weight(tmp_path, corpus):
    """From drope_iter on the run is a NoPE model: its checkpoint says so and loads as one; the eval at that
    iteration already measures it without positions; config.json keeps the run as given."""
    run(tmp_path, corpus, max_iters=6, lr_decay_iters=6, eval_interval=2, drope_iter=4)
    _, model_cfg, train_cfg, _ = rundir.load_run(tmp_path / "run")
    assert model_cfg.pos_enc == "none" and train_cfg.drope_iter == 4
    assert json.loads((tmp_path / "run/config.json").read_text())["model"]["pos_enc"] == "rope"
    events = [r for r in rows(tmp_path / "run") if r.get("event") == "drope"]
    assert [r["iter"] for r in events] == [4]
    with pytest.raises(ValueError, match=r"holds no parameters .* not 'learned'"):
        run(tmp_path / "b", corpus, pos_enc="learned", drope_iter=2, max_iters=4)


def test_the_start_line_names_the_scheme_and_every_option_set():
    cfg = ModelConfig(attn_sink=True, window=1, window_pattern="SSSL")
    line = T.scheme_line(cfg, TrainConfig(drope_iter=10))
    assert line == "rope + attn_sink=true, window=1, window_pattern=SSSL, dropped at iter 10 (DroPE)"
    assert T.scheme_line(ModelConfig(pos_enc="alibi"), TrainConfig()) == "alibi"
