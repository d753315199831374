"""The runtime: device choice, the precision (dtype / autocast / grad-scaler) policy, DDP process setup,
peak FLOPs for MFU, environment info and stop signals. train.py, sample.py, compare.py (evaluation and
fine-tune) and bench.py all take these from here, so a run is evaluated in the precision it trained in."""

import contextlib
import os
import platform
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from configurator import Config

REPO = Path(__file__).resolve().parent
DTYPES = ("auto", "float32", "bfloat16", "float16")
# Dense bf16 tensor-core peak FLOP/s for MFU, by substring of the CUDA device name, first match wins
# (vendor datasheets; so "H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
]


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device by its name, None when it is not in PEAK_BF16_FLOPS."""
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in device_name), None)


DEVICE_TYPES = ("cpu", "cuda", "mps")  # what the model is run and tested on


def is_device(name: str) -> bool:
    """Whether `name` is a device string of a supported type: cpu, cuda, cuda:1, mps."""
    try:
        return torch.device(name).type in DEVICE_TYPES
    except (RuntimeError, ValueError):
        return False


def auto_device(device: str = "auto") -> str:
    """`device` itself after checking that it is there, or for "auto" the best available: cuda > mps >
    cpu. A device this machine lacks is a ValueError naming what to pass instead, raised before anything
    (a checkpoint, a dataset) is read."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if not is_device(device):
        raise ValueError(f"device={device!r} is not one of {DEVICE_TYPES} (cuda:N for a given GPU)")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use --device=cpu or --device=auto")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available; use --device=cpu or --device=auto")
    return device


@dataclass(frozen=True)
class Precision:
    """The compute dtype of a run and what follows from it: autocast (off in float32) and gradient
    scaling (float16 only). `auto` is bfloat16 on CUDA if supported, else float16; float32 elsewhere."""

    device_type: str  # cpu, cuda, mps
    dtype: torch.dtype

    @classmethod
    def of(cls, dtype: str, device: str) -> "Precision":
        kind = torch.device(device).type
        if dtype == "auto":
            bf16 = kind == "cuda" and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if bf16 else "float16" if kind == "cuda" else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        return cls(kind, getattr(torch, dtype))

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


@dataclass(frozen=True)
class RuntimeConfig(Config):
    """Where and in what precision a model runs: the keys train.py, sample.py, bench.py and compare.py share
    (their configs derive from this one), checked here once."""

    # --- runtime
    device: str = "auto"  # auto = cuda > mps > cpu; or cpu, cuda, cuda:N, mps
    dtype: str = "auto"  # auto = bfloat16 on CUDA if supported (else float16), float32 elsewhere
    compile: bool = False  # torch.compile the model (pays its compile time on the first steps)

    def validate(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.device != "auto" and not is_device(self.device):
            raise ValueError(
                f"device must be 'auto' or a torch device: cpu, cuda, cuda:1, mps; got {self.device!r}"
            )

    def setup(self, device: str | None = None) -> tuple[str, Precision]:
        """(the device, checked to be there; its precision policy). `device` overrides the configured one
        (a grid worker's GPU)."""
        device = auto_device(device or self.device)
        return device, Precision.of(self.dtype, device)

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` compiled if asked (the uncompiled module stays the one saved and evaluated)."""
        return torch.compile(model) if self.compile else model


@dataclass(frozen=True)
class Processes:
    """This process's place in a torchrun launch (RANK set), or the single process of a plain run."""

    ddp: bool
    rank: int
    world: int

    @classmethod
    def from_env(cls) -> "Processes":
        env = os.environ
        values = {}
        for key, default, low in (("RANK", "0", 0), ("WORLD_SIZE", "1", 1), ("LOCAL_RANK", "0", 0)):
            text = env.get(key, default)
            if not text.strip().isdigit() or int(text) < low:
                raise ValueError(
                    f"{key}={text!r} must be an integer >= {low} (torchrun sets it; unset it otherwise)"
                )
            values[key] = int(text)
        if values["RANK"] >= values["WORLD_SIZE"]:
            raise ValueError(
                f"RANK={values['RANK']} must be < WORLD_SIZE={values['WORLD_SIZE']} (set by torchrun)"
            )
        return cls("RANK" in env, values["RANK"], values["WORLD_SIZE"])

    @property
    def master(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device of this process: under torchrun a CUDA process takes the GPU of its LOCAL_RANK."""
        device = auto_device(device)
        if torch.device(device).type == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{os.environ['LOCAL_RANK']}"
        return device

    @contextlib.contextmanager
    def started(self, device: str):
        """Set up the device (and the process group under torchrun: NCCL on CUDA, gloo on the CPU) for
        the duration of the block."""
        kind = torch.device(device).type
        if kind == "cuda":
            torch.cuda.set_device(device)
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls left outside autocast
        owned = self.ddp and not dist.is_initialized()
        if owned:
            dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
        try:
            yield self
        finally:
            if owned:
                dist.destroy_process_group()

    @contextlib.contextmanager
    def master_first(self):
        """The master runs the block first (e.g. preparing a dataset), the others after it is done."""
        if self.ddp and not self.master:
            dist.barrier()
        yield
        if self.ddp and self.master:
            dist.barrier()


def to_device(t: torch.Tensor, device: str) -> torch.Tensor:
    """A CPU tensor on `device`; on CUDA through pinned memory, so the copy overlaps queued GPU work."""
    return t.pin_memory().to(device, non_blocking=True) if device.startswith("cuda") else t.to(device)


def env_info(device: str, world_size: int) -> dict:
    """Git SHA (and whether tracked files changed since), versions, platform, device and argv."""

    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_sha": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),  # tracked files changed since that commit
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "device": device,
        "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
        "world_size": world_size,
        "argv": sys.argv,
    }


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignals:
    """While active, SIGINT (Ctrl-C), SIGTERM and SIGHUP only set `requested` (and `signum`, which one); a
    loop then saves and stops at the end of its iteration. A second Ctrl-C acts as usual and stops at once
    (the first one says so); a repeated SIGTERM or SIGHUP is only noted (a grid passes them on to workers
    that may have had them from the shell already)."""

    def __init__(self):
        self.requested, self.signum, self.previous = False, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested and signum != signal.SIGINT:
            return
        self.requested, self.signum = True, signum
        if signum == signal.SIGINT:
            signal.signal(signum, self.previous[signum])
        again = "; press Ctrl-C again to stop now" if signum == signal.SIGINT else ""
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this iteration{again}", flush=True)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
