"""Where a grid's runs execute: in this process one after another, N at a time in worker processes of this
machine (its cores or GPUs split between them), or as jobs of a SLURM cluster through submitit.

compare.py hands over a function and its jobs; every job does its own bookkeeping in its run dir (the grid's
state lives there, not here), so any launcher can stop at any point and the same command resumes. Workers
never outlive the grid: they share its process group (a terminal's Ctrl-C reaches them all), SIGTERM and
SIGHUP sent to the grid are passed on to them, the grid waits for them to save and stop, and a worker whose
grid died (kill -9) stops and exits by itself.
"""

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from cli import Stopped
from runtime import auto_device

LAUNCHERS = ("local", "slurm", "submitit_local")  # submitit_local: submitit's local executor (tests, a box)
QUEUED = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED")  # SLURM's live states


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its device and how many threads it may use (None: torch's default)."""

    device: str
    threads: int | None = None


def plan_slots(
    jobs: int, device: str, devices: tuple[str, ...] = (), threads: int | None = None
) -> list[Slot]:
    """The slots of `jobs` parallel workers. On CUDA, one GPU each from `devices` (() : all visible), each
    checked to be there. On the CPU the cores are split, `threads` each (None: cores // jobs, or torch's
    default for a single job); jobs past the core count would only make every run slower: capped, with a
    warning."""
    if device.startswith("cuda") or devices:
        gpus = [auto_device(d) for d in devices] or [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if not gpus:
            raise ValueError(f"device={device!r} asks for GPUs but none is visible; use --device=cpu")
        if jobs > len(gpus):
            print(f"warning: jobs={jobs} > {len(gpus)} GPUs; running {len(gpus)} at once", file=sys.stderr)
        return [Slot(gpu, threads) for gpu in gpus[: min(jobs, len(gpus))]]
    cores = os.cpu_count() or 1
    if jobs > cores:
        print(
            f"warning: jobs={jobs} > {cores} cores would only slow every run down; running {cores} at once",
            file=sys.stderr,
        )
        jobs = cores
    if threads is None and jobs > 1:
        threads = cores // jobs
    return [Slot(device, threads) for _ in range(jobs)]


_busy = threading.Event()  # in a worker: set while it runs a job


def _watch_parent(parent: int) -> None:
    """In a worker: once the grid's process is gone (killed), stop the job in progress as SIGTERM would (it
    saves its checkpoint), then exit instead of waiting for work that will never come."""

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        if _busy.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            while _busy.is_set():
                time.sleep(0.2)
        os._exit(143)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _in_worker(fn, job, slot: Slot):
    if slot.threads:
        torch.set_num_threads(slot.threads)
    _busy.set()
    try:
        return fn(job, slot.device, log=True)
    except (
        KeyboardInterrupt
    ):  # stopped (and saved): the grid is ending, so is this worker, once its answer left
        threading.Thread(target=lambda: (time.sleep(1.0), os._exit(130)), daemon=True).start()
        raise
    finally:
        _busy.clear()


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP raise Stopped in this (the main) thread for the block, as Ctrl-C raises
    KeyboardInterrupt, so that the grid can pass them on and wait."""

    def handle(signum, frame):
        raise Stopped(signum)

    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    main = threading.current_thread() is threading.main_thread()
    previous = {getattr(signal, s): signal.signal(getattr(signal, s), handle) for s in names} if main else {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_local(fn, jobs: list, slots: list[Slot], names: list[str], progress: bool = True) -> list:
    """fn(job, device, log=True) for every job, results in job order. One slot: in this process, as a plain
    loop. More: at most one job per slot at a time, each in a spawned worker process; a finished job frees
    its slot for the next. One bar for the grid (with an ETA) and a line per finished job. A stop (Ctrl-C,
    SIGTERM, SIGHUP) reaches every worker, each saves and stops, and the grid raises once they are done; a
    worker that dies is one error naming its run."""
    quiet = not (progress and sys.stderr.isatty())
    bar = tqdm(total=len(jobs), desc="grid", disable=quiet, dynamic_ncols=True, file=sys.stderr)
    results = [None] * len(jobs)
    if len(slots) == 1:
        if slots[0].threads:
            torch.set_num_threads(slots[0].threads)
        with bar:
            for i, job in enumerate(jobs):
                bar.set_postfix_str(names[i])
                results[i] = fn(job, slots[0].device, log=True)
                bar.update(1)
                tqdm.write(f"done: {names[i]}", file=sys.stdout)
        return results
    pending, running, free = list(range(len(jobs))), {}, list(slots)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    # A worker killed mid-job leaves the pool's semaphore to multiprocessing's resource tracker, which would
    # warn about it at exit: the error line already says what happened. (The tracker takes its -W options.)
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    pool = cf.ProcessPoolExecutor(
        len(slots), mp_context=context, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    with bar, _signals_raise():
        try:
            while pending or running:
                while pending and free:
                    i, slot = pending.pop(0), free.pop(0)
                    running[pool.submit(_in_worker, fn, jobs[i], slot)] = (i, slot)
                done, _ = cf.wait(running, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                died = [p for p in pool._processes.values() if p.exitcode not in (None, 0)]
                if died or any(isinstance(f.exception(), cf.process.BrokenProcessPool) for f in done):
                    # the pool does not always notice a worker killed by a signal: checked here too
                    runs = ", ".join(names[i] for i, _ in running.values())
                    raise ValueError(
                        f"a worker process died (killed, or out of memory) while the grid ran {runs}; the "
                        "others were stopped, and the same command resumes the grid"
                    )
                for future in done:
                    i, slot = running.pop(future)
                    results[i] = future.result()  # a job's error (or its stop) ends the grid here
                    free.append(slot)
                    bar.update(1)
                    tqdm.write(f"done: {names[i]} ({slot.device})", file=sys.stdout)
        except BaseException:
            _stop_workers(pool)
            raise
    pool.shutdown(wait=True)
    return results


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Every worker gets SIGTERM (a repeat of a signal it already had is ignored), saves and exits; wait for
    them (a stopped worker exits by itself), then let the pool go."""
    workers = list(pool._processes.values())
    for p in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    for p in workers:
        p.join(timeout=600)
        if p.is_alive():  # stuck: nothing left to save
            p.kill()
            p.join()
    pool.shutdown(wait=False, cancel_futures=True)


def _submitit_job(fn, job, device: str, threads: int | None):
    """A submitit job: the run with its thread budget, its output in its run dir's train.log."""
    if threads:
        torch.set_num_threads(threads)
    return fn(job, device, log=True)


def run_submitit(
    fn,
    jobs: list,
    names: list[str],
    done: list[bool],
    folder: Path,
    launcher: str,
    params: dict,
    device: str,
    wait: bool,
    slots: list[Slot],
) -> bool:
    """Run the jobs not `done` yet as submitit jobs, SLURM's (launcher=slurm) or submitit's local executor's.

    SLURM: the job ids are kept in folder/submitted.json, so a re-run never submits again a run that is
    queued or running, and resubmits (saying so) one whose job ended without finishing it (it resumes from
    its checkpoint); with `wait` false it returns once the jobs are queued. submitit_local runs at most
    len(slots) jobs at a time with their thread budgets, and waits. Returns whether every job is done now
    (the caller reads their records from their run dirs).
    """
    try:
        import submitit
    except ImportError:
        raise ValueError(f"launcher={launcher} needs submitit: pip install submitit") from None
    folder.mkdir(parents=True, exist_ok=True)
    slurm = launcher == "slurm"
    state_file = folder / "submitted.json"
    submitted = json.loads(state_file.read_text()) if slurm and state_file.is_file() else {}
    alive = {}  # what an earlier invocation queued and SLURM still has
    for name, is_done in zip(names, done, strict=True):
        if is_done or name not in submitted:
            continue
        state = submitit.SlurmJob(folder, submitted[name]).state
        if state in QUEUED:
            alive[name] = submitted[name]
        else:
            print(
                f"{name}: SLURM job {submitted[name]} ended {state} without finishing it; resubmitting "
                f"(its log: {folder}/{submitted[name]}_0_log.err)",
                file=sys.stderr,
            )
    todo = [(n, j) for n, j, d in zip(names, jobs, done, strict=True) if not d and n not in alive]
    if not todo:
        return not alive
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if slurm else "local")
    except RuntimeError as e:  # "Could not detect srun": not on a SLURM cluster
        raise ValueError(f"launcher=slurm needs a SLURM cluster ({e}); use --launcher=local") from None
    executor.update_parameters(**params)
    threads = slots[0].threads if slots else None
    if slurm:
        futures = executor.map_array(
            _submitit_job, [fn] * len(todo), [j for _, j in todo], [device] * len(todo), [threads] * len(todo)
        )
        state_file.write_text(
            json.dumps(alive | {n: f.job_id for (n, _), f in zip(todo, futures, strict=True)})
        )
        print(f"submitted {len(todo)} run(s) to SLURM (logs in {folder})", file=sys.stderr)
        if not wait:
            return False
        for f in futures:
            f.result()
        return not alive
    at_once = max(1, len(slots))
    try:
        for start in range(0, len(todo), at_once):
            chunk = todo[start : start + at_once]
            futures = executor.map_array(
                _submitit_job,
                [fn] * len(chunk),
                [j for _, j in chunk],
                [device] * len(chunk),
                [threads] * len(chunk),
            )
            for f in futures:
                f.result()
    except submitit.core.utils.UncompletedJobError as e:
        if "KeyboardInterrupt" in str(e) or "Stopped" in str(e):
            raise Stopped(2) from None
        raise ValueError(f"a submitit job failed: {str(e).splitlines()[0]}; its log is in {folder}") from None
    return True
