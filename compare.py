"""Compare positional encodings: train a grid (schemes x seeds), evaluate every run (evaluate.py: length
extrapolation, per-position loss, context extension), write report.md, results.json, CSVs and plots
(report.py).

    python compare.py config/ablation_cpu.py     # 9 schemes x 3 seeds, Tiny Shakespeare (char), CPU
    python compare.py config/ablation_quick.py   # a small model, about a minute
    python compare.py config/ablation_cpu.py --jobs=2   # 2 runs at a time (launch.py; SLURM: --launcher)
    python compare.py --eval_only=out/RUN[,out/RUN2,GRID_DIR...] [--key=value ...]
    python compare.py config/tasks_cpu.py        # length generalization: a grid per task of dataset=task:A,B

Every run is train.py's `train` with one config except `pos_enc` and the entry's own knobs, so all
schemes see the same batches, eval batches and init recipe; replicate k uses seed + k, data_seed + k.
Runs live in out_dir/<entry>-seed<k>/ (a train.py run dir plus compare.json, the record of the run); an
interrupted grid resumes: finished runs are skipped, an unfinished one continues from its checkpoint.
Numbers are means over seeds ± sample standard deviation (ddof=1).
"""

import contextlib
import dataclasses
import itertools
import json
import os
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from configurator import check_ints, coerce, parse_cli, run_main
from data.sources import load_source
from data.tasks import TASKS
from evaluate import EvalConfig, evaluate_run
from files import write_json
from launch import LAUNCHERS, plan_slots, run_local, run_submitit
from model import POSITION_OPTIONS, ModelConfig
from positional import POS_ENCODINGS
from report import slug, write_report
from rundir import CKPT, load_run, read_summary
from runtime import auto_device
from train import train
from training import TrainConfig

RECORD = "compare.json"  # in each run dir: label, seed, configs, summary, evaluation
LOCATION_KEYS = ("out_dir", "data_dir", "device", "log", "tensorboard_dir")  # where it lives, ran, logs


@dataclass(frozen=True)
class CompareConfig:
    """What compare.py adds to ModelConfig, TrainConfig and EvalConfig (one flat --key=value namespace).

    Base-config knobs of one scheme (e.g. --rope_base) apply to the entries of that scheme only."""

    # pos_enc[:knob=value...] each, e.g. rope:rope_dim=16; by default every registered scheme
    schemes: str = "learned,sinusoidal,rope,alibi,none,t5,kerple,fire,cope,xpos"
    n_seeds: int = 3  # replicates per entry
    report_dir: str | None = None  # None: the grid's out_dir (eval_only: the runs' common parent)
    eval_only: str | None = None  # comma-separated run dirs or folders of run dirs: evaluate, do not train
    task_overrides: dict | None = None  # dataset=task:A,B: train keys per task, {"addition": {...}}
    jobs: int = 1  # runs at once on this machine, each in its own process (launcher=local)
    threads: int | None = None  # CPU threads per run; None: cores // jobs (jobs=1: torch's default)
    devices: str | None = None  # GPUs to spread the jobs over, one run each: cuda:0,cuda:1; None: all visible
    launcher: str = "local"  # local, slurm (submitit), submitit_local (submitit's local executor)
    slurm_partition: str | None = None  # launcher=slurm: the partition
    slurm_time: int = 60  # minutes per run (SLURM's time limit)
    slurm_gpus_per_job: int = 1  # 0: CPU jobs
    slurm_cpus_per_job: int = 4
    slurm_parallelism: int = 64  # runs of the job array at once
    slurm_wait: bool = False  # wait for the jobs and write the report; false: submit, re-run later to report

    def __post_init__(self):
        for entry in self.entries():
            parse_entry(entry)
        check_ints(self, ("n_seeds", "jobs", "slurm_time", "slurm_cpus_per_job", "slurm_parallelism"), 1)
        check_ints(self, ("slurm_gpus_per_job",), 0)
        if self.threads is not None:
            check_ints(self, ("threads",), 1)
        train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - {"dataset", "out_dir"}
        for task, keys in (self.task_overrides or {}).items():
            if task not in TASKS or not isinstance(keys, dict) or set(keys) - train_keys:
                raise ValueError(f"task_overrides must map tasks to train keys, got {task!r}: {keys!r}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.eval_only is not None and not self.eval_paths():
            raise ValueError(f"eval_only must list run dirs like out/RUN,out/RUN2, got {self.eval_only!r}")

    def entries(self) -> list[str]:
        """The grid's entries; two that would share a run dir (the same entry twice) are refused, as
        their seeds would be counted twice over."""
        entries = [e.strip() for e in self.schemes.split(",") if e.strip()]
        if not entries:
            raise ValueError(f"schemes must list at least one entry, got {self.schemes!r}")
        _refuse_duplicates("schemes", entries, slug)
        return entries

    def eval_paths(self) -> list[Path]:
        paths = [Path(p.strip()) for p in (self.eval_only or "").split(",") if p.strip()]
        _refuse_duplicates("eval_only", paths, lambda p: p.resolve())
        return paths


def _refuse_duplicates(key: str, items: list, identity) -> None:
    seen = {}
    for item in items:
        if (same := seen.setdefault(identity(item), item)) is not item:
            raise ValueError(f"{key} lists one run twice ({str(same)!r} and {str(item)!r}); give it once")


def parse_entry(entry: str) -> tuple[str, dict]:
    """'rope:rope_base=500' -> ('rope', {'rope_base': 500.0}): the scheme and the knobs the entry sets, its
    scheme's or a position option (model.POSITION_OPTIONS), typed. Their values are checked against the
    grid's config by scheme_config (some depend on it: random_positions > block_size)."""
    name, *pairs = entry.strip().split(":")
    if name not in POS_ENCODINGS:
        raise ValueError(f"scheme {name!r} in {entry!r} is not one of {sorted(POS_ENCODINGS)}")
    allowed = (*POS_ENCODINGS[name].knobs, *POSITION_OPTIONS)
    types_ = typing.get_type_hints(ModelConfig)
    knobs = {}
    for key, eq, value in (p.partition("=") for p in pairs):
        if not eq or key not in allowed:
            knobs_of = f"{name}'s knobs: {', '.join(allowed)}"
            raise ValueError(f"scheme entry {entry!r}: write pos_enc[:knob=value...]; {knobs_of}")
        knobs[key] = coerce(key, value, types_[key])
    return name, knobs


def scheme_config(base: ModelConfig, entry: str) -> ModelConfig:
    """`base` with the entry's pos_enc and knobs; base knobs that the scheme does not use are dropped."""
    name, knobs = parse_entry(entry)
    used = POS_ENCODINGS[name].knobs
    unused = {k: None for cls in POS_ENCODINGS.values() for k in cls.knobs if k not in used}
    try:
        return dataclasses.replace(base, pos_enc=name, **unused, **knobs)
    except ValueError as e:
        raise ValueError(f"scheme entry {entry!r}: {e}") from None


def label_of(cfg: ModelConfig) -> str:
    """The entry of a run trained elsewhere: pos_enc plus the knobs and position options it set."""
    defaults = ModelConfig.__dataclass_fields__
    keys = [*POS_ENCODINGS[cfg.pos_enc].knobs, *POSITION_OPTIONS]
    knobs = [
        f"{k}={json.dumps(getattr(cfg, k), separators=(',', ':'))}"
        for k in keys
        if getattr(cfg, k) != defaults[k].default
    ]
    return ":".join([cfg.pos_enc, *knobs])


def read_record(run_dir: Path) -> dict | None:
    path = run_dir / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def same_run(a: dict, b: dict) -> bool:
    """Whether two records' configs describe the same run, wherever each was stored."""
    def what(configs: dict) -> dict:
        train = {k: v for k, v in configs["train"].items() if k not in LOCATION_KEYS}
        return {"model": configs["model"], "train": train}

    return what(a) == what(b)


@dataclass(frozen=True)
class Job:
    """One (entry, seed) of a grid, all a worker process or a SLURM job needs to run it."""

    entry: str
    model: ModelConfig
    train: TrainConfig  # the run's own: out_dir, seed + k, data_seed + k
    ev: EvalConfig
    data_dir: str | None  # where evaluation prepares its data (the invocation's)

    @property
    def configs(self) -> dict:
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train)}


def run_job(job: Job, device: str | None = None, log: bool = False) -> dict:
    """Train the run unless it is done (resuming a checkpoint), evaluate it unless its evaluation is up to
    date, keep both in its compare.json, and return that record. `device` overrides the run's device (a
    worker's GPU); `log` sends the output to the run dir's train.log (worker processes)."""
    run_dir = Path(job.train.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if log:
            out = stack.enter_context(open(run_dir / "train.log", "a", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        tcfg = dataclasses.replace(job.train, device=device or job.train.device)
        record = read_record(run_dir)
        if record is None:
            resume = (run_dir / CKPT).is_file()  # without a checkpoint there is nothing to keep
            summary = train(job.model, dataclasses.replace(tcfg, resume=resume, overwrite=not resume),
                            progress=not log)  # fmt: skip
            if summary["interrupted"]:
                raise KeyboardInterrupt
            record = {"label": job.entry, "seed": tcfg.seed, "configs": job.configs, "summary": summary}
            write_json(run_dir / RECORD, record)
        if record.get("eval_settings") != (settings := job.ev.settings(job.model.block_size)):
            where = auto_device(tcfg.device)
            evaluation = evaluate_run(load_run(run_dir, where), job.ev, where, job.data_dir)
            record |= evaluation | {"eval_settings": settings}
            write_json(run_dir / RECORD, record)
    return record | {"run_dir": str(run_dir)}  # where it is now: the grid may have moved


def run_grid(model_cfg: ModelConfig, train_cfg: TrainConfig, ev: EvalConfig, cmp: CompareConfig,
             progress=True) -> list[dict] | None:
    """Train and evaluate every (entry, seed) not done yet with the chosen launcher; return the records
    (compare.json) of all, or None while SLURM still has some of them."""
    by_entry = {entry: scheme_config(model_cfg, entry) for entry in cmp.entries()}  # all errors before a run
    jobs, names = [], []
    for entry, k in itertools.product(cmp.entries(), range(cmp.n_seeds)):
        run_dir = Path(train_cfg.out_dir) / f"{slug(entry)}-seed{k}"
        board = Path(train_cfg.tensorboard_dir or Path(train_cfg.out_dir) / "tensorboard") / run_dir.name
        tcfg = dataclasses.replace(train_cfg, out_dir=str(run_dir), seed=train_cfg.seed + k,
                                   data_seed=train_cfg.data_seed + k, resume=False,
                                   tensorboard_dir=str(board) if train_cfg.log == "tensorboard" else None)
        job = Job(entry, by_entry[entry], tcfg, ev, train_cfg.data_dir)
        record = read_record(run_dir)
        if record and not same_run(record["configs"], job.configs):
            raise ValueError(
                f"{run_dir} holds a run of another config (its {RECORD}); use a new --out_dir for this grid"
            )
        jobs.append(job)
        names.append(f"{entry} seed {tcfg.seed}")
    load_source(train_cfg, model_cfg.block_size)  # prepare the data once, before any worker needs it
    if cmp.launcher == "local":
        slots = plan_slots(cmp.jobs, auto_device(train_cfg.device), cmp.devices, cmp.threads)
        return run_local(run_job, jobs, slots, names, progress)
    params = {"timeout_min": cmp.slurm_time, "cpus_per_task": cmp.slurm_cpus_per_job,
              "slurm_array_parallelism": cmp.slurm_parallelism, "name": "nanorope"}  # fmt: skip
    if cmp.launcher == "slurm":
        params |= {"gpus_per_node": cmp.slurm_gpus_per_job} | (
            {"slurm_partition": cmp.slurm_partition} if cmp.slurm_partition else {})  # fmt: skip
    device = "cuda" if cmp.launcher == "slurm" and cmp.slurm_gpus_per_job else train_cfg.device
    folder = Path(train_cfg.out_dir) / "submitit"
    records = run_submitit(run_job, jobs, [Path(j.train.out_dir).name for j in jobs], folder, cmp.launcher,
                           params, device, cmp.slurm_wait)  # fmt: skip
    if records is None:
        print(f"submitted to SLURM (logs in {folder}); run the same command again to collect the report "
              "once the jobs are done", file=sys.stderr)  # fmt: skip
    return records


def eval_only(cmp: CompareConfig, ev: EvalConfig, train_cfg: TrainConfig, progress=True) -> list[dict]:
    """Evaluate runs trained before; a path is a run dir (with ckpt.pt) or a folder of run dirs."""
    dirs = []
    for p in cmp.eval_paths():
        found = [p] if (p / CKPT).is_file() else sorted(d for d in p.glob("*/") if (d / CKPT).is_file())
        if not found:
            raise ValueError(f"{p} is neither a run dir (with {CKPT}) nor a folder of run dirs")
        dirs += found
    _refuse_duplicates("eval_only", dirs, lambda p: p.resolve())  # a folder and a run inside it
    records, device = [], auto_device(train_cfg.device)
    for d in tqdm(dirs, desc="eval", disable=not progress, dynamic_ncols=True):
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
    datasets = {r["configs"]["train"]["dataset"] for r in records}
    if any(d.startswith("task:") for d in datasets) and len(datasets) > 1:
        raise ValueError(f"eval_only runs of a task must all be of that task, got {sorted(datasets)}")
    if len({r["configs"]["model"]["block_size"] for r in records}) > 1:
        raise ValueError("eval_only runs must share one block_size (the table's rows are multiples of it)")
    return records


def main(argv: list[str] | None = None, progress: bool = True) -> dict:
    """CLI entry (module docstring); returns what results.json holds (with tasks: {task: results})."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python compare.py", *argv])
    types_ = (ModelConfig, TrainConfig, EvalConfig, CompareConfig)
    model_cfg, train_cfg, ev, cmp = parse_cli(argv, __doc__, *types_)
    t0 = time.perf_counter()
    settings = dataclasses.asdict(ev) | dataclasses.asdict(cmp)
    if cmp.eval_only:
        records = eval_only(cmp, ev, train_cfg, progress)
        parents = [Path(r["run_dir"]).resolve().parent for r in records]
        out = cmp.report_dir or os.path.commonpath(parents)
        return write_report(records, settings, Path(out), command, time.perf_counter() - t0)
    tasks = train_cfg.task_names()
    if len(tasks) < 2:
        records = run_grid(model_cfg, train_cfg, ev, cmp, progress)
        if records is None:  # queued on SLURM
            return {}
        out = cmp.report_dir or train_cfg.out_dir
        return write_report(records, settings, Path(out), command, time.perf_counter() - t0)
    grids = {}  # dataset=task:A,B,...: one grid per task, each in its own folder with its own report
    for task in tasks:
        t0 = time.perf_counter()  # each task's report gives its own time
        folder = Path(train_cfg.out_dir) / task
        plain = train_cfg.task_plain and task == "addition"
        overrides = (cmp.task_overrides or {}).get(task, {})
        tcfg = dataclasses.replace(train_cfg, dataset=f"task:{task}", out_dir=str(folder), task_plain=plain,
                                   **overrides)  # fmt: skip
        records = run_grid(model_cfg, tcfg, ev, cmp, progress)
        if records is not None:  # None: queued on SLURM
            out = Path(cmp.report_dir) / task if cmp.report_dir else folder
            grids[task] = write_report(records, settings, out, command, time.perf_counter() - t0)
    return grids


if __name__ == "__main__":
    run_main(main, "the same command resumes the grid (finished runs and checkpoints are kept)")
