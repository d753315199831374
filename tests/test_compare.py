"""compare.py: a tiny grid end to end (report, resume, eval_only with fine-tune), the evaluation at L
against train.py's own eval, entries and their knobs, bad input, the presets."""

import contextlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, TINY, tiny_grid

import compare
from configurator import parse_config
from data.batches import EVAL_SEED, fixed_eval_batches, load_dataset
from evaluate import EvalConfig, eval_windows
from grid import CompareConfig
from model import ModelConfig
from rundir import load_run
from training import TrainConfig

L = 16


@contextlib.contextmanager
def one_thread():
    """Torch on one thread inside: tiny matrices, so thread hand-offs would cost more than the maths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """2 schemes x 2 seeds x 4 iterations on a small generated text."""
    root = tmp_path_factory.mktemp("compare")
    argv = [*tiny_grid(root), "--rope_methods=linear,yarn"]
    with one_thread():
        yield root, argv, compare.main(argv, progress=False)


def test_grid_writes_report_json_and_plots(grid):
    root, _, results = grid
    out = root / "grid"
    for name in (
        "report.md",
        "results.json",
        "curves.png",
        "extrapolation.png",
        "per_position.png",
        "per_position_learned.csv",
        "per_position_rope+yarn.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    report = (out / "report.md").read_text()
    assert "| 128 (8L) | n/a |" in report  # learned has no position rows past L
    ext = results["extrapolation"]["nonoverlap"]
    assert set(ext) == {"learned", "rope", "rope+linear", "rope+yarn"}
    assert ext["learned"][str(2 * L)] is None and ext["learned"][str(L)][2] == 2
    assert all(st is not None for st in ext["rope+yarn"].values())
    assert ext["rope+linear"][str(L)] == ext["rope"][str(L)]  # factor 1: the identity
    assert [r["seed"] for r in results["runs"]] == [1337, 1338, 1337, 1338]
    csv = (out / "per_position_rope.csv").read_text().splitlines()
    assert csv[0] == "position,mean,std,seed_1337,seed_1338" and len(csv) == 1 + 8 * L


def test_grid_resumes_without_training(grid, monkeypatch):
    _, argv, results = grid

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare, "train", no_training)
    again = compare.main(argv, progress=False)
    assert again["extrapolation"] == results["extrapolation"]


def test_eval_at_L_equals_train_eval_on_the_same_batches(grid):
    """train.py's final val loss is the mean over its fixed batches; score each of their windows alone."""
    record = grid[2]["runs"][2]  # rope, seed 1337
    model, _, tcfg, _ = load_run(record["summary"]["out_dir"])
    _, splits = load_dataset(tcfg.dataset, tcfg.tokenizer, tcfg.data_dir, L)
    losses = []
    for x, y in fixed_eval_batches(splits["val"], L, tcfg.batch_size, tcfg.eval_iters, EVAL_SEED):
        losses += [eval_windows(model, torch.cat((x[i], y[i, -1:])).numpy(), L, L)[0] for i in range(len(x))]
    torch.testing.assert_close(float(np.mean(losses)), record["summary"]["final_val_loss"], rtol=0, atol=1e-5)


def test_eval_only_with_finetune(grid, tmp_path):
    run = grid[0] / "grid" / "rope-seed0"
    results = compare.main(
        [
            f"--eval_only={run}",
            f"--report_dir={tmp_path}",
            f"--data_dir={tmp_path / 'data'}",
            "--rope_methods=linear",
            "--finetune_iters=2",
            "--eval_windows=1",
            "--eval_lengths=1,2",
        ],
        progress=False,
    )
    assert set(results["extrapolation"]["nonoverlap"]) == {"rope", "rope+linear", "rope+ft", "rope+linear+ft"}
    assert (tmp_path / "report.md").is_file()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--schemes=rope,learned:rope_base=500"], "rope_base"),
        (["--schemes=rope,bogus"], "bogus"),
        (["--schemes=rope:rope_base=ten"], "rope_base"),
        (["--eval_lengths=0,1"], "eval_lengths"),
        (["--rope_methods=linear,magic"], "rope_methods"),
        (["--n_seed=3"], "n_seeds"),
        (["--eval_only=,"], "eval_only must list run dirs"),
        (["--eval_only=/nonexistent/run"], "neither a run dir"),
        (["--quick"], "unknown config key 'quick'"),
        (["--stride=0"], "stride"),
        (["--schemes=rope,rope,alibi"], "schemes lists one run twice"),  # seeds would count twice
        (["--eval_only=out/a,out/./a"], "eval_only lists one run twice"),
        (["--finetune_lr=inf"], "finetune_lr must be a finite number"),
    ],
)
def test_bad_input_is_a_clear_value_error(argv, match):
    with pytest.raises(ValueError, match=match):
        compare.main(argv, progress=False)


# --- nothing lost, every failure one line (issue 11) ----------------------------------------------


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eval_only_of_copied_runs_leaves_the_original_grid_untouched(grid, tmp_path):
    root = grid[0]
    before = tree(root / "grid")
    for name in ("rope-seed0", "learned-seed0"):
        shutil.copytree(root / "grid" / name, tmp_path / "copies" / name)
    results = compare.main(
        [
            f"--eval_only={tmp_path / 'copies'}",
            "--rope_methods=",
            "--eval_windows=1",
            f"--data_dir={tmp_path / 'data'}",
        ],
        progress=False,
    )
    assert tree(root / "grid") == before  # byte-identical
    assert (tmp_path / "copies" / "report.md").is_file() and (tmp_path / "copies" / "curves.png").is_file()
    copies = {str(tmp_path / "copies" / n) for n in ("learned-seed0", "rope-seed0")}
    assert {r["run_dir"] for r in results["runs"]} == copies
    assert (tmp_path / "data").is_dir()  # the data went where this command said, not where the run was
    with pytest.raises(ValueError, match="lists one run twice"):  # a folder and a run inside it
        both = f"--eval_only={tmp_path / 'copies'},{tmp_path / 'copies' / 'rope-seed0'}"
        compare.main([both], progress=False)


def test_a_moved_grid_resumes_without_training(grid, tmp_path, monkeypatch):
    root, argv, results = grid
    shutil.copytree(root / "grid", tmp_path / "moved")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare, "train", no_training)
    moved = [a for a in argv if not a.startswith("--out_dir=")] + [f"--out_dir={tmp_path / 'moved'}"]
    again = compare.main(moved, progress=False)
    assert again["extrapolation"] == results["extrapolation"]
    assert all(r["run_dir"].startswith(str(tmp_path / "moved")) for r in again["runs"])


def test_a_diverged_fine_tune_is_an_error_not_a_nan_in_the_report(grid, tmp_path):
    run = grid[0] / "grid" / "rope-seed0"
    with pytest.raises(FloatingPointError, match="fine-tune diverged"):
        compare.main(
            [
                f"--eval_only={run}",
                f"--report_dir={tmp_path}",
                f"--data_dir={tmp_path / 'data'}",
                "--rope_methods=",
                "--finetune_iters=3",
                "--finetune_lr=1e6",
                "--grad_clip=0",
                "--eval_windows=1",
            ],
            progress=False,
        )
    assert not (tmp_path / "report.md").exists()


def test_eval_only_of_a_run_without_metrics_is_a_clear_error(grid, tmp_path):
    shutil.copytree(grid[0] / "grid" / "rope-seed0", tmp_path / "run")
    for name in ("compare.json", "summary.json", "metrics.jsonl"):
        (tmp_path / "run" / name).unlink(missing_ok=True)
    argv = [
        f"--eval_only={tmp_path / 'run'}",
        "--rope_methods=",
        "--eval_windows=1",
        f"--report_dir={tmp_path / 'report'}",
        f"--data_dir={tmp_path / 'data'}",
    ]
    with pytest.raises(ValueError, match=r"metrics\.jsonl not found"):
        compare.main(argv, progress=False)
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="has no eval row yet"):
        compare.main(argv, progress=False)


def test_task_grids_write_accuracy_reports(tmp_path):
    """dataset=task:A,B runs a grid per task, each with accuracy tables by n and a plot; eval_only reads
    the runs back to the same accuracies."""
    argv = [
        *TINY,
        "--dataset=task:copy,recall",
        "--task_n_train=3",
        f"--out_dir={tmp_path / 'tasks'}",
        "--schemes=learned,alibi",
        "--n_seeds=1",
        "--task_problems=20",
        "--block_size=1024",
    ]
    with one_thread():
        grids = compare.main(argv, progress=False)
    assert set(grids) == {"copy", "recall"}
    for task in grids:
        out = tmp_path / "tasks" / task
        for name in ("report.md", "results.json", "accuracy.png"):
            assert (out / name).stat().st_size > 0, name
        results = grids[task]
        assert results["labels"] == ["learned", "alibi"] and results["n_train"] == 3
        assert list(results["accuracy"]["exact"]["alibi"]) == [str(n) for n in range(1, 10)]
        token = results["accuracy"]["token"]["learned"]  # 4 steps learn nothing: no run counts past n = 3
        assert all(0 <= token[str(n)][0] <= 1 for n in (1, 2, 3)) and token["4"] is None
        report = (out / "report.md").read_text()
        assert "| 3 (trained) |" in report and "| position params | train s | eval s |" in report
        run = results["runs"][0]
        assert run["configs"]["train"]["dataset"] == f"task:{task}" and run["n_eval"] == 9
    again = compare.main([f"--eval_only={tmp_path / 'tasks' / 'copy'}", "--task_problems=20"], progress=False)
    assert again["accuracy"] == grids["copy"]["accuracy"]
    with pytest.raises(ValueError, match="eval_only runs of a task must all be of that task"):
        both = f"--eval_only={tmp_path / 'tasks' / 'copy'},{tmp_path / 'tasks' / 'recall'}"
        compare.main([both, f"--report_dir={tmp_path / 'mixed'}"], progress=False)
    assert not (tmp_path / "mixed" / "report.md").exists()  # refused before any run was evaluated


def test_the_addition_preset_adds_in_distribution_when_shrunk(tmp_path):
    """config/addition.py's method (its first entry, one layer) shrunk to n <= 2, 64 wide and 600 steps at
    3e-3 (about 15 s): it adds every trained size. Issue 26's in-CI check of the preset; the full preset's
    numbers are in docs/TASKS.md. At this size the method is slow to start on some seeds: exact match at
    n = 2 was 0.82-0.98 on seeds 600-605 and 1337 (2026-12-07; 0.68-1.00 at 5e-3), hence 0.8, not 0.9."""
    preset = str(REPO / "config" / "addition.py")
    *_, cmp = parse_config([preset], ModelConfig, TrainConfig, EvalConfig, CompareConfig)
    steps = [f"--{k}=600" for k in ("max_iters", "lr_decay_iters", "eval_interval")]
    shrunk = [
        "--task_n_train=2",
        "--task_n_eval=3",
        "--n_embd=64",
        "--learning_rate=3e-3",
        "--warmup_iters=50",
    ]
    argv = [
        preset,
        f"--schemes={cmp.entries()[0]}",
        *shrunk,
        *steps,
        "--task_problems=50",
        f"--out_dir={tmp_path}",
    ]
    with one_thread():
        results = compare.main(argv, progress=False)
    exact = results["accuracy"]["exact"][results["labels"][0]]
    assert exact["1"][0] == 1.0 and exact["2"][0] >= 0.8, exact


# --- grids that scale (issue 15) --------------------------------------------------------------------------

VOLATILE = {
    "elapsed_s",
    "tokens_per_sec",
    "ms_per_iter",
    "mfu",
    "eval_s",
    "wall_s",
    "busy_s",
    "out_dir",
    "run_dir",
    "command",
    "jobs",
    "threads",
    "launcher",
    "log",
    "tensorboard_dir",
}


def numbers(results) -> object:
    """results.json without timings, paths and the launcher's own settings: what the runs computed."""
    if isinstance(results, dict):
        return {k: numbers(v) for k, v in results.items() if k not in VOLATILE}
    if isinstance(results, list):
        return [numbers(v) for v in results]
    return results


def test_parallel_grid_computes_the_sequential_grids_numbers(grid, tmp_path):
    """--jobs=2 (one thread per run, as the sequential grid here) gives the same numbers bit for bit; with
    log=tensorboard every run writes its events under one folder, so TensorBoard overlays them."""
    _, argv, results = grid
    log = ["--log=tensorboard"] if importlib.util.find_spec("tensorboard") else []
    parallel = compare.main(
        [*argv, f"--out_dir={tmp_path / 'grid'}", "--jobs=2", "--threads=1", *log], progress=False
    )
    if log:
        boards = sorted(p.name for p in (tmp_path / "grid" / "tensorboard").iterdir())
        assert boards == ["learned-seed0", "learned-seed1", "rope-seed0", "rope-seed1"]
    assert numbers(parallel) == numbers(results)
    assert (tmp_path / "grid" / "rope-seed1" / "train.log").read_text().count("done:") == 1  # its own log


def test_submitit_local_launcher_runs_the_grid(grid, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    _, argv, results = grid
    argv = [
        *argv,
        f"--out_dir={tmp_path / 'grid'}",
        "--launcher=submitit_local",
        "--threads=1",
        "--n_seeds=1",
    ]
    out = compare.main(argv, progress=False)  # one seed: the two runs start at once, as one chunk
    first_seed = [r for r in results["runs"] if r["seed"] == results["runs"][0]["seed"]]
    assert (
        len(first_seed) == 2
        and numbers(out["runs"]) == numbers(first_seed)
        and (tmp_path / "grid" / "submitit").is_dir()
    )


class FakeSlurm:
    """submitit as a SLURM cluster would answer it: submitted jobs stay PENDING until `run_all`."""

    def __init__(self):
        self.jobs, self.submitted = {}, 0
        fake = self

        class Job:
            def __init__(self, job_id, call):
                self.job_id, self.call = job_id, call

        class AutoExecutor:
            def __init__(self, folder, cluster):
                self.cluster = cluster

            def update_parameters(self, **params):
                self.params = params

            def map_array(self, fn, *iterables):
                out = []
                for args in zip(*iterables, strict=True):
                    job_id = str(1000 + fake.submitted)
                    fake.submitted += 1
                    fake.jobs[job_id] = [Job(job_id, (fn, args)), "PENDING"]
                    out.append(fake.jobs[job_id][0])
                return out

        class SlurmJob:
            def __init__(self, folder, job_id):
                self.state = fake.jobs[job_id][1]

        self.module = type(sys)("submitit")
        self.module.AutoExecutor, self.module.SlurmJob = AutoExecutor, SlurmJob

    def run_all(self):
        for entry in self.jobs.values():
            if entry[1] == "PENDING":
                fn, args = entry[0].call
                fn(*args)
                entry[1] = "COMPLETED"


def test_the_slurm_path_submits_each_run_once_and_writes_the_report_once_all_are_done(
    grid, tmp_path, monkeypatch
):
    fake = FakeSlurm()
    monkeypatch.setitem(sys.modules, "submitit", fake.module)
    _, argv, _ = grid
    argv = [
        *argv,
        f"--out_dir={tmp_path / 'grid'}",
        "--launcher=slurm",
        "--slurm_gpus_per_job=0",
        "--rope_methods=",
    ]
    assert compare.main(argv, progress=False) == {} and fake.submitted == 4  # queued
    assert compare.main(argv, progress=False) == {} and fake.submitted == 4  # still queued: not again
    assert not (tmp_path / "grid" / "report.md").exists()
    fake.run_all()
    results = compare.main(argv, progress=False)  # collects
    assert fake.submitted == 4 and (tmp_path / "grid" / "report.md").is_file()
    assert sorted((r["label"], r["seed"]) for r in results["runs"]) == [
        ("learned", 1337),
        ("learned", 1338),
        ("rope", 1337),
        ("rope", 1338),
    ]


def test_slurm_without_a_cluster_is_one_line(grid, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _, argv, _ = grid
    with pytest.raises(ValueError, match="launcher=slurm needs a SLURM cluster"):
        compare.main([*argv, f"--out_dir={tmp_path / 'grid'}", "--launcher=slurm"], progress=False)


def test_eval_only_of_one_run_of_a_grid_never_writes_over_the_grids_report(grid, tmp_path):
    root = grid[0]
    before = (root / "grid" / "report.md").read_bytes()
    with pytest.raises(ValueError, match=r"lists runs, not one grid folder: .*--report_dir="):
        compare.main([f"--eval_only={root / 'grid' / 'rope-seed0'}"], progress=False)
    with pytest.raises(ValueError, match="--report_dir="):
        compare.main(
            [f"--eval_only={root / 'grid' / 'rope-seed0'},{root / 'grid' / 'learned-seed0'}"], progress=False
        )
    assert (root / "grid" / "report.md").read_bytes() == before


def test_every_grid_is_checked_before_any_run_trains(tmp_path):
    """A task's block_size decides random_positions; task_plain in an override is a clear error; an
    evaluation that cannot run and devices that are not there are refused before a run dir exists."""
    argv = [*TINY, "--dataset=task:copy,addition", "--task_n_train=2", f"--out_dir={tmp_path / 't'}"]
    argv += ["--n_seeds=1", "--task_problems=5"]
    entries = ["--block_size=64", "--schemes=rope:random_positions=30"]  # M > each task's block, < 64
    configs = parse_config([*argv, *entries], ModelConfig, TrainConfig, EvalConfig, CompareConfig)
    assert [g.model.block_size for g in compare.plan_grids(*configs)] == [13, 21]
    wide = parse_config(
        [*argv, *entries, "--task_width=8"], ModelConfig, TrainConfig, EvalConfig, CompareConfig
    )
    assert [g.model.block_size for g in compare.plan_grids(*wide)] == [
        13,
        27,
    ]  # 8 digits wide, copy as it was
    with pytest.raises(
        ValueError, match="task_plain is an option of task:addition, not of dataset='task:copy'"
    ):
        compare.main([*argv, '--task_overrides={"copy": {"task_plain": true}}'], progress=False)
    text = [*TINY, "--dataset=pydocs", "--block_size=8192", f"--out_dir={tmp_path / 'p'}"]
    with pytest.raises(ValueError, match=r"val split has .* tokens, fewer than"):
        compare.main([*text, f"--data_dir={tmp_path / 'data'}"], progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            compare.main([*argv, "--devices=cuda:0", "--jobs=2"], progress=False)
    assert not list(tmp_path.rglob("ckpt.pt")) and not list(tmp_path.rglob("config.json"))  # no run dirs


def test_a_tuned_grid_reports_each_entrys_rate_and_resumes_without_training(tmp_path, monkeypatch):
    argv = [*tiny_grid(tmp_path), "--rope_methods=", "--n_seeds=1", "--tune_lrs=1e-3,1e-2"]
    results = compare.main(argv, progress=False)
    assert set(results["tuning"]) == {"learned", "rope"}
    assert len(list((tmp_path / "grid" / "tune").iterdir())) == 4
    for run in results["runs"]:
        assert run["configs"]["train"]["learning_rate"] == results["tuning"][run["label"]]["chosen"]
    assert "## Learning rate, chosen per entry" in (tmp_path / "grid" / "report.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare, "train", no_training)
    assert compare.main(argv, progress=False)["tuning"] == results["tuning"]
