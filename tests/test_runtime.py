"""runtime.py: the device and precision policy, DDP process info, peak FLOPs, env info, stop signals."""

import signal

import pytest
import torch

import runtime
from runtime import Precision, Processes, StopSignals


def test_precision_policy_on_the_cpu():
    auto = Precision.of("auto", "cpu")
    assert (auto.device_type, auto.dtype, auto.name) == ("cpu", torch.float32, "float32")
    with auto.autocast():
        assert not torch.is_autocast_enabled("cpu")
    assert not auto.grad_scaler().is_enabled()
    bf16 = Precision.of("bfloat16", "cpu")
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not bf16.grad_scaler().is_enabled()  # only float16 needs loss scaling
    with pytest.raises(ValueError, match="dtype must be one of"):
        Precision.of("fp8", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_precision_policy_on_cuda():
    auto = Precision.of("auto", "cuda")
    assert auto.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert Precision.of("float16", "cuda:0").grad_scaler().is_enabled()


def test_devices():
    assert runtime.auto_device("cpu") == "cpu"
    assert runtime.auto_device() in ("cuda", "mps", "cpu")
    assert runtime.is_device("cuda:1") and runtime.is_device("mps") and not runtime.is_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use --device=cpu"):
            runtime.auto_device("cuda:0")


def test_processes_from_the_torchrun_environment(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    single = Processes.from_env()
    assert (single.ddp, single.rank, single.world, single.master) == (False, 0, 1, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert Processes.from_env() == Processes(True, 3, 4) and not Processes(True, 3, 4).master
    with single.master_first():  # no process group: nothing to wait for
        pass


def test_peak_flops_prefers_the_more_specific_name():
    assert runtime.peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert runtime.peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert runtime.peak_bf16_flops("NVIDIA L40S") == 362e12 and runtime.peak_bf16_flops("NVIDIA L4") == 121e12
    assert runtime.peak_bf16_flops("Some CPU") is None


def test_env_info_records_versions_and_git():
    env = runtime.env_info("cpu", 1)
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["gpu"] is None
    assert set(env) >= {"git_sha", "git_dirty", "python", "platform", "world_size", "argv"}


def test_stop_signals_defer_the_first_signal_and_restore_handlers():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGINT)  # handled: no KeyboardInterrupt
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C acts as usual
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_to_device_keeps_values():
    t = torch.arange(6).view(2, 3)
    assert torch.equal(runtime.to_device(t, "cpu"), t)


def test_bad_torchrun_variables_are_named(monkeypatch):
    monkeypatch.setenv("RANK", "abc")
    with pytest.raises(ValueError, match=r"RANK='abc' must be an integer >= 0 \(torchrun sets it"):
        Processes.from_env()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=2 must be < WORLD_SIZE=2"):
        Processes.from_env()


def test_sigterm_and_sighup_stop_like_ctrl_c_and_a_repeat_does_not_kill(capsys):
    """A grid forwards SIGTERM to workers that may have got it from the shell too: the repeat is ignored."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with StopSignals() as stop:
            signal.raise_signal(signum)
            signal.raise_signal(signum)  # the second one too is only noted
            assert stop.requested and stop.signum == signum
    with StopSignals():
        signal.raise_signal(signal.SIGINT)
    assert "press Ctrl-C again to stop now" in capsys.readouterr().out
