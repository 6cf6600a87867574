"""Benchmark: ``search=lr_wd`` against ``search=default`` at a fixed small weight decay, same budget.

The task is examples/modadd: (a + b) mod 31 from two token ids, AdamW. Its model memorises
the training pairs at once and generalises to the held-out ones only under strong weight
decay, so a search whose decay stays at AdamW's 0.01 finds no good LR at all. Each study
runs ``--trials`` trials of ``--steps`` steps; repeated for each ``--seeds`` seed (the
sampler's and the weights'). Reported: the best trial's val_acc and its test_acc.

    python scripts/bench/lr_wd.py              # 3 seeds x 2 searches x 16 trials: ~20 min on 2 cores
    python scripts/bench/lr_wd.py --quick      # 1 seed, 6 trials of 600 steps: ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "examples" / "modadd"
RESULTS = Path(__file__).resolve().parent / "results"
#: The two searches: LR and decay together, and the default (LR, warmup, schedule) at AdamW's decay.
SEARCHES = {"lr_wd": ["search=lr_wd"], "default, wd=0.01": ["search=default", "optimizer.weight_decay=0.01"]}


def study(
    name: str, search: list[str], *, seed: int, trials: int, steps: int, home: Path, data: Path
) -> dict:
    """Runs one study of the example project through the command line; its best trial."""
    args = [
        "-cd", str(PROJECT / "conf"), "experiment=modadd", f"data.path={data}", *search,
        f"seed={seed}", f"study.n_trials={trials}", f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps // 4}", f"study.name={name}", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "TUNER_HOME": str(home), "PYTHONPATH": str(PROJECT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tuner", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(home / "optuna.journal"))
    )
    best = optuna.load_study(study_name=name, storage=storage).best_trial
    return {
        "val_acc": best.value,
        "test_acc": best.user_attrs.get("test_acc"),
        "params": best.params,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--quick", action="store_true", help="1 seed, 6 trials of 600 steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.steps = [0], 6, 600
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "modadd.npz"
        subprocess.run([sys.executable, str(PROJECT / "make_data.py"), "--out", str(data)], check=True)
        for seed in args.seeds:
            for label, search in SEARCHES.items():
                name = f"{label.split(',')[0]}-{seed}"
                best = study(
                    name, search, seed=seed, trials=args.trials, steps=args.steps, home=Path(tmp), data=data
                )
                rows.append({"search": label, "seed": seed, **best})
                print(json.dumps(rows[-1]), flush=True)
    write(rows, args, suffix="-quick" if args.quick else "")


def write(rows: list[dict], args: argparse.Namespace, *, suffix: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"lr_wd{suffix}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    lines = [
        "| search | seed | best val_acc | its test_acc | its lr | its weight_decay | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["params"]
        lines.append(
            f"| {r['search']} | {r['seed']} | {r['val_acc']:.3f} | {r['test_acc'] if r['test_acc'] is not None else float('nan'):.3f} | "
            f"{p['lr']:.3g} | {p.get('weight_decay', 0.01):.3g} | {r['seconds']} |"
        )
    lines.append(
        f"\n{args.trials} trials of {args.steps} AdamW steps per study (examples/modadd, p = 31, no pruner); "
        "best trial by val_acc."
    )
    (RESULTS / f"lr_wd{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
