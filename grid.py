"""What a grid is (compare.py runs it): CompareConfig, its entries, and its runs as Jobs, planned before any
of them trains; the learning-rate tuning phase and the budget axis; the runs given to --eval_only.

A grid's run is one (entry, seed) and, with `budgets`, one budget: `out_dir/<entry>[-it<budget>]-seed<k>`,
a train.py run dir plus compare.json. With `tune_lrs`, each entry first trains at every learning rate on
tune_seeds seeds of their own (seed + 1000 + k, data_seed too: `out_dir/tune/<entry>-lr<lr>-seed<k>`); the
rate with the lowest mean `tune_loss` (loss at L on the tuning half of the validation split, evaluate.py)
is the entry's, and its runs train at it and are reported on the held-out half: no reported number comes
from a seed, a batch order or a text that chose the rate.
"""

import dataclasses
import itertools
import json
import typing
from dataclasses import dataclass
from pathlib import Path

from configurator import Config, check_ints, check_number, coerce, split_list, unknown_key
from data.tasks import TASKS
from evaluate import EvalConfig
from launch import LAUNCHERS
from model import POSITION_OPTIONS, ModelConfig
from positional import POS_ENCODINGS
from report import slug
from rundir import CKPT, read_record
from training import TrainConfig

LOCATION_KEYS = ("out_dir", "data_dir", "device", "log", "tensorboard_dir", "verbose")  # where, not what
# every registered scheme (a test checks), the classic ones first
SCHEMES = ("learned", "sinusoidal", "rope", "alibi", "none", "t5", "kerple", "fire", "cope", "xpos", "fox")
SCHEMES += ("stickbreaking", "pope")
# min_lr keeps its ratio to learning_rate
ENTRY_TRAIN_KEYS = (
    "learning_rate",
    "pos_lr_mult",
    "task_positions",
    "task_hints",
    "task_marks",
    "task_width",
    "task_lsb",
    "drope_iter",
    "max_iters",  # an entry's own budget (with lr_decay_iters), where one scheme needs fewer steps
    "lr_decay_iters",
)
TUNE_SEEDS = 1000  # tuning runs use seeds seed + 1000 + k: never the seeds (or batches) a report is made of


@dataclass(frozen=True)
class CompareConfig(Config):
    """What compare.py adds to ModelConfig, TrainConfig and EvalConfig (one flat --key=value namespace).
    Base-config knobs of one scheme (e.g. --rope_base) apply to the entries of that scheme only."""

    # --- grid
    schemes: tuple[str, ...] = (
        SCHEMES  # entries pos_enc[:knob=value...], e.g. rope:rope_dim=16 ([0,3]: lists)
    )
    n_seeds: int = 3  # replicates per entry
    report_dir: str | None = None  # None: the grid's out_dir (eval_only: the one grid folder given)
    eval_only: tuple[str, ...] | None = None  # run dirs or folders of run dirs: evaluate, do not train
    task_overrides: dict | None = None  # dataset=task:A,B: train keys per task, {"addition": {...}}
    # --- protocol
    reference: str | None = (
        None  # the entry the others are compared with, paired; None: learned, else the first
    )
    tune_lrs: tuple[float, ...] = ()  # per-entry learning-rate tuning over these rates (module docstring)
    tune_seeds: int = 1  # seeds each rate is tried on
    budgets: tuple[int, ...] = ()  # iterations to train each entry for (max_iters = lr_decay_iters = budget)
    learned_threshold: float = 0.9  # tasks: a run below this exact match in distribution is "not learned"
    # --- launch
    jobs: int = 1  # runs at once on this machine, each in its own process (launcher=local)
    threads: int | None = None  # CPU threads per run; None: cores // jobs (jobs=1: torch's default)
    devices: tuple[str, ...] = ()  # GPUs to spread the jobs over, one run each: cuda:0,cuda:1; (): all
    launcher: str = "local"  # local, slurm (submitit), submitit_local (submitit's local executor)
    slurm_partition: str | None = None  # launcher=slurm: the partition
    slurm_time: int = 60  # minutes per run (SLURM's time limit)
    slurm_gpus_per_job: int = 1  # 0: CPU jobs
    slurm_cpus_per_job: int = 4  # CPU cores per SLURM job
    slurm_parallelism: int = 64  # runs of the job array at once
    slurm_wait: bool = False  # wait for the jobs and write the report; false: submit, re-run later to report

    def validate(self):
        entries = self.entries()
        _refuse_duplicates("schemes", entries, slug)
        for entry in entries:
            parse_entry(entry)
        if self.tune_lrs and any("learning_rate" in parse_entry(e)[2] for e in entries):
            raise ValueError("an entry sets learning_rate and tune_lrs would choose it: drop one of the two")
        if self.reference is not None and self.reference not in entries:
            raise ValueError(f"reference={self.reference!r} is not one of the entries {entries}")
        check_ints(
            self, ("n_seeds", "jobs", "slurm_time", "slurm_cpus_per_job", "slurm_parallelism"), 1, 10_000
        )
        check_ints(self, ("slurm_gpus_per_job",), 0, 64)
        check_ints(self, ("tune_seeds",), 1, 100)
        for lr in self.tune_lrs:
            check_number("tune_lrs", lr, 0, 10, strict=True)
        for budget in self.budgets:
            if isinstance(budget, bool) or not 1 <= budget <= 2**31:
                raise ValueError(
                    f"budgets must list iteration counts >= 1 like 1000,2000,4000, got {budget!r}"
                )
        _refuse_duplicates("tune_lrs", list(self.tune_lrs), float)
        _refuse_duplicates("budgets", list(self.budgets), int)
        check_number("learned_threshold", self.learned_threshold, 0, 1)
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


def parse_entry(entry: str) -> tuple[str, dict, dict]:
    """'rope:rope_base=500:learning_rate=3e-3' -> ('rope', {'rope_base': 500.0}, {'learning_rate': 0.003}):
    the scheme, the model knobs the entry sets (its scheme's or a position option, model.POSITION_OPTIONS)
    and its train keys (ENTRY_TRAIN_KEYS), typed. A value with commas or colons is written as JSON:
    rope:rope_nope_layers=[0,3], rope:rope_scaling={"rope_type":"linear","factor":2}. Values that depend on
    the grid (random_positions > block_size) are checked by entry_configs."""
    name, *pairs = split_list(entry.strip(), ":")
    if name not in POS_ENCODINGS:
        raise ValueError(f"scheme {name!r} in {entry!r} is not one of {sorted(POS_ENCODINGS)}")
    allowed = (*POS_ENCODINGS[name].knobs, *POSITION_OPTIONS, *ENTRY_TRAIN_KEYS)
    types_ = typing.get_type_hints(ModelConfig) | typing.get_type_hints(TrainConfig)
    knobs, train_keys = {}, {}
    for key, eq, value in (p.partition("=") for p in pairs):
        if not eq or key not in allowed:
            raise ValueError(
                f"scheme entry {entry!r}: write pos_enc[:key=value...]; {name} takes {', '.join(allowed)}"
            )
        (train_keys if key in ENTRY_TRAIN_KEYS else knobs)[key] = coerce(key, value, types_[key])
    return name, knobs, train_keys


def entry_configs(model: ModelConfig, train: TrainConfig, entry: str) -> tuple[ModelConfig, TrainConfig]:
    """The base configs with the entry's scheme, knobs and train keys; base knobs of other schemes are
    dropped, and a learning rate the entry sets keeps the base's min_lr / learning_rate ratio."""
    name, knobs, train_keys = parse_entry(entry)
    if "learning_rate" in train_keys:
        train_keys["min_lr"] = train_keys["learning_rate"] * train.min_lr / train.learning_rate
    try:
        return model.with_scheme(name, **knobs), dataclasses.replace(train, **train_keys)
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
    """One run of a grid, all a worker process or a SLURM job needs to run it."""

    label: str  # the entry, with @budget on a budget axis
    model: ModelConfig
    train: TrainConfig  # the run's own: out_dir, seed + k, data_seed + k, its learning rate and budget
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


def _format_lr(lr: float) -> str:
    return f"{lr:g}"


def plan_runs(
    model: ModelConfig,
    train: TrainConfig,
    ev: EvalConfig,
    cmp: CompareConfig,
    chosen: dict[str, float] | None = None,
    tuning: bool = False,
) -> list[Job]:
    """The runs of one grid: the tuning phase (every entry x tune_lrs x tune_seeds, in out_dir/tune), or the
    grid itself (every entry x budget x seed), each entry at its `chosen` learning rate if given. Run dirs
    that hold another config are refused."""
    jobs, root = [], Path(train.out_dir)
    for entry in cmp.entries():
        if tuning:
            axes = [
                (f"{slug(entry)}-lr{_format_lr(lr)}", {"learning_rate": lr}, entry) for lr in cmp.tune_lrs
            ]
            seeds, folder = cmp.tune_seeds, root / "tune"
        else:
            lr = {"learning_rate": chosen[entry]} if chosen else {}
            budgets = [(f"-it{b}", {"max_iters": b, "lr_decay_iters": b}, f"@{b}") for b in cmp.budgets] or [
                ("", {}, "")
            ]
            axes = [(slug(entry) + tag, lr | keys, entry + at) for tag, keys, at in budgets]
            seeds, folder = cmp.n_seeds, root
        for (stem, keys, label), k in itertools.product(axes, range(seeds)):
            entry_model, entry_train = entry_configs(model, train, entry)
            if "learning_rate" in keys:
                keys = keys | {"min_lr": keys["learning_rate"] * train.min_lr / train.learning_rate}
            run_dir, offset = folder / f"{stem}-seed{k}", k + TUNE_SEEDS * tuning
            board = Path(train.tensorboard_dir or root / "tensorboard") / run_dir.relative_to(root)
            run_train = dataclasses.replace(
                entry_train,
                **keys,
                out_dir=str(run_dir),
                seed=train.seed + offset,
                data_seed=train.data_seed + offset,
                resume=False,
                tensorboard_dir=str(board) if train.log == "tensorboard" else None,
            )
            job = Job(label, entry_model, run_train, ev, train.data_dir)
            record = read_record(run_dir)
            if record and not same_run(record["configs"], job.configs):
                raise ValueError(
                    f"{run_dir} holds a run of another config (its compare.json); use a new --out_dir"
                )
            jobs.append(job)
    return jobs


def choose_lrs(records: list[dict]) -> dict[str, dict]:
    """Per entry of a tuning phase: {"tune_loss": {lr: [losses over seeds]}, "chosen": the lr with the lowest
    mean}; ties go to the smaller rate."""
    by_entry = {}
    for r in records:
        lr = r["configs"]["train"]["learning_rate"]
        by_entry.setdefault(r["label"], {}).setdefault(lr, []).append(r["tune_loss"])
    return {
        entry: {
            "tune_loss": {_format_lr(lr): v for lr, v in sorted(losses.items())},
            "chosen": min(sorted(losses), key=lambda lr: sum(losses[lr]) / len(losses[lr])),
        }
        for entry, losses in by_entry.items()
    }


def runs_in(path: Path) -> list[Path]:
    return sorted(d for d in path.glob("*/") if (d / CKPT).is_file())


def eval_groups(cmp: CompareConfig) -> list[tuple[Path, list[Path]]]:
    """(report folder, run dirs) of eval_only: one report per task folder for a task grid's root, else one
    report for every run given (a run dir, or a folder of run dirs). Without --report_dir the report goes
    into the one grid folder given, never over another grid's report."""
    paths = [Path(p) for p in cmp.eval_only]
    if len(paths) == 1 and not runs_in(paths[0]) and not (paths[0] / CKPT).is_file():
        tasks = [d for d in sorted(paths[0].glob("*/")) if runs_in(d)]
        if tasks:  # a task grid's root: task folders of run dirs
            return [(Path(cmp.report_dir) / d.name if cmp.report_dir else d, runs_in(d)) for d in tasks]
    dirs = []
    for p in paths:
        found = [p] if (p / CKPT).is_file() else runs_in(p)
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
