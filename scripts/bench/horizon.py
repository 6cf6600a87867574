"""Which LR wins at a fraction of the training length? (The question screening rests on.)

Trains a task's config at a few LRs for several lengths (each a whole run, its schedule
compressed to that length, as a screening trial is) and prints the validation accuracy per
LR and length, two seeds. A screening fraction is safe where the best LR at that length
is the best at the full one.

    python scripts/bench/horizon.py mnist1d-mlp-sgd 0.1,0.316,0.562,1,1.78,3.16,5.62
    python scripts/bench/horizon.py mnist1d-cnn-5p 0.003,0.01,0.03,0.1,0.3 optimizer=adam \\
        schedule.name=cosine schedule.warmup_fraction=0.1 optimizer.weight_decay=1e-4
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from tasks import TASKS, task_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("lrs", help="comma-separated learning rates")
    parser.add_argument("overrides", nargs="*", help="more config overrides (e.g. the optimizer)")
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1", help="lengths as shares of the task's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("TUNER_HOME", tempfile.mkdtemp(prefix="tuner-horizon-"))
    from tuner._quiet import quiet_libraries
    from tuner.cli import compose
    from tuner.data.factory import build_datamodule
    from tuner.training.trial import run_trial

    quiet_libraries()
    lrs = [float(x) for x in args.lrs.split(",")]
    full = TASKS[args.task].steps
    base = [*task_overrides(args.task), *args.overrides, "trainer.not_learning_after=null"]
    datamodule = build_datamodule(compose(base))
    print(f"| seed | steps | {' | '.join(f'lr {lr:g}' for lr in lrs)} |")
    print(f"|---|---:|{'---:|' * len(lrs)}")
    for seed in args.seeds:
        for fraction in (float(f) for f in args.fractions.split(",")):
            steps = max(10, round(full * fraction))
            row = []
            for lr in lrs:
                length = [f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}"]
                cfg = compose([*base, *length, f"optimizer.lr={lr}", f"seed={seed}"])
                outcome = run_trial(cfg, datamodule, trial=None, run=None)
                row.append("diverged" if outcome.value is None else f"{outcome.value:.3f}")
            print(f"| {seed} | {steps} | {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
