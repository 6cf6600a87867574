"""What each trial's ``lr_curve.png`` costs: a trial with the plot against one without.

Both sides are whole framework trials (Optuna trial, MLflow run with per-step LR and loss,
Lightning fit, test evaluation) of the same config; side B also asks the tracker for the
LR curve plot, drawn on its background thread. The clock stops once every write of the
trial (the PNG included) is in the store, so the figure is the full cost, not only the
part the study loop waits for. Runs alternate A/B in one process; the ratio of medians is
reported.

    python scripts/bench/lr_curve_plot.py [--pairs N] [model=mlp ...overrides]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna
import torch

from tuner._quiet import quiet_libraries
from tuner.cli import compose
from tuner.data.factory import build_datamodule
from tuner.schedule.plot import lr_plan
from tuner.tracking.tracker import Tracker, local_uri
from tuner.training.trial import run_trial

RESULTS = Path(__file__).parent / "results"


def trial(cfg, datamodule, study, tracker, parent, *, plot: bool) -> tuple[float, float]:
    """Runs one trial; returns (seconds in all, seconds the loop spent asking for the plot)."""
    start = time.perf_counter()
    optuna_trial = study.ask()
    run = tracker.start_trial(
        parent, study_name="bench", number=optuna_trial.number, params={}, config_yaml=""
    )
    outcome = run_trial(cfg, datamodule, trial=optuna_trial, run=run)
    asked = time.perf_counter()
    if plot:
        run.log_lr_curve(plan=lr_plan(cfg), title="bench")
    asked = time.perf_counter() - asked
    study.tell(optuna_trial, outcome.value)
    run.end(outcome.state, value=outcome.value, reason=outcome.reason)
    tracker._writer.drain()
    return time.perf_counter() - start, asked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(1)
    cfg = compose(["pruner=none", "trainer.max_steps=500", "trainer.val_check_interval=100", *args.overrides])
    datamodule = build_datamodule(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(local_uri(Path(tmp)), experiment="bench", artifact_root=Path(tmp))
        parent = tracker.parent_run("bench", params={})
        study = optuna.create_study(direction="maximize")
        trial(cfg, datamodule, study, tracker, parent, plot=True)  # warm imports (matplotlib) and caches
        without, with_plot, asked = [], [], []
        for i in range(args.pairs):
            without.append(trial(cfg, datamodule, study, tracker, parent, plot=False)[0])
            seconds, ask = trial(cfg, datamodule, study, tracker, parent, plot=True)
            with_plot.append(seconds)
            asked.append(ask)
            print(
                f"pair {i + 1}/{args.pairs}: without {without[-1]:.2f}s with plot {seconds:.2f}s", flush=True
            )
        tracker.close()
    row = {
        "model": cfg.model._target_,
        "steps": int(cfg.trainer.max_steps),
        "without_s": round(statistics.median(without), 3),
        "with_plot_s": round(statistics.median(with_plot), 3),
        "ratio": round(statistics.median(with_plot) / statistics.median(without), 3),
        "loop_wait_ms": round(1000 * statistics.median(asked), 3),
    }
    print("\n| model | steps | trial without plot (s) | with plot (s) | ratio | study loop waits (ms) |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {row['model']} | {row['steps']} | {row['without_s']} | {row['with_plot_s']} | {row['ratio']} "
        f"| {row['loop_wait_ms']} |"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M")
    out = RESULTS / f"lr_curve_plot-{stamp}.json"
    out.write_text(
        json.dumps({"date": stamp, "machine": platform.node(), "pairs": args.pairs, **row}, indent=2)
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
