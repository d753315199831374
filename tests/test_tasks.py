"""data/tasks.py: every generator against an independent computation of its answer, determinism per
seed, the sizes asked for, the loss mask on exactly the answer, and padding that never changes a scored
token's prediction."""

import numpy as np
import pytest
import torch
from helpers import model_for

from data.tasks import END, PAD, TASKS, encode_batch, eval_problems, get_task, sample_problems, task_meta


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
    problems = sample_problems(task, np.random.default_rng(2), 16, 6)
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
    problems = sample_problems(task, np.random.default_rng(3), 6, 7)
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
