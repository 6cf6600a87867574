"""Results to look at: the study's plots and its Markdown / HTML report.

``tuner.report.build.write_report`` draws and writes everything; ``settings`` checks the
``report`` config group without importing the plotting stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig


def study_report(cfg: DictConfig, study: optuna.Study, client: MlflowClient, parent_run_id: str) -> Path:
    """Writes a finished study's report and returns its Markdown file.

    The study loop is handed this by the command line and the launchers (the report reads the
    study, so the loop does not import it); the plotting stack is imported only here.
    """
    from tuner.report.build import write_report

    return write_report(cfg, study, client=client, parent_run_id=parent_run_id).markdown
