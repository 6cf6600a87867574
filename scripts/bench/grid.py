"""Dense learning-rate grid on a task: the oracle a study is measured against.

Trains every LR of a log-spaced grid with each seed through the same trial code the
studies use (no pruning), and writes per-LR validation and test accuracy, the best LR
(chosen on the seeds' mean validation accuracy) and its mean test accuracy.

    python scripts/bench/grid.py [--points 13] [--seeds 0 1] [--name default] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from tuner._quiet import quiet_libraries
from tuner.build import build_datamodule
from tuner.cli import compose
from tuner.objective import run_trial

ORACLES = Path(__file__).parent / "oracles"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=13)
    parser.add_argument("--low", type=float, default=1e-4)
    parser.add_argument("--high", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--name", default="default")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(1)
    lrs = [args.low * (args.high / args.low) ** (i / (args.points - 1)) for i in range(args.points)]
    rows = []
    started = time.monotonic()
    for lr in lrs:
        val, test = [], []
        for seed in args.seeds:
            cfg = compose([*args.overrides, f"seed={seed}", f"optimizer.lr={lr}"])
            outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
            val.append(outcome.value if outcome.state == "COMPLETE" else 0.0)
            test.append(outcome.metrics.get("test_acc", 0.0))
        rows.append({"lr": lr, "val_acc": val, "test_acc": test})
        print(
            f"lr {lr:.3g}: val {statistics.mean(val):.4f} test {statistics.mean(test):.4f} "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )
    best = max(rows, key=lambda r: statistics.mean(r["val_acc"]))
    cfg = compose(args.overrides)
    oracle = {
        "task": args.name,
        "how": (
            f"{args.points} log-spaced LRs in [{args.low}, {args.high}] x seeds {args.seeds}, "
            f"no pruning, through tuner.objective.run_trial; overrides {args.overrides}; "
            "best LR chosen on mean validation accuracy, reported on the test split"
        ),
        "model": cfg.model._target_,
        "data": cfg.data._target_,
        "optimizer": cfg.optimizer.name,
        "schedule": cfg.schedule.name,
        "max_steps": int(cfg.trainer.max_steps),
        "best_lr": best["lr"],
        "best_val_acc": statistics.mean(best["val_acc"]),
        "best_test_acc": statistics.mean(best["test_acc"]),
        "max_test_acc": max(statistics.mean(r["test_acc"]) for r in rows),
        "grid": rows,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": platform.node(),
    }
    ORACLES.mkdir(parents=True, exist_ok=True)
    path = ORACLES / f"{args.name}.json"
    path.write_text(json.dumps(oracle, indent=2))
    print(
        f"best lr {oracle['best_lr']:.3g}: val {oracle['best_val_acc']:.4f} test {oracle['best_test_acc']:.4f} "
        f"(best test over the grid {oracle['max_test_acc']:.4f}); written {path}"
    )


if __name__ == "__main__":
    main()
