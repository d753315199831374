"""data/tasks.py: every generator against an independent computation of its answer, determinism per
seed, the sizes asked for, the loss mask on exactly the answer, and padding that never changes a scored
token's prediction."""

import numpy as np
import pytest
import torch
from helpers import model_for

from data.tasks import (
    END,
    HINTS,
    PAD,
    TASKS,
    encode_batch,
    eval_pairs,
    eval_problems,
    get_task,
    sample_problems,
    structured_ids,
    task_meta,
)


def solve(name: str, prompt: str, plain: bool = False) -> str:
    """The answer of a prompt, computed here from the task's definition (not from data/tasks.py)."""
    body = prompt[:-1]  # every prompt ends with "="
    if name == "copy":
        return body + "."
    if name == "reverse":
        return body[::-1] + "."
    if name == "sort":
        return "".join(sorted(body)) + "."
    if name == "addition":
        a, b = body.split("+")
        digits = str(int(a) + int(b)).rjust(len(a) + 1, "0")
        return (digits if plain else digits[::-1]) + "."
    if name == "recall":
        pairs, key = body.split("?")
        return dict(zip(pairs[0::2], pairs[1::2], strict=True))[key] + "."
    if name == "passkey":
        return body[body.index("#") + 1 : body.index("#") + 6] + "."
    raise AssertionError(name)


def size_of(name: str, prompt: str) -> int:
    body = prompt[:-1]
    return {
        "addition": len(body.split("+")[0]),
        "recall": len(body.split("?")[0]) // 2,
        "passkey": len(body) - 7,
    }.get(name, len(body))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_answers_are_right_sizes_respected_and_seeded(name):
    task = get_task(name)
    for n in (1, 2, 7, 20):
        problems = eval_problems(task, n, 50, seed=3)
        assert problems == eval_problems(task, n, 50, 3) and problems != eval_problems(task, n, 50, 4)
        for prompt, answer in problems:
            assert answer == solve(name, prompt) and answer.endswith(END) and size_of(name, prompt) == n
            assert set(prompt + answer) <= set(task.chars) and PAD not in prompt + answer
        assert {(len(p), len(a)) for p, a in problems} == {task.lengths(n)}  # one length per size
    assert len({p for p, _ in eval_problems(task, 20, 50, seed=3)}) > 45  # varied


def test_addition_orders_and_carries():
    rng = np.random.default_rng(0)
    for plain in (False, True):
        task = get_task("addition", plain)
        for _ in range(200):
            prompt, answer = task.problem(rng, int(rng.integers(1, 12)))
            assert answer == solve("addition", prompt, plain)
    assert get_task("addition").problem(np.random.default_rng(5), 3)[0][3] == "+"
    with pytest.raises(ValueError, match="task_plain is an option of task:addition only"):
        get_task("copy", plain=True)
    with pytest.raises(ValueError, match="unknown task 'kopy'"):
        get_task("kopy")


def test_recall_keys_are_distinct_up_to_the_alphabet():
    task = get_task("recall")
    prompt, _ = task.problem(np.random.default_rng(1), 26)
    keys = prompt.split("?")[0][0::2]
    assert len(set(keys)) == 26 and task.max_n == 26


@pytest.mark.parametrize("name", sorted(TASKS))
def test_loss_mask_covers_exactly_the_answer(name):
    task = get_task(name)
    problems, _ = sample_problems(task, np.random.default_rng(2), 16, 6)
    length = sum(task.lengths(6)) - 1
    x, y = encode_batch(task, problems, length)
    assert x.shape == y.shape == (16, length)
    for row, (prompt, answer) in enumerate(problems):
        seq = task.encode(prompt + answer)
        scored = (y[row] != -1).nonzero().flatten().tolist()
        assert scored == list(range(len(prompt) - 1, len(seq) - 1))  # positions predicting the answer
        assert y[row, scored].tolist() == task.encode(answer)
        assert x[row, : len(seq) - 1].tolist() == seq[:-1]
        assert (x[row, len(seq) - 1 :] == task.stoi[PAD]).all()
    with pytest.raises(ValueError, match="does not fit"):
        encode_batch(task, [task.problem(np.random.default_rng(0), 7)], length)


@pytest.mark.parametrize("pos_enc", ["learned", "rope", "alibi", "cope"])
def test_padding_never_changes_a_scored_token(pos_enc):
    """A batch of mixed sizes, padded, scores every answer token as each problem alone, unpadded."""
    task = get_task("reverse")
    model = model_for(pos_enc, vocab_size=len(task.chars), block_size=32)
    problems, _ = sample_problems(task, np.random.default_rng(3), 6, 7)
    x, y = encode_batch(task, problems, 15)
    logits, _ = model(x, y)
    for row, problem in enumerate(problems):
        n = sum(len(s) for s in problem) - 1
        alone, _ = model(*encode_batch(task, [problem], n))
        scored = y[row] != -1
        torch.testing.assert_close(logits[row, :n][scored[:n]], alone[0][scored[:n]], rtol=1e-5, atol=1e-5)


def test_meta_is_a_char_tokenizer_and_a_digest_of_the_definition():
    meta = task_meta(get_task("copy"), 8, 24)
    assert meta["tokenizer"] == "char" and meta["vocab_size"] == len(meta["chars"]) == 13
    assert meta["source_sha256"] != task_meta(get_task("copy"), 9, 27)["source_sha256"]
    assert meta["source_sha256"] == task_meta(get_task("copy"), 8, 30)["source_sha256"]  # n_eval: eval only


def test_structured_ids_by_hand():
    """Cho et al.'s coupling of 042+785=7280. (reversed answer, END last): one id per significance, the
    operands' digits and the answer's digit of equal significance share it, '+' and '=' get the start;
    McLeish et al.'s Abacus: 1 + significance, 0 elsewhere."""
    addition = get_task("addition")
    assert structured_ids(addition, 3, "coupled", 1).tolist() == [4, 3, 2, 1, 4, 3, 2, 1, 2, 3, 4, 5, 0]
    assert structured_ids(addition, 3, "coupled", 6).tolist() == [9, 8, 7, 6, 9, 8, 7, 6, 7, 8, 9, 10, 0]
    assert structured_ids(addition, 3, "abacus", 0).tolist() == [3, 2, 1, 0, 3, 2, 1, 0, 1, 2, 3, 4, 0]
    assert structured_ids(addition, 3, "abacus", 2).tolist() == [5, 4, 3, 0, 5, 4, 3, 0, 3, 4, 5, 6, 0]
    plain = get_task("addition", plain=True)  # 0827.: the answer's most significant digit first
    assert structured_ids(plain, 3, "coupled", 1).tolist() == [4, 3, 2, 1, 4, 3, 2, 1, 5, 4, 3, 2, 0]
    with pytest.raises(ValueError, match="has no digits to align"):
        structured_ids(get_task("copy"), 3, "abacus", 0)


def test_index_hints_are_zhou_et_al():
    """Each digit follows the hint of its significance (a for the units at evaluation); training shifts
    every hint of a problem by one random offset; without the hints the problem is the plain one."""
    hinted = get_task("addition", hints=True)
    assert hinted.problem(np.random.default_rng(0), 3) == ("c8b6a5+c2b3a0=", "a5b9c0d1.")
    assert get_task("addition").problem(np.random.default_rng(0), 3) == ("865+230=", "5901.")
    for seed in range(20):
        prompt, answer = hinted.problem(np.random.default_rng(seed), 4, train=True)
        r = HINTS.index(answer[0])
        assert answer[0:-1:2] == HINTS[r : r + 5] and prompt[:8:2] == HINTS[r : r + 4][::-1]
        digits = "".join(c for c in prompt + answer if c not in HINTS)
        assert solve("addition", digits[: digits.index("=") + 1]) == digits[digits.index("=") + 1 :]
    assert len({hinted.problem(np.random.default_rng(s), 2, train=True)[1][0] for s in range(200)}) > 40


def test_end_marks_align_the_answers_edge_with_the_operands():
    """task_marks writes .0865+.0230=5901.: the mark and the zero take significances n + 1 and n, so under
    coupled ids the answer's carry-out digit and end mark share their ids with operand tokens; the sum is
    unchanged, the digest changes only when marks are on, and the option is addition's, reversed, unhinted."""
    marked = get_task("addition", marks=True)
    assert marked.problem(np.random.default_rng(0), 3) == (".0865+.0230=", "5901.")
    ids = structured_ids(marked, 3, "coupled", 1).tolist()
    assert ids == [6, 5, 4, 3, 2, 1, 6, 5, 4, 3, 2, 1, 2, 3, 4, 5, 6]
    assert ids[:2] == ids[6:8] == [ids[-1], ids[-2]]  # mark and zero: the answer's end and carry-out ids
    assert structured_ids(marked, 3, "abacus", 0).tolist()[:6] == [5, 4, 3, 2, 1, 0]
    assert (
        task_meta(get_task("addition"), 3, 9)["source_sha256"]
        == task_meta(get_task("addition"), 3, 9)["source_sha256"]
        != task_meta(marked, 3, 9)["source_sha256"]
    )
    for kw, match in ((dict(plain=True), "drop task_plain"), (dict(hints=True), "drop task_plain")):
        with pytest.raises(ValueError, match=match):
            get_task("addition", marks=True, **kw)
    with pytest.raises(ValueError, match="task_marks is an option of task:addition only"):
        get_task("copy", marks=True)


def test_a_fixed_width_writes_every_size_in_one_layout():
    """task_width=W pads both operands to W digits and the sum to W + 1 (minGPT's adder), so sizes 1 .. W
    share one length and the digits of one significance one position; past W a problem is at its own size.
    Significance, coupled ids and operand pairs follow the written layout; the digest changes only with it."""
    wide = get_task("addition", width=6)
    assert wide.problem(np.random.default_rng(0), 3) == ("000865+000230=", "5901000.")
    assert {wide.lengths(n) for n in range(1, 7)} == {(14, 8)} and wide.lengths(8) == (18, 10)
    for seed in range(20):
        prompt, answer = wide.problem(np.random.default_rng(seed), int(seed % 6) + 1, train=True)
        assert solve("addition", prompt) == answer and len(prompt) == 14
    ids = structured_ids(wide, 2, "coupled", 1).tolist()
    assert ids == [*range(7, 1, -1), 1, *range(7, 1, -1), 1, *range(2, 9), 0]
    marked = get_task("addition", marks=True, width=4)
    assert marked.problem(np.random.default_rng(0), 3) == (".00865+.00230=", "59010.")
    assert len(marked.significance(1)) == sum(marked.lengths(1))
    assert all(len(p) == 14 for p, _ in eval_pairs(wide, 2, 5, 10, seed=0))
    assert (
        task_meta(get_task("addition"), 3, 9)["source_sha256"]
        == task_meta(get_task("addition", width=0), 3, 9)["source_sha256"]
        != task_meta(wide, 3, 9)["source_sha256"]
    )
    with pytest.raises(ValueError, match="task_width is an option of task:addition only"):
        get_task("copy", width=4)


def test_operands_least_significant_first_are_mcleish_et_als_order():
    """task_lsb writes the operands as the answer, units first (McLeish et al.): with a width, the digits of
    one significance sit at fixed distances (W + 1 apart, the answer's 2W + 2 after a's); hints follow the
    order; significance and coupled ids follow the digits; end marks are refused with it."""
    task = get_task("addition", width=6, lsb=True)
    assert task.problem(np.random.default_rng(0), 3) == ("568000+032000=", "5901000.")
    for seed in range(20):
        prompt, answer = task.problem(np.random.default_rng(seed), int(seed % 6) + 1)
        a, b = prompt[:-1].split("+")
        assert int(a[::-1]) + int(b[::-1]) == int(answer[:-1][::-1])
    sig = task.significance(3)
    assert [sig.index(s) for s in range(7)] == [0, 1, 2, 3, 4, 5, 20] and sig[7:13] == list(range(6))
    ids = structured_ids(task, 3, "coupled", 1).tolist()
    assert ids[:6] == ids[7:13] == ids[14:20] == [2, 3, 4, 5, 6, 7]
    hinted = get_task("addition", hints=True, lsb=True)
    assert hinted.problem(np.random.default_rng(0), 3) == ("a5b6c8+a0b3c2=", "a5b9c0d1.")
    with pytest.raises(ValueError, match="drop task_plain, task_hints and task_lsb"):
        get_task("addition", marks=True, lsb=True)


def test_operand_pairs_have_the_digits_asked_for():
    """eval_pairs: a has exactly na digits and b nb (no leading zero past one digit), both zero-padded to
    the longer; the answer is the sum's; a pure function of the seed."""
    task = get_task("addition")
    for na, nb in ((1, 1), (2, 7), (9, 3), (30, 30)):
        problems = eval_pairs(task, na, nb, 25, seed=3)
        assert problems == eval_pairs(task, na, nb, 25, seed=3)
        for prompt, answer in problems:
            a, b = prompt[:-1].split("+")
            assert len(a) == len(b) == max(na, nb) and solve("addition", prompt) == answer
            assert (len(str(int(a))), len(str(int(b)))) == (na, nb)
    assert get_task("copy").operands == 1 and task.operands == 2
