"""The launcher settings (``conf/launcher``), checked before anything is created.

Below every launcher module: ``tuner.launch`` and ``tuner.launch.spawn`` both ask it, and it
asks nothing of them.
"""

from __future__ import annotations

from omegaconf import DictConfig

from tuner.errors import UserError

LAUNCHERS = ("none", "local", "slurm")


def check(cfg: DictConfig) -> None:
    """Checks the launcher and device settings before anything is created.

    Raises:
        UserError: an unknown launcher, a storage workers cannot share, bad counts.
    """
    from tuner.training import ddp

    ddp.check(cfg)
    check_launcher(cfg)


def check_launcher(cfg: DictConfig) -> None:
    """The launcher settings alone: what ``check`` asks besides the devices, without torch.

    Raises:
        UserError: an unknown launcher, a storage workers cannot share, bad counts.
    """
    name = str(cfg.launcher.name)
    if name not in LAUNCHERS:
        raise UserError("launcher.name", name, f"use one of {', '.join(LAUNCHERS)}")
    if name == "none":
        return
    if cfg.storage.backend == "memory":
        raise UserError(
            "storage",
            "memory",
            f"launcher={name} needs a storage its workers share: storage=journal or storage=postgres",
        )
    if cfg.study.get("population", 1) != 1:
        raise UserError(
            "study.population",
            cfg.study.population,
            f"population trials train together in one process: use launcher=none (not {name})",
        )
    workers = cfg.launcher.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise UserError("launcher.workers", workers, "give a whole number of workers, 1 or more")
    if name == "slurm" and workers is None:
        raise UserError("launcher.workers", None, "give the number of SLURM jobs, e.g. launcher.workers=4")
    if cfg.storage.backend == "rdb" and str(cfg.storage.url).startswith("sqlite"):
        raise UserError(
            "storage",
            "sqlite",
            "SQLite locks up under many writers: use storage=journal (one machine) or storage=postgres",
        )
