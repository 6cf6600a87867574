"""Tasks of the finder benchmark and the grid oracle: the best LR of a dense grid of real trials.

The oracle trains each grid LR exactly as a study trial would (``run_trial``: the default
study's steps and evaluations, a constant schedule) and selects on the validation metric;
the test split is never read for selection.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ORACLES = Path(__file__).resolve().parent / "oracles"

#: name -> the overrides that make the task (different data, models and optimizers).
TASKS: dict[str, list[str]] = {
    "mnist1d-cnn-adam": ["data=mnist1d", "model=cnn1d", "optimizer=adam"],
    "mnist1d-mlp-sgd": ["data=mnist1d", "model=mlp", "optimizer=sgd"],
    # SGD, not AdamW, on digits: with AdamW every LR from 1e-4 to 3e-2 ends within 0.7 points
    # (oracles/digits-mlp-adamw.json), so that grid has no best LR to be measured against.
    "digits-mlp-sgd": ["data=digits", "model=mlp", "optimizer=sgd"],
    "mnist1d-mlp-adam": ["data=mnist1d", "model=mlp", "optimizer=adam"],
    # Held out: finder.scale was fitted on the four above; this one checks it.
    "mnist1d-cnn-sgd": ["data=mnist1d", "model=cnn1d", "optimizer=sgd"],
}
#: What every run of the benchmark shares: the default study's length, a constant LR.
COMMON = ["schedule=constant", "storage=memory", "trainer.num_threads=1"]
GRID = [float(10**e) for e in np.arange(-4.0, 0.01, 0.25)]  # 17 LRs, 4 per decade
GRID_SEEDS = (0, 1)


def compose_task(task: str, *extra: str) -> Any:
    from tuner.cli import compose

    return compose([*TASKS[task], *COMMON, *extra])


def _grid_point(task: str, lr: float, seed: int) -> dict[str, Any]:
    import torch

    from tuner._quiet import quiet_libraries
    from tuner.data.factory import build_datamodule
    from tuner.training.trial import run_trial

    torch.set_num_threads(1)
    quiet_libraries()
    cfg = compose_task(task, f"optimizer.lr={lr}", f"seed={seed}")
    outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
    # A diverged or failed run scores nothing: it is never the best LR.
    value = outcome.value if outcome.state == "COMPLETE" and outcome.value is not None else 0.0
    return {"lr": lr, "seed": seed, "state": outcome.state, "val_acc": float(value)}


def grid_best(lrs: list[float], values: list[float]) -> float:
    """The LR of the best seed-mean value after a [1, 2, 1]/4 smoothing along the log-LR grid.

    The smoothing damps single-point noise on the flat top of the accuracy curve; a
    parabola through the best smoothed point and its neighbours places it between grid points.
    """
    v = np.asarray(values, dtype=float)
    padded = np.concatenate([v[:1], v, v[-1:]])
    smooth = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    i = int(np.argmax(smooth))
    x = np.log10(lrs)
    if 0 < i < len(v) - 1:
        a, b, c = smooth[i - 1], smooth[i], smooth[i + 1]
        denominator = a - 2 * b + c
        if denominator < 0:
            shift = 0.5 * (a - c) / denominator
            return float(10 ** (x[i] + shift * (x[i + 1] - x[i])))
    return float(lrs[i])


def oracle(task: str, *, recompute: bool, workers: int) -> dict[str, Any]:
    """The task's grid oracle, from ``oracles/<task>.json`` or computed (and cached) now."""
    path = ORACLES / f"{task}.json"
    if path.exists() and not recompute:
        return dict(json.loads(path.read_text()))
    started = time.monotonic()
    jobs = [(task, lr, seed) for lr in GRID for seed in GRID_SEEDS]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        points = list(pool.map(_grid_point, *zip(*jobs, strict=True)))
    means = [float(np.mean([p["val_acc"] for p in points if p["lr"] == lr])) for lr in GRID]
    result = {
        "task": task,
        "overrides": [*TASKS[task], *COMMON],
        "how": (
            f"{len(GRID)} log-spaced LRs x seeds {list(GRID_SEEDS)}, each a full trial (run_trial: "
            "default trainer.max_steps and val_check_interval, constant schedule); value: final val_acc "
            "(diverged = 0); grid-best: argmax of the seed-mean after [1,2,1]/4 smoothing along the grid, "
            "refined by a parabola"
        ),
        "points": points,
        "mean_val_acc": dict(zip([f"{lr:.6g}" for lr in GRID], means, strict=True)),
        "best_lr": grid_best(GRID, means),
        "best_value": max(means),
        "seconds": round(time.monotonic() - started, 1),
        "computed": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    ORACLES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def log_error(suggested: float, best: float) -> float:
    """|log10(suggested / best)|."""
    return abs(math.log10(suggested / best))


def regret(lr: float, found: dict[str, Any]) -> float:
    """Points of val_acc lost at ``lr`` against the grid's best (seed means, linear in log LR)."""
    table = sorted((float(k), v) for k, v in found["mean_val_acc"].items())
    value = np.interp(math.log10(lr), [math.log10(k) for k, _ in table], [v for _, v in table])
    return 100 * (float(found["best_value"]) - float(value))


if __name__ == "__main__":  # computing the oracles alone: python scripts/bench/_tasks.py
    os.environ.setdefault("TUNER_HOME", "/tmp/tuner-bench")
    for name in TASKS:
        found = oracle(name, recompute=False, workers=2)
        print(name, f"best lr {found['best_lr']:.3g}", found["mean_val_acc"], f"{found['seconds']} s")
