"""Compare positional encodings: train a grid (schemes x seeds), evaluate every run (evaluate.py: length
extrapolation, per-position loss, context extension; task accuracy), write report.md, results.json, CSVs
and plots (report.py).

    python compare.py                             # config/ablation_quick.py: 9 schemes x 2 seeds, small
    python compare.py config/ablation_cpu.py      # 9 schemes x 3 seeds, Tiny Shakespeare (char), CPU
    python compare.py config/ablation_cpu.py --jobs=2   # 2 runs at a time (launch.py; SLURM: --launcher)
    python compare.py --eval_only=out/GRID [--report_dir=DIR] [--key=value ...]   # runs trained before
    python compare.py config/tasks_cpu.py         # length generalization: a grid per task of dataset=task:A,B

Every run is train.py's `train` with one config except `pos_enc` and the entry's own knobs, so all
schemes see the same batches, eval batches and init recipe; replicate k uses seed + k, data_seed + k.
Runs live in out_dir/<entry>-seed<k>/ (a train.py run dir plus compare.json, the record of the run); an
interrupted grid resumes: finished runs are skipped, an unfinished one continues from its checkpoint.
The grid's folder is locked while a command works in it, and each run's while it trains.
"""

import contextlib
import dataclasses
import itertools
import json
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cli import Stopped, parse_cli, run_main
from configurator import CONFIG_DIR, Config, check_ints, coerce, split_list, unknown_key
from data.sources import load_source
from data.tasks import TASKS
from evaluate import EvalConfig, evaluate_run, val_region
from files import folder_lock
from launch import LAUNCHERS, plan_slots, run_local, run_submitit
from model import POSITION_OPTIONS, ModelConfig
from positional import POS_ENCODINGS
from report import slug, write_report
from rundir import CKPT, CONFIG, load_run, lock, read_checkpoint, read_record, read_summary, write_record
from runtime import auto_device
from train import train
from training import TrainConfig

DEFAULT_PRESET = CONFIG_DIR / "ablation_quick.py"
LOCATION_KEYS = ("out_dir", "data_dir", "device", "log", "tensorboard_dir", "verbose")  # where, not what
SCHEMES = ("learned", "sinusoidal", "rope", "alibi", "none", "t5", "kerple", "fire", "cope", "xpos")


@dataclass(frozen=True)
class CompareConfig(Config):
    """What compare.py adds to ModelConfig, TrainConfig and EvalConfig (one flat --key=value namespace).
    Base-config knobs of one scheme (e.g. --rope_base) apply to the entries of that scheme only."""

    # --- grid
    schemes: tuple[str, ...] = (
        SCHEMES  # entries pos_enc[:knob=value...], e.g. rope:rope_dim=16 (lists in [ ])
    )
    n_seeds: int = 3  # replicates per entry
    report_dir: str | None = None  # None: the grid's out_dir (eval_only: the one grid folder given)
    eval_only: tuple[str, ...] | None = None  # run dirs or folders of run dirs: evaluate, do not train
    task_overrides: dict | None = None  # dataset=task:A,B: train keys per task, {"addition": {...}}
    # --- launch
    jobs: int = 1  # runs at once on this machine, each in its own process (launcher=local)
    threads: int | None = None  # CPU threads per run; None: cores // jobs (jobs=1: torch's default)
    devices: tuple[str, ...] = ()  # GPUs to spread the jobs over, one run each: cuda:0,cuda:1; (): all
    launcher: str = "local"  # local, slurm (submitit), submitit_local (submitit's local executor)
    slurm_partition: str | None = None  # launcher=slurm: the partition
    slurm_time: int = 60  # minutes per run (SLURM's time limit)
    slurm_gpus_per_job: int = 1  # 0: CPU jobs
    slurm_cpus_per_job: int = 4
    slurm_parallelism: int = 64  # runs of the job array at once
    slurm_wait: bool = False  # wait for the jobs and write the report; false: submit, re-run later to report

    def validate(self):
        entries = self.entries()
        _refuse_duplicates("schemes", entries, slug)
        for entry in entries:
            parse_entry(entry)
        check_ints(
            self, ("n_seeds", "jobs", "slurm_time", "slurm_cpus_per_job", "slurm_parallelism"), 1, 10_000
        )
        check_ints(self, ("slurm_gpus_per_job",), 0, 64)
        if self.threads is not None:
            check_ints(self, ("threads",), 1, 4096)
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        object.__setattr__(self, "task_overrides", _typed_overrides(self.task_overrides))
        if self.eval_only is not None:
            if not self.eval_only:
                raise ValueError(
                    "eval_only must list run dirs or grid folders, like --eval_only=out/ablation_cpu"
                )
            _refuse_duplicates("eval_only", [Path(p) for p in self.eval_only], lambda p: p.resolve())

    def entries(self) -> list[str]:
        entries = [e.strip() for e in self.schemes if e.strip()]
        if not entries:
            raise ValueError("schemes must list at least one entry, e.g. --schemes=rope,alibi")
        return entries


def _typed_overrides(overrides: dict | None) -> dict | None:
    """task_overrides with every value coerced by TrainConfig's declared type (as on the command line)."""
    if overrides is None:
        return None
    types_ = typing.get_type_hints(TrainConfig)
    allowed = set(types_) - {"dataset", "out_dir"}
    typed = {}
    for task, keys in overrides.items():
        if task not in TASKS or not isinstance(keys, dict):
            raise ValueError(
                f"task_overrides maps tasks {sorted(TASKS)} to {{key: value}}, got {task!r}: {keys!r}"
            )
        for key in keys:
            if key not in allowed:
                raise unknown_key(key, allowed, f"task_overrides[{task!r}]")
        typed[task] = {k: coerce(f"task_overrides[{task!r}][{k!r}]", v, types_[k]) for k, v in keys.items()}
    return typed


def _refuse_duplicates(key: str, items: list, identity) -> None:
    seen = {}
    for item in items:
        if (same := seen.setdefault(identity(item), item)) is not item:
            raise ValueError(f"{key} lists one run twice ({str(same)!r} and {str(item)!r}); give it once")


def parse_entry(entry: str) -> tuple[str, dict]:
    """'rope:rope_base=500' -> ('rope', {'rope_base': 500.0}): the scheme and the knobs the entry sets, its
    scheme's or a position option (model.POSITION_OPTIONS), typed. A value with commas or colons is written
    as JSON: rope:rope_nope_layers=[0,3], rope:rope_scaling={"rope_type":"linear","factor":2}. Values that
    depend on the grid (random_positions > block_size) are checked by scheme_config."""
    name, *pairs = split_list(entry.strip(), ":")
    if name not in POS_ENCODINGS:
        raise ValueError(f"scheme {name!r} in {entry!r} is not one of {sorted(POS_ENCODINGS)}")
    allowed = (*POS_ENCODINGS[name].knobs, *POSITION_OPTIONS)
    types_ = typing.get_type_hints(ModelConfig)
    knobs = {}
    for key, eq, value in (p.partition("=") for p in pairs):
        if not eq or key not in allowed:
            raise ValueError(
                f"scheme entry {entry!r}: write pos_enc[:knob=value...]; {name}'s knobs: {', '.join(allowed)}"
            )
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


def same_run(a: dict, b: dict) -> bool:
    """Whether two records' configs describe the same run, wherever each was stored."""

    def what(configs: dict) -> dict:
        train_cfg = {k: v for k, v in configs["train"].items() if k not in LOCATION_KEYS}
        return json.loads(json.dumps({"model": configs["model"], "train": train_cfg}))  # tuples as lists

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

    @property
    def name(self) -> str:
        return Path(self.train.out_dir).name

    def done(self) -> bool:
        """Trained and evaluated with these settings (its compare.json says so)."""
        record = read_record(self.train.out_dir)
        return bool(record) and record.get("eval_settings") == self.ev.settings(self.model.block_size)


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
            record = {"label": job.entry, "seed": tcfg.seed, "configs": job.configs, "summary": summary}
            write_record(run_dir, record)
        if record.get("eval_settings") != (settings := job.ev.settings(job.model.block_size)):
            where = auto_device(tcfg.device)
            evaluation = evaluate_run(load_run(run_dir, where), job.ev, where, job.data_dir)
            record |= evaluation | {"eval_settings": settings}
            write_record(run_dir, record)
    return record | {"run_dir": str(run_dir)}  # where it is now: the grid may have moved


def plan_grid(
    model_cfg: ModelConfig, train_cfg: TrainConfig, ev: EvalConfig, cmp: CompareConfig
) -> list[Job]:
    """Every (entry, seed) of one grid (one dataset), with every check that can fail done now: the data
    (prepared), the entries against the model the data implies (a task's block_size), the evaluation against
    the validation text, and run dirs that hold another config."""
    source = load_source(train_cfg, model_cfg.block_size)  # prepares the data once, before any worker
    base = dataclasses.replace(model_cfg, vocab_size=source.meta["vocab_size"], block_size=source.block_size)
    by_entry = {entry: scheme_config(base, entry) for entry in cmp.entries()}
    if not train_cfg.task_names():
        val_region(train_cfg, source.meta, base.block_size, ev, train_cfg.data_dir)
    jobs = []
    for entry, k in itertools.product(cmp.entries(), range(cmp.n_seeds)):
        run_dir = Path(train_cfg.out_dir) / f"{slug(entry)}-seed{k}"
        board = Path(train_cfg.tensorboard_dir or Path(train_cfg.out_dir) / "tensorboard") / run_dir.name
        tcfg = dataclasses.replace(
            train_cfg,
            out_dir=str(run_dir),
            seed=train_cfg.seed + k,
            data_seed=train_cfg.data_seed + k,
            resume=False,
            tensorboard_dir=str(board) if train_cfg.log == "tensorboard" else None,
        )
        job = Job(entry, by_entry[entry], tcfg, ev, train_cfg.data_dir)
        record = read_record(run_dir)
        if record and not same_run(record["configs"], job.configs):
            raise ValueError(
                f"{run_dir} holds a run of another config (its compare.json); use a new --out_dir for this "
                "grid"
            )
        jobs.append(job)
    return jobs


def run_grid(jobs: list[Job], cmp: CompareConfig, device: str, progress=True) -> list[dict] | None:
    """Train and evaluate every job not done yet with the chosen launcher; the records (compare.json) of all,
    or None while SLURM still has some of them."""
    names = [f"{j.entry} seed {j.train.seed}" for j in jobs]
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


def _runs_in(path: Path) -> list[Path]:
    return sorted(d for d in path.glob("*/") if (d / CKPT).is_file())


def eval_groups(cmp: CompareConfig) -> list[tuple[Path, list[Path]]]:
    """(report folder, run dirs) of eval_only: one report per task folder for a task grid's root, else one
    report for every run given (a run dir, or a folder of run dirs). Without --report_dir the report goes
    into the one grid folder given, never over another grid's report."""
    paths = [Path(p) for p in cmp.eval_only]
    if len(paths) == 1 and not _runs_in(paths[0]) and not (paths[0] / CKPT).is_file():
        tasks = [d for d in sorted(paths[0].glob("*/")) if _runs_in(d)]
        if tasks:  # a task grid's root: task folders of run dirs
            out = Path(cmp.report_dir) if cmp.report_dir else paths[0]
            return [(out / d.name if cmp.report_dir else d, _runs_in(d)) for d in tasks]
    dirs = []
    for p in paths:
        found = [p] if (p / CKPT).is_file() else _runs_in(p)
        if not found:
            raise ValueError(
                f"{p} is neither a run dir (with {CKPT}), a folder of run dirs, nor a task grid's root"
            )
        dirs += found
    _refuse_duplicates("eval_only", dirs, lambda p: p.resolve())  # a folder and a run inside it
    if cmp.report_dir:
        return [(Path(cmp.report_dir), dirs)]
    if len(paths) == 1 and not (paths[0] / CKPT).is_file():
        return [(paths[0], dirs)]
    raise ValueError(
        f"eval_only={','.join(cmp.eval_only)} lists runs, not one grid folder: say where the report goes, "
        "e.g. --report_dir=out/my_report"
    )


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
    for d in tqdm(dirs, desc="eval", disable=not progress, dynamic_ncols=True):
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


def grids(
    model_cfg, train_cfg: TrainConfig, ev: EvalConfig, cmp: CompareConfig
) -> list[tuple[str, list[Job], Path]]:
    """(name, jobs, report folder) of each grid: one for a corpus, one per task of dataset=task:A,B,... (in
    its own folder), all planned (and so checked) before any run starts."""
    tasks = train_cfg.task_names()
    if len(tasks) < 2:
        out = Path(cmp.report_dir or train_cfg.out_dir)
        return [(train_cfg.dataset, plan_grid(model_cfg, train_cfg, ev, cmp), out)]
    planned = []
    for task in tasks:
        folder = Path(train_cfg.out_dir) / task
        keys = {
            "dataset": f"task:{task}",
            "out_dir": str(folder),
            "task_plain": train_cfg.task_plain and task == "addition",
        }
        tcfg = dataclasses.replace(train_cfg, **(keys | (cmp.task_overrides or {}).get(task, {})))
        out = Path(cmp.report_dir) / task if cmp.report_dir else folder
        planned.append((task, plan_grid(model_cfg, tcfg, ev, cmp), out))
    return planned


def main(argv: list[str] | None = None, progress: bool = True) -> dict:
    """CLI entry (module docstring); returns what results.json holds (with several tasks: {task: results})."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if (not argv or argv[0].startswith("-")) and not any(a.startswith("--eval_only") for a in argv):
        argv.insert(0, str(DEFAULT_PRESET))
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
        planned = grids(model_cfg, train_cfg, ev, cmp)
        for name, jobs, out in planned:
            t0 = time.perf_counter()  # each grid's report gives its own time
            records = run_grid(jobs, cmp, train_cfg.device, progress)
            if records is not None:  # None: queued on SLURM
                results[name.removeprefix("task:")] = write_report(
                    records, settings, out, command, time.perf_counter() - t0
                )
    if len(planned) == 1:
        return next(iter(results.values()), {})
    return results


if __name__ == "__main__":
    run_main(main, "the same command resumes the grid (finished runs and checkpoints are kept)")
