"""The check a trial's config passes once its sampled values are written in.

Below the validation hub (``tuner.validate``) and the study loop, which both ask it.
"""

from __future__ import annotations

from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.errors import as_user_error
from tuner.optimizer.factory import validate_optimizer
from tuner.schedule.functions import validate_schedule


def check_trial(cfg: DictConfig) -> None:
    """Checks the optimizer and schedule configs as a trial would build them.

    Raises:
        UserError: naming the first bad key, its value and the fix.
    """
    total = int(cfg.trainer.max_steps)
    try:
        validate_optimizer(plain(cfg.optimizer))
        validate_schedule(plain(cfg.schedule), total)
    except ValueError as exc:
        error = as_user_error(exc)
        if error is None:
            raise
        raise error from None
