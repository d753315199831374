"""evaluate.py: window bookkeeping, sliding vs non-overlapping scoring against a plain forward pass,
n/a past a learned table, the fixed-batch loss, EvalConfig, and the fine-tune against a hand-written
training loop."""

import copy
import itertools

import numpy as np
import pytest
import torch

import evaluate
from data.batches import get_batch
from data.sources import TaskSource
from data.tasks import encode_batch, eval_pairs, eval_problems, get_task
from evaluate import TASK_SEED
from model import GPT, ModelConfig
from runtime import Precision
from training import TrainConfig, configure_optimizers

L = 16
STEPS = 60  # of test_greedy_exact_match_...: a third of the answers right


def small(pos_enc: str, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, block_size=L, n_layer=1, n_head=2, n_embd=16, pos_enc=pos_enc, **kw)
    return GPT(cfg).eval()


@pytest.mark.parametrize("pos_enc", ["rope", "alibi"])
def test_sliding_with_stride_T_is_non_overlapping(pos_enc):
    torch.manual_seed(0)
    model = small(pos_enc)
    tokens = np.random.default_rng(0).integers(0, 11, size=6 * L + 1)
    for T in (L, 2 * L):
        chunks = torch.from_numpy(tokens[: len(tokens) - 1].reshape(-1, T).astype(np.int64))
        targets = torch.from_numpy(tokens[1:].reshape(-1, T).astype(np.int64))
        reference = model(chunks, targets)[1].item()  # one batch of consecutive windows, mean loss
        loss, per_pos = evaluate.eval_windows(model, tokens, T, stride=T)
        torch.testing.assert_close(loss, reference, rtol=0, atol=1e-6)
        assert per_pos.shape == (T,) and np.isfinite(per_pos).all()
        # a smaller stride scores the same tokens with more context: different, and finite
        assert np.isfinite(evaluate.eval_windows(model, tokens, T, stride=T // 4)[0])


@pytest.mark.parametrize(
    ("n", "T", "stride"), [(64, 16, 16), (64, 16, 4), (70, 16, 5), (16, 16, 3), (50, 20, 7)]
)
def test_window_plan_scores_every_token_once_with_enough_context(n, T, stride):
    starts, skip = evaluate.window_plan(n, T, stride)
    scored = np.concatenate([np.arange(s + k, s + T) for s, k in zip(starts, skip, strict=True)])
    assert sorted(scored) == list(range(n))  # every position once
    for s, k in list(zip(starts, skip, strict=True))[1:]:
        assert k >= T - min(stride, T) and s + T <= n  # context of at least T - stride, inside the text


def test_learned_refuses_past_block_size_and_evaluator_gives_na():
    torch.manual_seed(0)
    model = small("learned")
    region = np.random.default_rng(0).integers(0, 11, size=8 * L + 1)
    out = evaluate.eval_variant(model, region, evaluate.EvalConfig(eval_lengths="1,2"))
    assert out["nonoverlap"][str(2 * L)] is None and out["sliding"][str(2 * L)] is None
    assert np.isfinite(out["nonoverlap"][str(L)]) and len(out["per_position"]) == L


def test_randomized_positions_are_evaluated_on_seeded_random_positions_up_to_M():
    """As in Ruoss et al.: every window gets sorted positions drawn from [0, M), the same on every call;
    lengths past M are n/a."""
    model = small("rope", random_positions=2 * L)
    region = np.random.default_rng(0).integers(0, 11, size=8 * L + 1)
    out = evaluate.eval_variant(model, region, evaluate.EvalConfig(eval_lengths="1,2,4"))
    assert np.isfinite(out["nonoverlap"][str(2 * L)]) and out["nonoverlap"][str(4 * L)] is None
    assert out == evaluate.eval_variant(model, region, evaluate.EvalConfig(eval_lengths="1,2,4"))
    plain = evaluate.eval_windows(small("rope"), region, L, L)[0]  # same weights, positions 0..L-1
    assert out["nonoverlap"][str(L)] != plain


def test_longrope_at_inference_starts_from_yarns_frequencies():
    cfg = small("rope").config
    scaling = evaluate.method_scaling("longrope", 4.0, cfg)
    assert scaling["short_factor"] == [1.0] * 4 and scaling["original_max_position_embeddings"] == L
    yarn = evaluate.method_scaling("yarn", 4.0, cfg)
    from rope import rope_inv_freq

    long, scale = rope_inv_freq(8, scaling=scaling, seq_len=4 * L)
    torch.testing.assert_close(long, rope_inv_freq(8, scaling=yarn)[0])
    assert scale == pytest.approx((1 + np.log(4) / np.log(L)) ** 0.5)  # LongRoPE's, not YaRN's 1.139


def test_loss_sum_is_the_sum_of_batch_losses_and_keeps_the_mode():
    model = small("rope").train()
    g = torch.Generator().manual_seed(0)
    batches = [tuple(torch.randint(11, (3, L), generator=g) for _ in "xy") for _ in range(3)]
    total = evaluate.loss_sum(model, batches, Precision.of("float32", "cpu"))
    assert model.training  # restored
    with torch.no_grad():
        expected = sum(model.eval()(x, y)[1] for x, y in batches)
    torch.testing.assert_close(total, expected, rtol=0, atol=1e-6)


def test_finetune_equals_a_hand_written_loop():
    """The fine-tune runs through training.py's step; on the CPU in float32 that is exactly AdamW with
    clipping on the fine-tune's batch stream, bit for bit."""
    data = np.random.default_rng(0).integers(0, 11, size=2000).astype(np.uint16)
    tcfg = TrainConfig(batch_size=4, grad_clip=1.0, weight_decay=0.1, data_seed=3)
    ev = evaluate.EvalConfig(finetune_iters=3, finetune_lr=1e-3)
    tuned = evaluate.finetune(copy.deepcopy(small("rope")), data, tcfg, ev, Precision.of("float32", "cpu"))
    ref = small("rope").train()
    opt = configure_optimizers(ref, 0.1, 1e-3, (tcfg.beta1, tcfg.beta2), "cpu")
    for it in range(3):
        x, y = get_batch(data, 2 * L, 2, (3, evaluate.FT_SEED, it))
        ref(x, y)[1].backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert not tuned.training
    for a, b in zip(tuned.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(eval_lengths="0,1"), "eval_lengths"),
        (dict(eval_lengths="a,b"), "eval_lengths"),
        (dict(eval_lengths="inf"), "eval_lengths"),
        (dict(eval_lengths="1e308"), r"eval_lengths must be multiples of block_size in \(0, 8\]"),
        (dict(eval_lengths="100"), r"\(0, 8\]"),
        (dict(rope_methods="linear,magic"), "rope_methods"),
        (dict(stride=0), "stride"),
        (dict(eval_windows=0), "eval_windows"),
        (dict(finetune_lr=0.0), "finetune_lr"),
    ],
)
def test_eval_config_names_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate.EvalConfig(**kw)


def test_eval_settings_and_lengths():
    ev = evaluate.EvalConfig(eval_lengths="2,1,1.5", stride=None)
    assert ev.lengths(64) == [64, 96, 128]
    assert ev.rope_methods == ("linear", "ntk", "dynamic", "yarn", "longrope")
    assert ev.settings(64)["stride"] == 64 and ev.settings(64)["lengths"] == [64, 96, 128]


class Oracle(torch.nn.Module):
    """A "model" that decodes the true answer of every prompt (or, wrong=True, shifts each answer token by
    one): what evaluate.task_accuracy must score 1 and 0."""

    def __init__(self, task, problems, wrong=False):
        super().__init__()
        self.config = ModelConfig(vocab_size=len(task.chars), block_size=8, n_layer=1, n_head=1, n_embd=8)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to find
        self.answers = {tuple(task.encode(p)): task.encode(a) for p, a in problems}
        self.wrong = wrong

    def generate(self, idx, max_new_tokens, temperature, positions=None, abacus=None):
        assert temperature == 0 and positions is None and abacus is None
        answers = torch.tensor([self.answers[tuple(row.tolist())] for row in idx])[:, :max_new_tokens]
        return torch.cat((idx, (answers + self.wrong) % self.config.vocab_size), dim=1)


@pytest.mark.parametrize("name", ["copy", "addition", "passkey"])
def test_task_accuracy_scores_an_oracle_1_and_a_wrong_one_0(name):
    source = TaskSource(get_task(name), 5, 5)
    problems = eval_problems(source.task, 5, 30, seed=1)
    fp32 = Precision.of("float32", "cpu")
    assert evaluate.task_accuracy(Oracle(source.task, problems), source, 5, problems, fp32).all()
    wrong = Oracle(source.task, problems, wrong=True)
    assert not evaluate.task_accuracy(wrong, source, 5, problems, fp32).any()


def test_the_operand_grid_scores_each_cell_on_its_own_problems():
    """McLeish et al.'s map: the cells of one max(na, nb) decode as a batch, each scored on eval_pairs'
    problems; an oracle that knows some cells only scores 1 exactly there."""
    source, fp32 = TaskSource(get_task("addition"), 2, 6), Precision.of("float32", "cpu")
    sizes = evaluate.operand_sizes(2, 6)
    assert sizes == [1, 2, 3, 4, 5, 6] and evaluate.operand_sizes(3, 15) == [1, 3, 4, 6, 7, 9, 12, 15]
    known, task = [(1, 3), (3, 3), (6, 2)], source.task
    oracle = Oracle(task, [])
    for na, nb in itertools.product(
        sizes, sizes
    ):  # the true answer in the known cells, a wrong one elsewhere
        for p, a in eval_pairs(task, na, nb, 20, TASK_SEED):
            shift = (na, nb) not in known
            oracle.answers[tuple(task.encode(p))] = [(t + shift) % len(task.chars) for t in task.encode(a)]
    grid = evaluate.operand_grid(oracle, source, sizes, 40, fp32)
    assert grid["problems_per_cell"] == 20 and grid["sizes"] == sizes
    got = {(sizes[i], sizes[j]) for i, row in enumerate(grid["exact"]) for j, x in enumerate(row) if x == 1}
    assert got == set(known) and sum(map(sum, grid["exact"])) == 3


def test_greedy_exact_match_is_teacher_forced_argmax_exact_match():
    """Greedy decoding gets the whole answer right exactly when every teacher-forced argmax is right; the
    batched, cached decoding is checked against that one-forward criterion on a half-trained model."""
    task = get_task("copy")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(task.chars), block_size=24, n_layer=1, n_head=2, n_embd=16))
    source, opt = TaskSource(task, 3, 3), torch.optim.AdamW(model.parameters(), lr=1e-2)
    for it in range(STEPS):  # half-trained: some answers right, some wrong
        model(*source.batch((0, it), 32))[1].backward()
        opt.step()
        opt.zero_grad()
    problems = eval_problems(task, 3, 400, seed=2)
    right = evaluate.task_accuracy(model.eval(), source, 3, problems, Precision.of("float32", "cpu"))
    x, y = encode_batch(task, problems, 7)
    logits, _ = model(x, y)
    forced = ((logits.argmax(-1) == y) | (y == -1)).all(1)
    assert torch.equal(torch.from_numpy(right.all(1)), forced) and 0 < forced.float().mean() < 1


def test_the_tuning_half_and_the_held_out_half_never_overlap(monkeypatch):
    """Token k of the validation split is k here, so the regions show which indices they took."""
    N, L = 10_000, 16
    splits = {"val": np.arange(N), "train": np.arange(5)}
    monkeypatch.setattr(evaluate, "load_dataset", lambda *a: ({"source_sha256": "x"}, splits))
    ev = evaluate.EvalConfig(eval_windows=4)
    test, tune, _ = evaluate.val_region(TrainConfig(), {"source_sha256": "x"}, L, ev)
    assert len(test) == len(tune) == 4 * 8 * L + 1
    assert test[0] == N // 2 and tune[-1] < N // 2 and not set(test) & set(tune)
    ev = evaluate.EvalConfig(eval_windows=10**6)  # as many windows as the halves hold, still apart
    test, tune, _ = evaluate.val_region(TrainConfig(), {"source_sha256": "x"}, L, ev)
    assert tune[-1] < test[0] == N // 2 and test[-1] < N
