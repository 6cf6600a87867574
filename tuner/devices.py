"""How many devices one trial trains on, read from ``trainer.devices`` without torch.

Launchers plan their workers from this before torch is imported; ``tuner.ddp`` starts
the ranks of a multi-device trial from it.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


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
