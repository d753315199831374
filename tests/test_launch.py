"""launch.py: the slots of a local grid (cores split, capped at the core count, one GPU each), the worker
pool (results in job order, whatever order they finish in, each job in its own process), submitit."""

import json
import os
import time
from pathlib import Path

import pytest
import torch

import launch


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
    done = launch.run_submitit(mark, jobs, ["a", "b", "c"], [False, True, False], tmp_path / "submitit",
                               "submitit_local", {"timeout_min": 5}, "cpu", True, slots)  # fmt: skip
    assert done and sorted(p.name for p in tmp_path.glob("*.json")) == ["0.json", "2.json"]  # b was done
    traces = [json.loads((tmp_path / f"{i}.json").read_text()) for i in (0, 2)]
    assert all(t["threads"] == 1 for t in traces) and os.getpid() not in {t["pid"] for t in traces}
