"""Launchers: where the trials of a study run (``launcher=none | local | slurm``).

``none`` runs the study loop in this process. ``local`` and ``slurm`` first create the
study and its MLflow parent run, then start workers that each run the same loop on the
shared storage and ask for a trial whenever they are free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from tuner.launch.settings import LAUNCHERS, check, check_launcher

__all__ = ["LAUNCHERS", "check", "check_launcher", "launch"]

if TYPE_CHECKING:  # this package stays light: a launcher starts its workers before torch loads
    from tuner.launch.spawn import Workers
    from tuner.search.space import ParamSpec
    from tuner.study.loop import StudyResult


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
