"""Compare positional encodings: train a grid (entries x seeds, optionally x budgets, each entry at its own
tuned learning rate), evaluate every run (evaluate.py: length extrapolation, per-position loss, context
extension; task accuracy), and write report.md, results.json, CSVs and plots (report.py).

    python compare.py                             # config/ablation_quick.py: 9 schemes x 2 seeds, small
    python compare.py config/ablation_cpu.py      # 9 schemes x 3 seeds, Tiny Shakespeare (char), CPU
    python compare.py config/ablation_cpu.py --jobs=2   # 2 runs at a time (launch.py; SLURM: --launcher)
    python compare.py --eval_only=out/GRID [--report_dir=DIR] [--key=value ...]   # runs trained before
    python compare.py config/tasks_cpu.py         # length generalization: a grid per task of dataset=task:A,B

Every run is train.py's `train` with one config except the entry's scheme, knobs and learning rate, so all
entries see the same batches, eval batches and init recipe; replicate k uses seed + k, data_seed + k.
What a grid's runs are, the tuning phase and the budget axis: grid.py. An interrupted grid resumes:
finished runs are skipped, an unfinished one continues from its checkpoint. The grid's folder is locked
while a command works in it, and each run's while it trains.
"""

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from cli import Stopped, parse_cli, run_main
from configurator import CONFIG_DIR
from data.sources import load_source
from evaluate import EvalConfig, evaluate_run, val_region
from files import folder_lock
from grid import CompareConfig, Job, choose_lrs, eval_groups, label_of, plan_runs
from launch import plan_slots, run_local, run_submitit
from model import ModelConfig
from report import write_report
from rundir import CKPT, CONFIG, load_run, lock, read_checkpoint, read_record, read_summary, write_record
from runtime import auto_device
from train import train
from training import TrainConfig

DEFAULT_PRESET = CONFIG_DIR / "ablation_quick.py"


def _trained(job: Job, tcfg: TrainConfig, log: bool) -> dict:
    """The run's summary: read back if its checkpoint is at max_iters, else trained (from its checkpoint)."""
    path = Path(tcfg.out_dir) / CKPT
    if path.is_file() and read_checkpoint(path)[0]["iter_num"] == tcfg.max_iters:
        return read_summary(tcfg.out_dir)
    resume = path.is_file()  # without a checkpoint there is nothing to keep
    summary = train(
        job.model, dataclasses.replace(tcfg, resume=resume, overwrite=not resume), progress=not log
    )
    if summary["interrupted"]:
        raise Stopped(summary["interrupted"])
    return summary


def run_job(job: Job, device: str | None = None, log: bool = False) -> dict:
    """Train the run unless it is done (resuming a checkpoint), evaluate it unless its evaluation is up to
    date, keep both in its compare.json, and return that record, all while holding the run's lock.
    `device` overrides the run's device (a worker's GPU); `log` sends the output to the run's train.log."""
    run_dir = Path(job.train.out_dir)
    with lock(run_dir), contextlib.ExitStack() as stack:
        if log:
            out = stack.enter_context(open(run_dir / "train.log", "a", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        tcfg = dataclasses.replace(job.train, device=device or job.train.device)
        record = read_record(run_dir)
        if record is None:
            summary = _trained(job, tcfg, log)
            record = {"label": job.label, "seed": tcfg.seed, "configs": job.configs, "summary": summary}
            write_record(run_dir, record)
        if record.get("eval_settings") != (settings := job.ev.settings(job.model.block_size)):
            where = auto_device(tcfg.device)
            evaluation = evaluate_run(load_run(run_dir, where), job.ev, where, job.data_dir)
            record |= evaluation | {"eval_settings": settings}
            write_record(run_dir, record)
    return record | {"run_dir": str(run_dir)}  # where it is now: the grid may have moved


@dataclasses.dataclass(frozen=True)
class Grid:
    """One grid of a command: its dataset's base configs (the model's vocabulary and block_size from the
    data) and where its report goes."""

    name: str
    model: ModelConfig
    train: TrainConfig
    out: Path


def plan_grids(model_cfg, train_cfg: TrainConfig, ev: EvalConfig, cmp: CompareConfig) -> list[Grid]:
    """One grid for a corpus, one per task of dataset=task:A,B,... (each in its own folder), with every check
    that can fail done now, before any run trains: the data (prepared once), the entries against the model
    the data implies (a task's block_size), the evaluation against the validation text, the run dirs."""
    tasks, grids = train_cfg.task_names(), []
    for task in tasks if len(tasks) > 1 else [None]:
        tcfg, out = train_cfg, Path(cmp.report_dir or train_cfg.out_dir)
        if task:
            folder = Path(train_cfg.out_dir) / task
            keys = {"dataset": f"task:{task}", "out_dir": str(folder), **train_cfg.addition_options(task)}
            tcfg = dataclasses.replace(train_cfg, **(keys | (cmp.task_overrides or {}).get(task, {})))
            out = Path(cmp.report_dir) / task if cmp.report_dir else folder
        source = load_source(tcfg, model_cfg)
        base = dataclasses.replace(
            model_cfg, vocab_size=source.meta["vocab_size"], block_size=source.block_size
        )
        if not tcfg.task_names():
            val_region(tcfg, source.meta, base.block_size, ev, tcfg.data_dir)
        for job in plan_runs(base, tcfg, ev, cmp, tuning=bool(cmp.tune_lrs)):  # (the grid's wait for rates)
            load_source(job.train, job.model)  # each entry's ids against its scheme, table and lengths
        grids.append(Grid(task or tcfg.dataset, base, tcfg, out))
    return grids


def launch(jobs: list[Job], cmp: CompareConfig, device: str, progress=True) -> list[dict] | None:
    """Train and evaluate every job not done yet with the chosen launcher; the records (compare.json) of all,
    or None while SLURM still has some of them."""
    names = [
        f"{j.label} seed {j.train.seed}"
        + (f" lr {j.train.learning_rate:g}" if "tune" in j.train.out_dir else "")
        for j in jobs
    ]
    slots = (
        plan_slots(cmp.jobs, auto_device(device), cmp.devices, cmp.threads) if cmp.launcher != "slurm" else []
    )
    if cmp.launcher == "local":
        return run_local(run_job, jobs, slots, names, progress)
    params = {"timeout_min": cmp.slurm_time, "cpus_per_task": cmp.slurm_cpus_per_job, "name": "nanorope"}
    if cmp.launcher == "slurm":
        params |= {"gpus_per_node": cmp.slurm_gpus_per_job, "slurm_array_parallelism": cmp.slurm_parallelism}
        params |= {"slurm_partition": cmp.slurm_partition} if cmp.slurm_partition else {}
    job_device = "cuda" if cmp.launcher == "slurm" and cmp.slurm_gpus_per_job else device
    folder = Path(jobs[0].train.out_dir).parent / "submitit"
    done = [j.done() for j in jobs]
    if not run_submitit(
        run_job,
        jobs,
        [j.name for j in jobs],
        done,
        folder,
        cmp.launcher,
        params,
        job_device,
        cmp.slurm_wait,
        slots,
    ):
        print("the grid's report is written by the same command once every run is done", file=sys.stderr)
        return None
    return [read_record(j.train.out_dir) | {"run_dir": j.train.out_dir} for j in jobs]


def run_grid(grid: Grid, ev: EvalConfig, cmp: CompareConfig, progress=True) -> tuple[list, dict] | None:
    """The tuning phase if asked (each entry's learning rate chosen from its records), then the grid: its
    records and the tuning ({entry: {"tune_loss", "chosen"}}, {} without), or None while SLURM has runs."""
    tuning = {}
    if cmp.tune_lrs:
        records = launch(
            plan_runs(grid.model, grid.train, ev, cmp, tuning=True), cmp, grid.train.device, progress
        )
        if records is None:
            return None
        tuning = choose_lrs(records)
    chosen = {entry: t["chosen"] for entry, t in tuning.items()} or None
    records = launch(plan_runs(grid.model, grid.train, ev, cmp, chosen), cmp, grid.train.device, progress)
    return None if records is None else (records, tuning)


def _configs_of(run_dir: Path) -> dict:
    path = run_dir / CONFIG
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    _, mcfg, tcfg = read_checkpoint(run_dir / CKPT)
    return {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg)}


def eval_only(dirs: list[Path], ev: EvalConfig, train_cfg: TrainConfig, progress=True) -> list[dict]:
    """Evaluate runs trained before (each while holding its lock), after checking they can share a report."""
    configs = [_configs_of(d) for d in dirs]
    datasets = {c["train"]["dataset"] for c in configs}
    if any(d.startswith("task:") for d in datasets) and len(datasets) > 1:
        raise ValueError(f"eval_only runs of a task must all be of that task, got {sorted(datasets)}")
    if len({c["model"]["block_size"] for c in configs}) > 1:
        raise ValueError("eval_only runs must share one block_size (the table's rows are multiples of it)")
    records, device = [], auto_device(train_cfg.device)
    for d in tqdm(dirs, desc="eval", disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True):
        with lock(d):
            run = load_run(d, device)  # read once: evaluate_run gets it too
            _, mcfg, tcfg, _ = run
            old = read_record(d) or {}
            record = {
                "label": old.get("label", label_of(mcfg)),
                "seed": tcfg.seed,
                "summary": old.get("summary") or read_summary(d),
                "configs": {"model": mcfg.to_dict(), "train": dataclasses.asdict(tcfg)},
                "run_dir": str(d),  # where it is now, not where it was trained
            }
            # data_dir of this invocation: a checkpoint never decides where files are written
            records.append(record | evaluate_run(run, ev, device, train_cfg.data_dir))
    return records


def main(argv: list[str] | None = None, progress: bool = True) -> dict:
    """CLI entry (module docstring); returns what results.json holds (with several tasks: {task: results})."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if (not argv or argv[0].startswith("-")) and not any(a.startswith("--eval_only") for a in argv):
        argv.insert(0, os.path.relpath(DEFAULT_PRESET))  # config/ablation_quick.py, as a user would type it
    command = " ".join(["python compare.py", *argv])
    model_cfg, train_cfg, ev, cmp = parse_cli(
        argv, __doc__, ModelConfig, TrainConfig, EvalConfig, CompareConfig
    )
    settings = dataclasses.asdict(ev) | dataclasses.asdict(cmp)
    hint = "wait for it to end, or stop it (the same command resumes the grid)"
    results = {}
    if cmp.eval_only is not None:
        for out, dirs in eval_groups(cmp):
            t0 = time.perf_counter()
            with folder_lock(out, hint):
                records = eval_only(dirs, ev, train_cfg, progress)
                results[out.name] = write_report(records, settings, out, command, time.perf_counter() - t0)
        return next(iter(results.values())) if len(results) == 1 else results
    with folder_lock(train_cfg.out_dir, hint):
        grids = plan_grids(model_cfg, train_cfg, ev, cmp)
        for grid in grids:
            t0 = time.perf_counter()  # each grid's report gives its own time
            done = run_grid(grid, ev, cmp, progress)
            if done is not None:  # None: queued on SLURM
                records, tuning = done
                wall = time.perf_counter() - t0
                results[grid.name.removeprefix("task:")] = write_report(
                    records, settings, grid.out, command, wall, tuning
                )
    return next(iter(results.values()), {}) if len(grids) == 1 else results


if __name__ == "__main__":
    run_main(main, "the same command resumes the grid (finished runs and checkpoints are kept)")
