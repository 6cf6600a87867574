"""Plots of the learning rate: ``mode=schedule`` and each trial's ``lr_curve.png``.

Figures are drawn with matplotlib's object API on the Agg canvas, never pyplot, so they
can be drawn on the tracker's background thread while the next trial trains.
"""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.schedule.figure import plot_lr
from tuner.schedule.functions import lr_curve, warmup_length


def lr_plan(cfg: DictConfig) -> dict[str, Any]:
    """What fixes a config's planned LR curve, as plain data (kept in the tracking spool)."""
    return {
        "peak": float(cfg.optimizer.lr),
        "schedule": plain(cfg.schedule),
        "total": int(cfg.trainer.max_steps),
    }


def plan_lrs(plan: dict[str, Any]) -> list[float]:
    """The closed-form LR of every step of a :func:`lr_plan` (``optimizer.lr`` times the schedule).

    For plateau it is the warmup then the peak: reductions depend on the metric.
    """
    return [float(plan["peak"]) * m for m in lr_curve(plan["schedule"], int(plan["total"]))]


def planned_lrs(cfg: DictConfig) -> Callable[[], list[float]]:
    """:func:`plan_lrs` of a config, as a function to call later."""
    plan = lr_plan(cfg)
    return lambda: plan_lrs(plan)


def draw_schedule(cfg: DictConfig) -> tuple[Path, Path]:
    """``mode=schedule``: the configured schedule's LR over ``trainer.max_steps``, as PNG and CSV.

    The CSV holds the plotted values (``step,multiplier,lr``) so the curve can be checked
    or reused without reading pixels. Both go to ``paths.study_dir``.

    Returns:
        The PNG and CSV paths.
    """
    schedule, total, peak = plain(cfg.schedule), int(cfg.trainer.max_steps), float(cfg.optimizer.lr)
    multipliers = lr_curve(schedule, total)
    lrs = [peak * m for m in multipliers]
    folder = Path(str(cfg.paths.study_dir))
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "lr_schedule.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "multiplier", "lr"])
        # repr keeps every digit, so the values read back equal the closed form exactly.
        writer.writerows(
            [step, repr(m), repr(lr)] for step, (m, lr) in enumerate(zip(multipliers, lrs, strict=True))
        )
    warmup = warmup_length(schedule, total)
    shown = {k: v for k, v in schedule.items() if k != "name" and v is not None}
    settings = textwrap.fill(", ".join(f"{k}={v}" for k, v in shown.items()), width=90)
    title = f"{schedule['name']}, peak lr {peak:g}, {total} steps\n{settings}"
    png_path = plot_lr(folder / "lr_schedule.png", title=title, planned=lrs, warmup=warmup)
    return png_path, csv_path


def print_schedule(cfg: DictConfig, png: Path, csv_path: Path) -> None:
    """Says where the plot is and the LR at the key steps."""
    schedule, total = plain(cfg.schedule), int(cfg.trainer.max_steps)
    lrs = planned_lrs(cfg)()
    warmup = warmup_length(schedule, total)
    keys = {"start": 0, "end of warmup": max(warmup - 1, 0), "middle": total // 2, "last step": total - 1}
    print(f"schedule {schedule['name']} over {total} steps (optimizer.lr={cfg.optimizer.lr}):")
    for label, step in keys.items():
        print(f"  {label:>13} (step {step}): lr {lrs[step]:.6g}")
    if schedule["name"] == "plateau":
        print(
            "  plateau: reductions depend on the validation metric; the curve shows the warmup then the peak"
        )
    print(f"plot:   {png}")
    print(f"values: {csv_path}")
