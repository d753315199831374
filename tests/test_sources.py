"""data/sources.py: a corpus and a task behind one interface; batches pure functions of their seeds, the
fixed evaluation batches, the model's block_size and the training length of a task."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import tiny_corpus

from attention import visible_keys
from data import batches
from data.sources import TaskSource, TextSource, check_range, load_source
from data.tasks import get_task, structured_ids
from model import GPT, ModelConfig
from positional import Positions
from training import TrainConfig


def test_text_source_is_the_corpus_batches(tmp_path):
    cfg = TrainConfig(dataset=str(tiny_corpus(tmp_path)), data_dir=str(tmp_path / "data"))
    source = load_source(cfg, ModelConfig(block_size=16))
    assert isinstance(source, TextSource) and source.block_size == source.train_len == 16
    expected = batches.get_batch(source.splits["train"], 16, 4, (0, 3, 1))
    torch.testing.assert_close(source.batch((0, 3, 1), 4), expected)
    fixed = batches.fixed_eval_batches(source.splits["val"], 16, 4, 2, batches.EVAL_SEED)
    torch.testing.assert_close(source.eval_batches("val", 4, 2), fixed)
    assert source.sample_prompt() == "\n"
    assert len(load_source(cfg, ModelConfig(block_size=16, random_positions=40)).batch((0, 3, 1), 4)) == 3


def test_epochs_visit_every_window_once_per_epoch_in_a_seeded_order():
    """batch_order=epochs is the book's DataLoader(stride=block_size, shuffle=True, drop_last=True): 179
    windows of 101 tokens in 18,000 make 44 batches of 4 per epoch (3 windows left out), each window once."""
    data = np.arange(18_000, dtype=np.uint16)  # token i is i: a window's first token is its start
    source = TextSource({}, {"train": data}, 100, order="epochs", micro_steps=2)

    def epoch_starts(e):  # the 22 iterations x 2 micro-steps of epoch e
        its = range(22 * e, 22 * e + 22)
        return [source.batch((0, it, m), 4)[0][:, 0].tolist() for it in its for m in (0, 1)]

    first, second = epoch_starts(0), epoch_starts(1)
    for batches_ in (first, second):
        starts = [s for b in batches_ for s in b]
        assert len(set(starts)) == 176 and all(s % 100 == 0 and s + 101 <= 18_000 for s in starts)
    assert first != second  # reshuffled every epoch
    x, y = source.batch((0, 5, 1), 4)
    assert x[:, 0].tolist() == first[11] and torch.equal(y[:, :-1], x[:, 1:])
    assert source.batch((1, 0, 0), 4)[0][:, 0].tolist() != first[0]  # another data_seed, another order


def test_task_source_sizes_and_seeded_batches():
    source = load_source(TrainConfig(dataset="task:addition", task_n_train=5), ModelConfig())
    assert isinstance(source, TaskSource) and (source.n_train, source.n_eval) == (5, 15)
    task = get_task("addition")
    assert source.train_len == sum(task.lengths(5)) - 1 and source.block_size == sum(task.lengths(15)) - 1
    x, y = source.batch((0, 7, 0), 64)
    assert x.shape == y.shape == (64, source.train_len)
    assert all(torch.equal(a, b) for a, b in zip(source.batch((0, 7, 0), 64), (x, y), strict=True))
    assert not torch.equal(source.batch((0, 8, 0), 64)[0], x)
    randomized = load_source(
        TrainConfig(dataset="task:addition", task_n_train=5), ModelConfig(random_positions=100)
    )
    x2, _, pos = randomized.batch((0, 7, 0), 64)
    assert torch.equal(x2, x) and pos.shape == x.shape and pos.max() < 100
    val, train = source.eval_batches("val", 8, 3), source.eval_batches("train", 8, 3)
    assert torch.equal(val[2][0], source.eval_batches("val", 8, 3)[2][0])
    assert not torch.equal(val[0][0], train[0][0])
    assert source.sample_prompt().endswith("=") and source.meta["vocab_size"] == 14


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(dataset="task:copy,reverse"), "a run trains on one task"),
        (dict(dataset="task:kopy"), "unknown task 'kopy'"),
        (dict(dataset="task:recall", task_n_train=10, task_n_eval=27), r"task_n_eval .*=10, 26"),
        (dict(dataset="task:copy", task_n_train=0), r"task_n_train must be an integer in \[1, "),
        (dict(dataset="task:copy", tokenizer="gpt2"), "use tokenizer='char'"),
        (dict(dataset="pydocs", task_n_train=4), "task_\\* keys are for dataset=task:NAME"),
        (dict(dataset="task:copy", task_plain=True), "task_plain is an option of task:addition"),
        (dict(dataset="task:copy,copy"), "lists a task twice"),
        (dict(dataset="pydocs", task_buckets=4), "task_\\* keys are for dataset=task:NAME"),
        (
            dict(dataset="task:recall", task_n_train=27),
            r"task_n_train must be an integer in \[1, 26\], got 27",
        ),
        (dict(dataset="task:copy", task_n_train=10**6), r"task_n_train must be an integer in \[1, 1000\]"),
        (dict(dataset="task:addition", task_n_train=1434), r"task_n_train must be an integer in \[1, 1000\]"),
    ],
)
def test_bad_task_settings_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        load_source(TrainConfig(**kw), ModelConfig(block_size=16))


def test_task_names_have_one_spelling():
    assert TrainConfig(dataset="task: copy, reverse").dataset == "task:copy,reverse"


def test_random_positions_need_room_past_the_longest_sequence():
    with pytest.raises(ValueError, match=r"must be > block_size=16, got 16: use --random_positions=64"):
        check_range(16, 16)
    task = TrainConfig(dataset="task:copy", task_n_train=5, task_n_eval=10)
    with pytest.raises(ValueError, match=r"must be > block_size=21"):
        load_source(task, ModelConfig(random_positions=21))
    assert load_source(task, ModelConfig(random_positions=22)).M == 22


@pytest.mark.parametrize(("positions", "knob"), [("coupled", "random_positions"), ("sequential", "abacus")])
def test_structured_offsets_are_drawn_from_the_seed_and_stay_in_their_table(positions, knob):
    """Training draws one offset per problem from the batch's seed (the same seed, the same ids) and keeps
    every id inside its table of 30 rows, up to its last; accuracy is scored at the papers' fixed start
    (coupled: 1, Abacus: 0)."""
    cfg = TrainConfig(dataset="task:addition", task_n_train=4, task_n_eval=12, task_positions=positions)
    source = load_source(
        cfg, ModelConfig(pos_enc="learned" if knob == "random_positions" else "none", **{knob: 30})
    )
    x, *_, ids = source.batch((0, 3, 0), 256)
    assert torch.equal(ids, source.batch((0, 3, 0), 256)[-1]) and not torch.equal(
        ids, source.batch((0, 4, 0), 256)[-1]
    )
    assert ids.shape == x.shape and ids.max() == 29 and ids.min() == 0
    kind, start = ("coupled", 1) if positions == "coupled" else ("abacus", 0)
    expected = structured_ids(source.task, 12, kind, start)
    fixed = next(t for t in source.ids([12], len(expected), rng=None) if t is not None)
    assert fixed[0].tolist() == expected.tolist()


@pytest.mark.parametrize("marks", [False, True])
def test_coupled_ids_fit_the_table_with_and_without_end_marks(marks):
    """Coupled ids of size n reach start + 1 + the top significance (n, or n + 1 with task_marks) from
    start 1 at evaluation: the table needs that many rows plus row 0; training draws starts that keep
    every id inside it, up to its last row."""
    cfg = TrainConfig(
        dataset="task:addition", task_n_train=4, task_n_eval=12, task_positions="coupled", task_marks=marks
    )
    need = 12 + 3 + marks
    with pytest.raises(ValueError, match=f"random_positions={need - 1} must be >= {need}"):
        load_source(cfg, ModelConfig(pos_enc="learned", random_positions=need - 1))
    source = load_source(cfg, ModelConfig(pos_enc="learned", random_positions=need))
    assert next(t for t in source.ids([12], 60, rng=None) if t is not None).max() == need - 1
    ids = source.batch((0, 1, 0), 256)[2]
    assert ids.max() == need - 1 and ids.min() == 0


def test_an_id_window_as_wide_as_the_trained_ids_hides_nothing_in_training():
    """Coupled ids with end marks span n + 2 in a problem of size n, so with id_window = n_train + 2 every
    scored query of a training batch sees every key before it: the same loss (to float rounding: the mask
    takes another shape through SDPA), while past n_train the window hides the distances training never
    showed (docs/TASKS.md); one less hides keys."""
    cfg = TrainConfig(
        dataset="task:addition", task_n_train=4, task_n_eval=8, task_positions="coupled", task_marks=True
    )
    shape = dict(n_layer=1, n_head=2, n_embd=32, vocab_size=14, block_size=32, random_positions=14)
    plain = GPT(ModelConfig(pos_enc="rope", attn_sink=True, ssmax=True, **shape))
    source = load_source(cfg, plain.config)
    x, y, ids = source.batch((0, 1, 0), 64)[:3]
    T = x.size(1)
    scored = (y != -1)[:, None, :, None]  # (B, 1, T, 1): the queries whose predictions count
    for window, hides in ((6, False), (5, True)):
        seen = visible_keys(Positions(T, T, ids, ids), None, window, "cpu")
        assert bool((scored & (seen != Positions(T, T).causal("cpu"))).any()) == hides
        windowed = GPT(dataclasses.replace(plain.config, id_window=window))
        windowed.load_state_dict(plain.state_dict())
        loss, reference = windowed(x, y, ids)[1], plain(x, y, ids)[1]
        if hides:
            assert not torch.equal(loss, reference)
        else:
            torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
