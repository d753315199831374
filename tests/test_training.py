"""training.py: TrainConfig validation, the LR schedule, gradient accumulation and the clipped step."""

import dataclasses
import itertools

import pytest
import torch
from helpers import model_for

import training
from data.sources import load_source
from model import GPT, ModelConfig
from runtime import Precision
from training import TrainConfig, configure_optimizers, get_lr, model_at, set_lr


@pytest.mark.parametrize(
    "bad",
    [
        dict(batch_size=0),
        dict(max_iters=-1),
        dict(eval_interval=0),
        dict(learning_rate=0.0),
        dict(min_lr=0.1, learning_rate=0.01),
        dict(warmup_iters=300, lr_decay_iters=200),
        dict(beta2=1.0),
        dict(grad_clip=-1.0),
        dict(tokenizer="bpe"),
        dict(dtype="fp8"),
        dict(device="gpu0"),
        dict(task_buckets=65, dataset="task:copy", batch_size=64),
        dict(batch_size=True),
        dict(task_width=-1, dataset="task:addition"),
        dict(task_width=52, dataset="task:addition", task_hints=True),
        dict(task_width=4, dataset="task:copy"),
        dict(task_lsb=True, dataset="task:copy"),
        dict(out_dir=""),
    ],
)
def test_train_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_addition_options_reach_addition_only():
    """A grid of task:copy,addition gives its task_* options to addition; copy gets the defaults."""
    cfg = TrainConfig(dataset="task:copy,addition", task_width=10, task_lsb=True)
    options = cfg.addition_options("addition")
    assert list(options) == list(training.ADDITION_KEYS)
    assert options["task_width"] == 10 and options["task_lsb"] is True
    assert cfg.addition_options("copy") == TrainConfig().addition_options("addition")
    assert cfg.task("addition").width == 10 and cfg.task("copy").width == 0


def test_lr_schedule():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110)
    lrs = [get_lr(it, cfg) for it in range(130)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[9] == pytest.approx(1e-3 * 10 / 11)
    assert lrs[10] == pytest.approx(1e-3) and lrs[60] == pytest.approx(5.5e-4)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[110:] == [1e-4] * 20


def tiny_model(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    """Two micro-batches of 2, each loss scaled by 1/2, = one batch of 4 (mean loss over equal halves)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(11, (4, 8), generator=g), torch.randint(11, (4, 8), generator=g)
    full, split = tiny_model(), tiny_model()
    precision = Precision.of("float32", "cpu")
    scaler = precision.grad_scaler()
    loss_full = training.accumulate_gradients(full, [(x, y)], 1, precision, scaler)
    loss_split = training.accumulate_gradients(split, [(x[:2], y[:2]), (x[2:], y[2:])], 2, precision, scaler)
    torch.testing.assert_close(loss_split, loss_full)
    assert not loss_split.requires_grad and loss_split.dtype == torch.float32
    for a, b in zip(full.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad)


@pytest.mark.parametrize("groups", [2, 3, 64])
def test_groups_of_rows_by_length_give_the_full_batch_gradient(groups):
    """task_buckets: an addition batch with coupled ids, its rows in groups trimmed to their length, gives
    the loss and gradients of the padded batch (float rounding apart)."""
    cfg = TrainConfig(dataset="task:addition", task_n_train=6, task_positions="coupled", task_marks=True)
    model_cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, pos_enc="rope", random_positions=30)
    source = load_source(cfg, model_cfg)
    model_cfg = dataclasses.replace(
        model_cfg, vocab_size=source.meta["vocab_size"], block_size=source.block_size
    )
    batch = source.batch((0, 1, 0), 64)
    precision = Precision.of("float32", "cpu")
    losses, grads = [], []
    for k in (1, groups):
        torch.manual_seed(0)
        model = GPT(model_cfg)
        losses.append(training.accumulate_gradients(model, [batch], 1, precision, precision.grad_scaler(), k))
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[1], losses[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("grad_clip", [0.0, 1e-3])
def test_optimizer_step_clips_steps_and_zeroes(grad_clip):
    """The step equals clip_grad_norm_ + AdamW.step by hand, and leaves no gradients behind."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(11, (2, 8), generator=g), torch.randint(11, (2, 8), generator=g)
    ours, ref = tiny_model(), tiny_model()
    precision = Precision.of("float32", "cpu")
    opts = [configure_optimizers(m, 0.1, 1e-2, (0.9, 0.95), "cpu") for m in (ours, ref)]
    scaler = precision.grad_scaler()
    training.accumulate_gradients(ours, [(x, y)], 1, precision, scaler)
    training.optimizer_step(ours.parameters(), opts[0], scaler, grad_clip)
    ref(x, y)[1].backward()
    if grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), grad_clip)
        assert norm > grad_clip  # the clip is active
    opts[1].step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert a.grad is None
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_optimizer_groups():
    model = model_for("learned", attn_sink=True)
    opt = configure_optimizers(model, 0.1, 1e-3, (0.9, 0.95), "cpu", pos_lr_mult=10.0)
    decay, no_decay, pos_decay, pos_no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    position = {id(p) for p in model.position_parameters().values()}  # the table wpe and the sinks
    assert {id(p) for g in (pos_decay, pos_no_decay) for p in g["params"]} == position and len(position) == 3
    assert (pos_decay["lr_mult"], pos_no_decay["weight_decay"], decay["lr_mult"]) == (10.0, 0.0, 1.0)
    set_lr(opt, 2e-3)
    assert [g["lr"] for g in opt.param_groups] == [2e-3, 2e-3, 2e-2, 2e-2]
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == model.num_params(non_embedding=False)


def test_fused_cpu_adamw_matches_the_reference_loop():
    """CPU training uses the fused AdamW kernel; three steps agree with torch's per-parameter loop to
    fp32 rounding of the updates (lr 1e-2, so atol 1e-5 is a thousandth of a step)."""
    models = [model_for("rope", seed=3) for _ in range(2)]
    fused = configure_optimizers(models[0], 0.1, 1e-2, (0.9, 0.95), "cpu")
    params = dict(zip(models[0].parameters(), models[1].parameters(), strict=True))  # fused's -> loop's
    loop_groups = [
        {"params": [params[p] for p in g["params"]], "weight_decay": g["weight_decay"]}
        for g in fused.param_groups
    ]
    loop = torch.optim.AdamW(loop_groups, lr=1e-2, betas=(0.9, 0.95), foreach=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(8))
    for _ in range(3):
        for model, opt in zip(models, (fused, loop), strict=True):
            model(idx, targets=idx)[1].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for p, q in params.items():
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)


def test_model_at_drops_a_parameter_free_scheme_at_drope_iter():
    cfg, rope = TrainConfig(max_iters=100, drope_iter=40), ModelConfig(pos_enc="rope", rope_base=500.0)
    assert model_at(rope, cfg, 39) == rope and model_at(rope, TrainConfig(), 99) == rope
    assert model_at(rope, cfg, 40) == rope.with_scheme("none") == model_at(rope, cfg, 99)
    for scheme in ("learned", "t5", "none"):
        with pytest.raises(ValueError, match=f"not '{scheme}'"):
            model_at(ModelConfig(pos_enc=scheme), cfg, 0)
    for bad, match in ((0, r"in \[1, 99\]"), (100, r"in \[1, 99\]"), (2.5, "not a valid int")):
        with pytest.raises(ValueError, match=f"drope_iter.*{match}"):
            TrainConfig(max_iters=100, drope_iter=bad)
