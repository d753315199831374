"""Where a grid's runs execute: in this process one after another, N at a time in worker processes of this
machine (its cores or GPUs split between them), or as jobs of a SLURM cluster through submitit.

compare.py hands over a function and its jobs; every job does its own bookkeeping in its run dir (the grid's
state lives there, not here), so any launcher can stop at any point and the same command resumes.
"""

import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

LAUNCHERS = ("local", "slurm", "submitit_local")  # submitit_local: submitit's local executor (tests, a box)


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its device and how many threads it may use (None: torch's default)."""

    device: str
    threads: int | None = None


def plan_slots(jobs: int, device: str, devices: str | None = None, threads: int | None = None) -> list[Slot]:
    """The slots of `jobs` parallel workers. On CUDA, one GPU each from `devices` ("cuda:0,cuda:1"; None:
    all visible). On the CPU the cores are split, `threads` each (None: cores // jobs, or torch's default
    for a single job); jobs past the core count would only make every run slower: capped, with a warning."""
    if device.startswith("cuda") or devices:
        gpus = [d.strip() for d in devices.split(",")] if devices else [f"cuda:{i}" for i in
                                                                       range(torch.cuda.device_count())]
        if not gpus:
            raise ValueError(f"device={device!r} asks for GPUs but none is visible; use --device=cpu")
        if jobs > len(gpus):
            print(f"warning: jobs={jobs} > {len(gpus)} GPUs; running {len(gpus)} at once", file=sys.stderr)
        return [Slot(gpu, threads) for gpu in gpus[: min(jobs, len(gpus))]]
    cores = os.cpu_count() or 1
    if jobs > cores:
        print(f"warning: jobs={jobs} > {cores} cores would only slow every run down; running {cores} at once",
              file=sys.stderr)  # fmt: skip
        jobs = cores
    if threads is None and jobs > 1:
        threads = cores // jobs
    return [Slot(device, threads) for _ in range(jobs)]


def _in_worker(fn, job, slot: Slot):
    if slot.threads:
        torch.set_num_threads(slot.threads)
    return fn(job, slot.device, log=True)


def run_local(fn, jobs: list, slots: list[Slot], names: list[str], progress: bool = True) -> list:
    """fn(job, device, log=...) for every job, results in job order. One slot: in this process, as a plain
    loop. More: at most one job per slot at a time, each in a spawned worker process; a finished job frees
    its slot for the next. One bar for the grid and a line per finished job. Ctrl-C reaches every worker
    (one process group), each stops cleanly, and KeyboardInterrupt is raised here once they are done."""
    bar = tqdm(total=len(jobs), desc="grid", disable=not progress, dynamic_ncols=True)
    results = [None] * len(jobs)
    if len(slots) == 1:
        if slots[0].threads:
            torch.set_num_threads(slots[0].threads)
        for i, job in enumerate(jobs):
            bar.set_postfix_str(names[i])
            results[i] = fn(job, slots[0].device, log=False)
            bar.update(1)
        bar.close()
        return results
    pending, running, free = list(range(len(jobs))), {}, list(slots)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    with cf.ProcessPoolExecutor(len(slots), mp_context=context) as pool:  # workers serve job after job
        try:
            while pending or running:
                while pending and free:
                    i, slot = pending.pop(0), free.pop(0)
                    running[pool.submit(_in_worker, fn, jobs[i], slot)] = (i, slot)
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    i, slot = running.pop(future)
                    results[i] = future.result()  # a job's error (or its Ctrl-C) ends the grid here
                    free.append(slot)
                    bar.update(1)
                    tqdm.write(f"done: {names[i]} ({slot.device})")
        except BaseException:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)  # the workers got the Ctrl-C too: let them save
            raise
        finally:
            bar.close()
    return results


def run_submitit(fn, jobs: list, names: list[str], folder: Path, launcher: str, params: dict, device: str,
                 wait: bool) -> list | None:
    """Submit the jobs as one submitit job array, SLURM's or (launcher=submitit_local) submitit's local
    executor's, and wait for their results, or (SLURM, wait=False) return None once they are queued. The
    SLURM job ids are kept in folder/submitted.json, so a re-run never submits again what is still queued
    or running; it returns None while any is."""
    try:
        import submitit
    except ImportError:
        raise ValueError(f"launcher={launcher} needs submitit: pip install submitit") from None
    folder.mkdir(parents=True, exist_ok=True)
    state_file, slurm = folder / "submitted.json", launcher == "slurm"
    submitted = json.loads(state_file.read_text()) if slurm and state_file.is_file() else {}
    queued = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING")
    alive = {}  # what an earlier invocation queued and SLURM still has
    for name, job_id in submitted.items():
        if name in names and submitit.SlurmJob(folder, job_id).state in queued:
            alive[name] = job_id
    todo = [(n, j) for n, j in zip(names, jobs, strict=True) if n not in alive]
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if slurm else "local")
    executor.update_parameters(**params)
    futures = []
    if todo:
        futures = executor.map_array(fn, [j for _, j in todo], [device] * len(todo), [True] * len(todo))
    if slurm:
        ids = {n: f.job_id for (n, _), f in zip(todo, futures, strict=True)}
        state_file.write_text(json.dumps(alive | ids))
    if alive or (slurm and not wait):
        return None
    return [f.result() for f in futures]
