"""Per-trial overhead of the framework against a plain PyTorch loop.

Both train the same model from the same initial weights on the same batches for the same
number of steps, with the same optimizer, schedule and validation interval. The framework
side is a whole trial: Optuna trial, MLflow nested run (per-step LR and loss, the LR
curve plot a study draws per trial), Lightning fit with pruning and divergence callbacks,
test evaluation. Runs alternate A/B in one
process and the ratio of medians is reported, so machine noise hits both sides alike.

    python scripts/bench/overhead.py [--quick] [model=mlp ...overrides]
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
from rawloop import accuracy
from torch.nn import functional as F

from tuner.cli import compose
from tuner.config.nodes import plain
from tuner.data.factory import build_datamodule
from tuner.models.factory import build_model
from tuner.optimizer.factory import build_optimizer
from tuner.schedule.functions import build_scheduler
from tuner.schedule.plot import lr_plan
from tuner.study.session import sidecar_wanted
from tuner.tracking.tracker import Tracker, local_uri
from tuner.training.trial import run_trial

RESULTS = Path(__file__).parent / "results"


def raw_loop(cfg, datamodule) -> float:
    """Trains like a trial, by hand; returns the seconds it took."""
    torch.manual_seed(int(cfg.seed))
    start = time.perf_counter()
    net = build_model(cfg, datamodule)
    optimizer = build_optimizer(net, plain(cfg.optimizer))
    total, every = int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval)
    scheduler = build_scheduler(optimizer, plain(cfg.schedule), total)
    step, losses, lrs = 0, [], []
    loader = datamodule.train_dataloader()  # one loader: each pass reshuffles, as in a trial
    while step < total:
        for x, y in loader:
            lrs.append(optimizer.param_groups[0]["lr"])
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
            step += 1
            if step % every == 0:
                accuracy(net, datamodule.val_dataloader())
            if step >= total:
                break
    accuracy(net, datamodule.test_dataloader())
    torch.stack(losses).tolist()
    return time.perf_counter() - start


def framework_trial(cfg, datamodule, study, tracker, parent) -> float:
    start = time.perf_counter()
    trial = study.ask()
    run = tracker.start_trial(
        parent, study_name="bench", number=trial.number, params={"lr": 1e-3}, config_yaml=""
    )
    outcome = run_trial(cfg, datamodule, trial=trial, run=run)
    # As a study's trial does (tuner.study.loop): the LR curve plot, drawn on the tracker's thread.
    run.log_lr_curve(plan=lr_plan(cfg), title="bench")
    study.tell(trial, outcome.value)
    run.end(outcome.state, value=outcome.value, reason=outcome.reason)
    tracker._writer.drain()  # the trial's records are in the store before the clock stops
    return time.perf_counter() - start


def measure(cfg, datamodule, *, pairs: int, say=print) -> dict:
    """Median seconds of a raw loop and of a framework trial on ``cfg``, and their ratio.

    One warm-up of each, then ``pairs`` alternating A/B runs in this process.
    """
    with tempfile.TemporaryDirectory() as tmp:
        # tracking.sidecar=false: the writes in the training process, as when workers fill every core.
        tracker = Tracker(
            local_uri(Path(tmp)),
            experiment="bench",
            artifact_root=Path(tmp),
            sidecar=sidecar_wanted(cfg),
            log_every=int(cfg.tracking.log_every_n_steps),
        )
        parent = tracker.parent_run("bench", params={})
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        framework_trial(cfg, datamodule, study, tracker, parent)  # warm caches and imports
        raw_loop(cfg, datamodule)
        raw, framework = [], []
        for i in range(pairs):
            raw.append(raw_loop(cfg, datamodule))
            framework.append(framework_trial(cfg, datamodule, study, tracker, parent))
            say(f"pair {i + 1}/{pairs}: raw {raw[-1]:.2f}s framework {framework[-1]:.2f}s")
        tracker.close()
    return {
        "model": cfg.model._target_,
        "data": cfg.data._target_,
        "steps": int(cfg.trainer.max_steps),
        "pairs": pairs,
        "raw_s": round(statistics.median(raw), 3),
        "framework_s": round(statistics.median(framework), 3),
        "ratio": round(statistics.median(framework) / statistics.median(raw), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 pairs of 500 steps")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = ["trainer.max_steps=500"] if args.quick else []
    pairs = 3 if args.quick else args.pairs
    cfg = compose(["pruner=none", *steps, *args.overrides])
    row = measure(cfg, build_datamodule(cfg), pairs=pairs, say=lambda line: print(line, flush=True))
    print("\n| model | steps | raw loop (s) | framework trial (s) | ratio |\n|---|---|---|---|---|")
    print(f"| {row['model']} | {row['steps']} | {row['raw_s']} | {row['framework_s']} | {row['ratio']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M")
    out = RESULTS / f"overhead-{stamp}.json"
    out.write_text(json.dumps({"date": stamp, "machine": platform.node(), **row}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
