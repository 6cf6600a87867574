"""Launchers: where the trials of a study run (``launcher=none | local | slurm``).

``none`` runs the study loop in this process. ``local`` and ``slurm`` first create the
study and its MLflow parent run, then start workers that each run the same loop on the
shared storage and ask for a trial whenever they are free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from tuner.errors import UserError

if TYPE_CHECKING:  # this package stays light: a launcher starts its workers before torch loads
    from tuner.launch.spawn import Workers
    from tuner.space import ParamSpec
    from tuner.tune import StudyResult

LAUNCHERS = ("none", "local", "slurm")


def check(cfg: DictConfig) -> None:
    """Checks the launcher and device settings before anything is created.

    Raises:
        UserError: an unknown launcher, a storage workers cannot share, bad counts.
    """
    from tuner import ddp

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


def launch(
    cfg: DictConfig, specs: list[ParamSpec], *, quiet: bool, workers: Workers | None = None
) -> StudyResult | None:
    """Runs the study with the configured launcher (not ``none``).

    Args:
        workers: Local workers already started by ``tuner.launch.spawn.prestart``.

    Returns:
        The finished study, or None when SLURM jobs were submitted without waiting.
    """
    if cfg.launcher.name == "local":
        from tuner.launch.local import run_local

        return run_local(cfg, specs, quiet=quiet, workers=workers)
    from tuner.launch.slurm import run_slurm

    return run_slurm(cfg, specs, quiet=quiet)
