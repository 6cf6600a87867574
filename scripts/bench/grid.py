"""Dense learning-rate (x schedule) grid on a task: the oracle a study is measured against.

Trains every LR of a log-spaced grid, for each schedule family and each seed, through the
same trial code the studies use (no pruning), and writes per-point validation and test
accuracy, the best point (chosen on the seeds' mean validation accuracy) and its mean test
accuracy. A schedule family is set as ``schedule.name=<family>`` on top of the configured
schedule group, exactly as a search space's ``schedule`` parameter sets it.

    python scripts/bench/grid.py [--points 13] [--seeds 0 1] [--schedules constant cosine]
                                 [--workers 2] [--name default] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ORACLES = Path(__file__).parent / "oracles"


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` LRs evenly spaced in log between ``low`` and ``high`` inclusive."""
    if points == 1:
        return [low]
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


def _point(overrides: list[str]) -> tuple[float, float, str]:
    """One full trial without pruning: (final val_acc, test_acc, state); diverged scores 0."""
    import torch

    from tuner._quiet import quiet_libraries
    from tuner.build import build_datamodule
    from tuner.cli import compose
    from tuner.objective import run_trial

    quiet_libraries()
    torch.set_num_threads(1)
    cfg = compose(overrides)
    outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
    complete = outcome.state == "COMPLETE" and outcome.value is not None
    return (
        float(outcome.value) if complete and outcome.value is not None else 0.0,
        float(outcome.metrics.get("test_acc", 0.0)),
        outcome.state,
    )


def compute(
    name: str,
    overrides: Sequence[str],
    *,
    lrs: Sequence[float],
    schedules: Sequence[str | None],
    seeds: Sequence[int],
    workers: int = 1,
    out_dir: Path = ORACLES,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains the grid, writes ``out_dir/<name>.json`` and returns what it wrote.

    Args:
        name: Oracle name (the file's stem).
        overrides: Config overrides that make the task (and its trial length).
        lrs: Peak learning rates of the grid.
        schedules: Schedule families (``schedule.name``); None keeps the configured one.
        seeds: Seeds of each point (model init; the data split comes from the overrides).
        workers: Processes training points in parallel (one torch thread each).
        out_dir: Where the JSON goes.
        say: Progress lines.
    """
    from tuner.cli import compose

    started = time.monotonic()
    cells = [(lr, schedule) for schedule in schedules for lr in lrs]
    jobs = [
        [
            *overrides,
            f"seed={seed}",
            f"optimizer.lr={lr}",
            *([f"schedule.name={schedule}"] if schedule else []),
        ]
        for lr, schedule in cells
        for seed in seeds
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        points = []
        for i, point in enumerate(pool.map(_point, jobs), start=1):
            points.append(point)
            if i % max(1, len(jobs) // 10) == 0 or i == len(jobs):
                say(f"  oracle {name}: {i}/{len(jobs)} trials ({time.monotonic() - started:.0f}s)")
    rows = []
    for index, (lr, schedule) in enumerate(cells):
        mine = points[index * len(seeds) : (index + 1) * len(seeds)]
        rows.append(
            {
                "lr": lr,
                "schedule": schedule,
                "val_acc": [p[0] for p in mine],
                "test_acc": [p[1] for p in mine],
                "states": [p[2] for p in mine],
            }
        )
    best = max(rows, key=lambda r: statistics.mean(r["val_acc"]))
    cfg = compose(list(overrides))
    oracle = {
        "task": name,
        "how": (
            f"{len(lrs)} log-spaced LRs in [{min(lrs):g}, {max(lrs):g}] x schedules {list(schedules)} "
            f"x seeds {list(seeds)}, each a full trial without pruning through tuner.objective.run_trial "
            f"(diverged or failed = 0); overrides {list(overrides)}; best point chosen on the seeds' mean "
            "validation accuracy, reported on the test split"
        ),
        "overrides": list(overrides),
        "model": cfg.model._target_,
        "data": cfg.data._target_,
        "optimizer": cfg.optimizer.name,
        "schedule": cfg.schedule.name,
        "max_steps": int(cfg.trainer.max_steps),
        "lrs": list(lrs),
        "schedules": list(schedules),
        "seeds": list(seeds),
        "best_lr": best["lr"],
        "best_schedule": best["schedule"],
        "best_val_acc": statistics.mean(best["val_acc"]),
        "best_test_acc": statistics.mean(best["test_acc"]),
        "max_test_acc": max(statistics.mean(r["test_acc"]) for r in rows),
        "grid": rows,
        "seconds": round(time.monotonic() - started, 1),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": platform.node(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(oracle, indent=1))
    os.replace(tmp, path)
    return oracle


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=13)
    parser.add_argument("--low", type=float, default=1e-4)
    parser.add_argument("--high", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--schedules",
        nargs="*",
        default=[],
        help="schedule families (schedule.name); none: the configured one",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--name", default="default")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from tuner._quiet import quiet_libraries

    quiet_libraries()
    oracle = compute(
        args.name,
        args.overrides,
        lrs=log_grid(args.low, args.high, args.points),
        schedules=args.schedules or [None],
        seeds=args.seeds,
        workers=args.workers,
    )
    print(
        f"best lr {oracle['best_lr']:.3g} schedule {oracle['best_schedule'] or oracle['schedule']}: "
        f"val {oracle['best_val_acc']:.4f} test {oracle['best_test_acc']:.4f} "
        f"(best test over the grid {oracle['max_test_acc']:.4f}); written {ORACLES / args.name}.json"
    )


if __name__ == "__main__":
    main()
