"""Dense grid on a task: the oracle a study is measured against.

Trains every point of a grid (the LR, and any other config path: schedule or optimizer
family, weight decay...) for each seed, through the same trial code the studies use (no
pruning), and writes per-point validation and test accuracy, the best point (chosen on the
seeds' mean validation accuracy) and its mean test accuracy. A point's values are written
as the search writes sampled values, so ``schedule.name=wsd`` or ``optimizer.name=sgd``
brings that family's own keys, exactly as a search space's parameter does.

    python scripts/bench/grid.py [--points 13] [--seeds 0 1] [--schedules constant cosine]
                                 [--workers 2] [--name default] [overrides...]
"""

from __future__ import annotations

import argparse
import itertools
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


def train_point(overrides: list[str], values: dict[str, Any]) -> tuple[float, float, str]:
    """One full trial without pruning: (final val_acc, test_acc, state); diverged scores 0.

    ``values`` (config path -> value) are written as the search writes sampled values
    (``tuner.search.space.apply``): a drawn optimizer or schedule family gets its own keys.
    """
    import torch

    from tuner._quiet import quiet_libraries
    from tuner.cli import compose
    from tuner.data.factory import build_datamodule
    from tuner.search.space import ParamSpec, apply
    from tuner.training.trial import run_trial

    quiet_libraries()
    torch.set_num_threads(1)
    base = compose(overrides)
    cfg = apply(base, [ParamSpec(path, path, "categorical") for path in values], values)
    outcome = run_trial(cfg, build_datamodule(base), trial=None, run=None)
    complete = outcome.state == "COMPLETE" and outcome.value is not None
    return (
        float(outcome.value) if complete and outcome.value is not None else 0.0,
        float(outcome.metrics.get("test_acc", 0.0)),
        outcome.state,
    )


def cells_of(axes: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (config path -> values), the first axis slowest."""
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def compute(
    name: str,
    overrides: Sequence[str],
    *,
    axes: dict[str, Sequence[Any]],
    seeds: Sequence[int],
    workers: int = 1,
    out_dir: Path = ORACLES,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains the grid, writes ``out_dir/<name>.json`` and returns what it wrote.

    Args:
        name: Oracle name (the file's stem).
        overrides: Config overrides that make the task (and its trial length).
        axes: Config path -> values, crossed (``optimizer.lr``, ``schedule.name``...).
        seeds: Seeds of each point (model init; the data split comes from the overrides).
        workers: Processes training points in parallel (one torch thread each).
        out_dir: Where the JSON goes.
        say: Progress lines.
    """
    from tuner.cli import compose

    started = time.monotonic()
    cells = cells_of(axes)
    jobs = [([*overrides, f"seed={seed}"], cell) for cell in cells for seed in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        points = []
        for i, point in enumerate(pool.map(train_point, *zip(*jobs, strict=True)), start=1):
            points.append(point)
            if i % max(1, len(jobs) // 10) == 0 or i == len(jobs):
                say(f"  oracle {name}: {i}/{len(jobs)} trials ({time.monotonic() - started:.0f}s)")
    rows = []
    for index, cell in enumerate(cells):
        mine = points[index * len(seeds) : (index + 1) * len(seeds)]
        rows.append(
            {
                "point": cell,
                "lr": cell.get("optimizer.lr"),
                "schedule": cell.get("schedule.name"),
                "val_acc": [p[0] for p in mine],
                "test_acc": [p[1] for p in mine],
                "states": [p[2] for p in mine],
            }
        )
    best = max(rows, key=lambda r: statistics.mean(r["val_acc"]))
    cfg = compose(list(overrides))
    shape = " x ".join(f"{path} {list(values)}" for path, values in axes.items())
    oracle = {
        "task": name,
        "how": (
            f"grid {shape} x seeds {list(seeds)}, each a full trial without pruning through "
            f"tuner.training.trial.run_trial (diverged or failed = 0); overrides {list(overrides)}; best point "
            "chosen on the seeds' mean validation accuracy, reported on the test split"
        ),
        "overrides": list(overrides),
        "model": cfg.model._target_,
        "data": cfg.data._target_,
        "optimizer": cfg.optimizer.name,
        "schedule": cfg.schedule.name,
        "max_steps": int(cfg.trainer.max_steps),
        "axes": {path: list(values) for path, values in axes.items()},
        "seeds": list(seeds),
        "best_point": best["point"],
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
        axes={
            "optimizer.lr": log_grid(args.low, args.high, args.points),
            **({"schedule.name": args.schedules} if args.schedules else {}),
        },
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
