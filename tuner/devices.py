"""How many devices one trial trains on, read from ``trainer.devices`` without torch, and how
many CPU cores this process may run on.

Launchers plan their workers from this before torch is imported; ``tuner.training.ddp`` starts
the ranks of a multi-device trial from it.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError


def world_size(cfg: DictConfig) -> int:
    """Processes one trial trains on: ``trainer.devices`` when it is a count above one."""
    devices = cfg.trainer.devices
    if isinstance(devices, int) and not isinstance(devices, bool):
        return max(devices, 1)
    if isinstance(devices, str) and devices.isdigit():
        return max(int(devices), 1)
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return max(len(devices), 1)
    return 1


def trial_devices(cfg: DictConfig) -> int | str | list[int]:
    """``trainer.devices`` as Lightning gets it: ``auto`` is one device.

    Lightning's ``auto`` is every GPU for one trial, through its own DDP launcher, which
    re-runs the whole command line in each new process: a study per GPU.
    """
    devices = cfg.trainer.devices
    if str(devices) == "auto":
        return 1
    return list(devices) if OmegaConf.is_list(devices) else devices


#: ``trainer.accelerator`` values a trial can be built with (Lightning's names).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: What a machine must have for each accelerator (torch's device kinds).
_RUNS_ON = {"gpu": ("cuda", "mps"), "cuda": ("cuda",), "mps": ("mps",)}
#: ``trainer.precision`` values Lightning accepts (its ``_PRECISION_INPUT``).
PRECISIONS = (
    "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
    "32", "16", "bf16", "64", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip
#: Precisions that only a GPU runs (Lightning refuses them on a CPU).
_GPU_ONLY_PRECISIONS = ("16-mixed", "16", "transformer-engine", "transformer-engine-float16")


def check_trainer(cfg: DictConfig) -> None:
    """``trainer.accelerator``, ``devices`` and ``precision`` as Lightning would take them.

    Checked before the study: found by Lightning, each failed every trial with a traceback
    and left its runs RUNNING.

    Raises:
        UserError: naming the key, the value and the fix.
    """
    t = cfg.trainer
    accelerator = str(t.accelerator)
    if accelerator not in ACCELERATORS:
        raise UserError("trainer.accelerator", t.accelerator, f"use one of {', '.join(ACCELERATORS)}")
    _check_device_count(t.devices)
    precision = str(t.precision)
    if precision not in PRECISIONS:
        raise UserError("trainer.precision", t.precision, f"use one of {', '.join(PRECISIONS[:6])}")
    # SLURM jobs run on other nodes: what this machine has says nothing about theirs.
    if str(cfg.launcher.name) == "slurm":
        return
    found = _found_accelerator()
    if found not in _RUNS_ON.get(accelerator, (found,)):
        raise UserError(
            "trainer.accelerator",
            accelerator,
            f"this machine has no {'GPU' if accelerator == 'gpu' else accelerator.upper()} "
            f"(it trains on {found}); use trainer.accelerator=auto",
        )
    on_cpu = accelerator == "cpu" or found == "cpu"
    if on_cpu and (OmegaConf.is_list(t.devices) or isinstance(t.devices, (list, tuple))):
        # Lightning's CPU accelerator takes a count only.
        raise UserError("trainer.devices", t.devices, "on a CPU give a count, e.g. trainer.devices=2")
    if precision in _GPU_ONLY_PRECISIONS and on_cpu:
        raise UserError("trainer.precision", precision, "a CPU does not run it; use 32-true or bf16-mixed")


def _check_device_count(devices: object) -> None:
    """A count >= 1, ``auto``, or a list of distinct device indices."""
    fix = "give a count >= 1, auto, or a list of device indices such as [0, 1]"
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        items = list(devices)  # type: ignore[call-overload]
        if not items or len(set(map(str, items))) != len(items) or not all(_index(i) for i in items):
            raise UserError("trainer.devices", devices, fix)
        return
    if str(devices) == "auto":
        return
    if isinstance(devices, bool) or not (
        (isinstance(devices, int) and devices >= 1) or (isinstance(devices, str) and _count(devices))
    ):
        raise UserError("trainer.devices", devices, fix)


def _index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(text: str) -> bool:
    return text.isdigit() and int(text) >= 1


def _found_accelerator() -> str:
    """What this machine trains on: cuda, mps or cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
