"""Silences library chatter that says nothing to a person running a study."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Keeps warnings and errors, drops INFO banners and deprecation noise of dependencies."""
    # MLflow draws a progress bar for every artifact it downloads (the report reads a few).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (both set their loggers' levels when first imported)
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning says this on every trial on any machine with SLURM installed; workers
    # that SLURM launches are configured by the launcher, not by Lightning's detection.
    warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
    # tuner runs Optuna's heartbeat with ask/tell on purpose (see tuner.coordination).
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
    warnings.filterwarnings("ignore", message=".*is experimental.*")
