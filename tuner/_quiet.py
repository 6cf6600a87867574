"""Silences library chatter that says nothing to a person running a study."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_libraries() -> None:
    """Keeps warnings and errors, drops INFO banners and deprecation noise of dependencies."""
    # MLflow draws a progress bar for every artifact it downloads (the report reads a few).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (it sets its logger's level when first imported)

    # Lightning sets its top loggers to INFO when imported (late, and only where a
    # process trains); its banners and tips all go through these two, which it leaves be.
    for name in (
        "mlflow",
        "alembic",
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    if "pytorch_lightning" in sys.modules:
        quiet_lightning()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning says this on every trial on any machine with SLURM installed; workers
    # that SLURM launches are configured by the launcher, not by Lightning's detection.
    warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
    # tuner runs Optuna's heartbeat with ask/tell on purpose (see tuner.storage.coordination).
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
    warnings.filterwarnings("ignore", message=".*is experimental.*")


def quiet_lightning() -> None:
    """Drops Lightning's INFO banners ("GPU available", tips); called once it is imported.

    Not imported up front: a launcher's parent process never trains, and Lightning
    (with torch) takes seconds to import.
    """
    import pytorch_lightning  # noqa: F401  (sets its loggers' levels when first imported)

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
