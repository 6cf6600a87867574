"""The ``report`` config group, checked before a study starts."""

from __future__ import annotations

from omegaconf import DictConfig

from tuner.errors import UserError

TOLERANCE_KINDS = ("relative", "absolute")


def validate_report(cfg: DictConfig) -> None:
    """Checks ``report.*``.

    Raises:
        UserError: naming the bad ``report`` key.
    """
    rep = cfg.get("report")
    if rep is None:
        return
    top = rep.get("top")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise UserError("report.top", top, "give a whole number >= 1")
    tolerance = rep.get("tolerance")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise UserError("report.tolerance", tolerance, "give a number >= 0 (e.g. 0.02)")
    if rep.get("tolerance_kind") not in TOLERANCE_KINDS:
        raise UserError("report.tolerance_kind", rep.get("tolerance_kind"), "use relative or absolute")
