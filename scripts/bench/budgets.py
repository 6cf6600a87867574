"""One run, many budgets: the cooldown probes' best LR by training length against full runs.

For each LR of a grid, one trial of ``--length`` steps runs with ``probe=cooldown``
(schedule ``wsd``: the probes' cooldowns are the shape and share of wsd's own). Each
probe at step s gives that LR's score at a run of ``s + c`` steps. Separately, the same
LRs are trained as whole wsd runs of ``--check`` lengths. At each checked length the
LR the probes pick is compared with the full runs' best: the LR within 1.5x, or its
full run's accuracy within 0.5 points of the best full run's.

    python scripts/bench/budgets.py                      # mnist1d MLP (Adam) and CNN (Adam), 2 seeds
    python scripts/bench/budgets.py --tasks mnist1d-mlp-adam --seeds 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._tasks import TASKS

RESULTS = Path(__file__).resolve().parent / "results"
GRID = [float(10**e) for e in np.arange(-4.0, 0.01, 1 / 3)]  # 13 LRs, 3 per decade
# wsd cools down over the last 20% of a run; a probe of 0.25 x the steps done is 20% of
# the run it makes (0.25 / 1.25), so a probe and a whole run of the same length match.
COMMON = [
    "schedule=wsd",
    "schedule.warmup=none",
    "schedule.warmup_fraction=0",
    "schedule.decay_fraction=0.2",
    "storage=memory",
    "trainer.num_threads=1",
    "trainer.not_learning_after=null",
]
PROBE = ["probe=cooldown", "probe.fraction=0.25", "probe.growth=2", "probe.shape=1-sqrt"]


def _run(task: str, lr: float, seed: int, length: int, every: int, probed: bool) -> dict[str, Any]:
    import torch

    from tuner._quiet import quiet_libraries
    from tuner.cli import compose
    from tuner.data.factory import build_datamodule
    from tuner.training.trial import run_trial

    torch.set_num_threads(1)
    quiet_libraries()
    overrides = [*TASKS[task], *COMMON, f"optimizer.lr={lr}", f"seed={seed}"]
    overrides += [f"trainer.max_steps={length}", f"trainer.val_check_interval={every}"]
    cfg = compose([*overrides, *(PROBE if probed else [])])
    outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
    done = outcome.state == "COMPLETE" and outcome.value is not None
    scores = {n: float(m["val_acc"]) for n, m in outcome.probes}
    scores[length] = float(outcome.value) if done else 0.0  # a diverged run scores nothing
    return {"task": task, "lr": lr, "seed": seed, "length": length, "probed": probed, "scores": scores}


def _mean_by_lr(rows: list[dict[str, Any]], length: int) -> dict[float, float]:
    by_lr: dict[float, list[float]] = {}
    for row in rows:
        if length in row["scores"]:
            by_lr.setdefault(row["lr"], []).append(row["scores"][length])
    return {lr: statistics.mean(v) for lr, v in by_lr.items()}


def compare(rows: list[dict[str, Any]], task: str, checks: list[int], length: int) -> list[dict[str, Any]]:
    """Per checked length: the probes' pick against the whole runs' best."""
    probed = [r for r in rows if r["task"] == task and r["probed"]]
    out = []
    for check in checks:
        full = _mean_by_lr([r for r in rows if r["task"] == task and not r["probed"]], check)
        probe_scores = _mean_by_lr(probed, check)
        if not full or not probe_scores:
            continue
        pick = max(probe_scores, key=lambda lr: probe_scores[lr])
        best = max(full, key=lambda lr: full[lr])
        ratio = max(pick, best) / min(pick, best)
        gap = 100 * (full[best] - full[pick])
        out.append(
            {
                "length": check,
                "probe_lr": pick,
                "full_lr": best,
                "lr_ratio": ratio,
                "probe_pick_full_acc": full[pick],
                "full_best_acc": full[best],
                "gap_points": gap,
                "ok": ratio <= 1.5 or gap <= 0.5,
            }
        )
    return out


def probe_cost(length: int, every: int) -> float:
    """Steps of a probed trial (branches included) as a multiple of one full run."""
    from tuner.training.probe import CooldownProbe, ProbeSettings

    probe = CooldownProbe(
        ProbeSettings(fraction=0.25), floor_ratio=0.0, total_steps=length, train_batches=list, every=every
    )
    return (length + sum(probe.length_at(s) for s in probe.rungs())) / length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist1d-mlp-adam", "mnist1d-cnn-adam"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--checks", nargs="+", type=int, default=[500, 1000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    start = time.time()
    jobs = [(t, lr, s, args.length, args.every, True) for t in args.tasks for lr in GRID for s in args.seeds]
    jobs += [
        (t, lr, s, c, args.every, False)
        for t in args.tasks
        for lr in GRID
        for s in args.seeds
        for c in args.checks
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_run, *zip(*jobs, strict=True)))
    result = {
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%MZ"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
        "seconds": round(time.time() - start),
        "cost_multiple": probe_cost(args.length, args.every),
        "tasks": {t: compare(rows, t, args.checks, args.length) for t in args.tasks},
        "lengths": sorted({n for r in rows if r["probed"] for n in r["scores"]}),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"budgets-{result['when']}"
    stem.with_suffix(".json").write_text(json.dumps({**result, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Budgets from cooldown probes, {result['when']} on {result['machine']}, {result['seconds']} s. "
        f"Lengths scored by one probed trial: {result['lengths']}; its cost: "
        f"{result['cost_multiple']:.2f}x one full run.",
        "",
        "| task | length | LR by probes | LR by full runs | ratio | full-run acc of probes' LR | best full-run acc | gap (points) | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for task, rows in result["tasks"].items():
        for r in rows:
            lines.append(
                f"| {task} | {r['length']} | {r['probe_lr']:.3g} | {r['full_lr']:.3g} | {r['lr_ratio']:.2f} | "
                f"{r['probe_pick_full_acc']:.4f} | {r['full_best_acc']:.4f} | {r['gap_points']:.2f} | "
                f"{'yes' if r['ok'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
