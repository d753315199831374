"""launch.py: the slots of a local grid (cores split, capped at the core count, one GPU each), the worker
pool (results in job order, whatever order they finish in, each job in its own process), submitit."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import grid_process, group_is_empty, tiny_grid, wait_for

import launch
from cli import Stopped
from rundir import read_metrics


def work(job, device, log=False):
    """A job for the pool: later jobs finish first; reports where and in which process it ran."""
    time.sleep(0.3 - 0.1 * job)
    return {"job": job, "device": device, "log": log, "pid": os.getpid()}


def test_slots_split_the_cores_and_cap_at_their_count(monkeypatch, capsys):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert launch.plan_slots(1, "cpu") == [launch.Slot("cpu", None)]  # one job: torch's default threads
    assert launch.plan_slots(4, "cpu") == [launch.Slot("cpu", 2)] * 4
    assert launch.plan_slots(2, "cpu", threads=1) == [launch.Slot("cpu", 1)] * 2
    assert launch.plan_slots(16, "cpu") == [launch.Slot("cpu", 1)] * 8
    assert "jobs=16 > 8 cores would only slow every run down" in capsys.readouterr().err
    monkeypatch.setattr(launch, "auto_device", lambda d: d)  # as if this machine had two GPUs
    slots = launch.plan_slots(3, "cuda", devices=("cuda:0", "cuda:1"))
    assert [s.device for s in slots] == ["cuda:0", "cuda:1"] and "2 GPUs" in capsys.readouterr().err


def test_pool_runs_each_job_in_its_own_process_and_keeps_the_order():
    slots = [launch.Slot("cpu", 1), launch.Slot("cpu", 1)]
    results = launch.run_local(work, [0, 1, 2], slots, ["a", "b", "c"], progress=False)
    assert [r["job"] for r in results] == [0, 1, 2] and all(r["log"] for r in results)
    assert os.getpid() not in {r["pid"] for r in results}  # worker processes, not this one
    inline = launch.run_local(work, [0, 1], [launch.Slot("cpu")], ["a", "b"], progress=False)
    assert {r["pid"] for r in inline} == {os.getpid()} and all(r["log"] for r in inline)


def mark(job, device, log=False):
    """A job that leaves a trace of where it ran: tmp/<job>.json with its process id and thread count."""
    folder, i = job
    (Path(folder) / f"{i}.json").write_text(
        json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads()})
    )


def test_submitit_local_executor_runs_the_jobs_with_their_thread_budget(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    here = Path(__file__).parent  # the job's process imports this module to find `mark`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), str(here.parent)]))
    jobs = [(str(tmp_path), i) for i in range(3)]
    slots = [launch.Slot("cpu", 1), launch.Slot("cpu", 1)]
    done = launch.run_submitit(
        mark,
        jobs,
        ["a", "b", "c"],
        [False, True, False],
        tmp_path / "submitit",
        "submitit_local",
        {"timeout_min": 5},
        "cpu",
        True,
        slots,
    )
    assert done and sorted(p.name for p in tmp_path.glob("*.json")) == ["0.json", "2.json"]  # b was done
    traces = [json.loads((tmp_path / f"{i}.json").read_text()) for i in (0, 2)]
    assert all(t["threads"] == 1 for t in traces) and os.getpid() not in {t["pid"] for t in traces}


def test_a_stopped_submitit_job_ends_the_grid_as_a_stop(tmp_path, monkeypatch):
    """Ctrl-C under submitit's local executor: the job saves and stops; the grid exits as a stop (130, the way
    on), not with submitit's UncompletedJobError."""

    class UncompletedJobError(RuntimeError):
        pass

    class Job:
        def result(self):
            raise UncompletedJobError("Job 1 (task: 0) failed ... KeyboardInterrupt")

    class AutoExecutor:
        def __init__(self, folder, cluster):
            pass

        def update_parameters(self, **params):
            pass

        def map_array(self, fn, *iterables):
            return [Job() for _ in iterables[0]]

    fake = type(sys)("submitit")
    fake.AutoExecutor = AutoExecutor
    fake.core = type(sys)("submitit.core")
    fake.core.utils = type(sys)("submitit.core.utils")
    fake.core.utils.UncompletedJobError = UncompletedJobError
    monkeypatch.setitem(sys.modules, "submitit", fake)
    with pytest.raises(Stopped):
        launch.run_submitit(
            mark, [(str(tmp_path), 0)], ["a"], [False], tmp_path, "submitit_local", {}, "cpu", True, []
        )


# --- grids whose workers never outlive them ------------------------------------------------------------


def test_ctrl_c_stops_a_parallel_grid_and_the_same_command_resumes_it(tmp_path):
    """Ctrl-C reaches the grid and its workers (one process group); every run stops with a checkpoint,
    and the same command finishes the grid: every run once, trained to the end, its log rows unique."""
    argv = [
        *tiny_grid(tmp_path),
        "--jobs=2",
        "--threads=1",
        "--max_iters=400",
        "--lr_decay_iters=400",
        "--eval_interval=50",
        "--rope_methods=",
    ]
    proc = grid_process(argv)
    wait_for(lambda: list((tmp_path / "grid").glob("*/ckpt.pt")))
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted; the same command resumes the grid" in err, err[-2000:]
    assert "Traceback" not in err
    proc = grid_process(argv)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    results = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert sorted((r["label"], r["seed"]) for r in results["runs"]) == [
        ("learned", 1337),
        ("learned", 1338),
        ("rope", 1337),
        ("rope", 1338),
    ]
    for run in results["runs"]:
        assert run["summary"]["iters"] == 400 and not run["summary"]["interrupted"]
        iters = [r["iter"] for r in read_metrics(run["run_dir"]) if "val_loss" in r]
        assert iters == list(range(0, 401, 50))


def test_a_second_grid_is_refused_and_sigterm_stops_every_worker(tmp_path):
    """Two compare.py on one grid: the second is refused at once. SIGTERM to the first (its process only):
    the workers get it too, save, and the grid exits 143 with no process of it left."""
    argv = [*tiny_grid(tmp_path), "--jobs=2", "--threads=1", "--max_iters=100000", "--lr_decay_iters=100000"]
    argv += ["--eval_interval=50", "--rope_methods="]
    proc = grid_process(argv)
    wait_for(lambda: len(list((tmp_path / "grid").glob("*/ckpt.pt"))) == 2)
    second = grid_process(argv)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1 and f"is in use by pid {proc.pid}" in err, err
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted; the same command resumes the grid" in err, err[-2000:]
    wait_for(lambda: group_is_empty(proc.pid), timeout=10)
    for ckpt in (tmp_path / "grid").glob("*/ckpt.pt"):
        assert torch.load(ckpt, weights_only=True)["iter_num"] > 0


def test_a_killed_worker_is_one_error_line_naming_its_run(tmp_path):
    argv = [*tiny_grid(tmp_path), "--jobs=2", "--threads=1", "--max_iters=100000", "--lr_decay_iters=100000"]
    argv += ["--eval_interval=50", "--rope_methods="]
    proc = grid_process(argv)
    wait_for(lambda: len(list((tmp_path / "grid").glob("*/ckpt.pt"))) == 2)
    pid = json.loads((tmp_path / "grid" / "learned-seed0" / ".lock").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.startswith(
        "error: a worker process died (killed, or out of memory) while"
    ), err[-2000:]
    assert "the same command resumes the grid" in err and "Traceback" not in err
    wait_for(lambda: group_is_empty(proc.pid), timeout=30)
