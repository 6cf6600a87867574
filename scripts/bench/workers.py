"""Parallel workers against one worker: the same study, wall time and trials per minute.

Runs the real command line (``python -m tuner launcher=local ...``) on one study size
with 1 worker (the baseline) and with N workers, each in a fresh output folder, in the
order baseline, parallel, parallel, baseline (with ``--repeats 2``) so that a change in
the machine's load hits both alike. Checks that each study ended with exactly its
total, every trial with its own parameters, none running or queued. Prints a Markdown
table and writes it with the raw figures to ``scripts/bench/results/``.

    python scripts/bench/workers.py                      # CPU: 2 workers vs 1, 12 trials
    python scripts/bench/workers.py --device gpu         # 2 workers packed on one GPU vs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"


@dataclass
class Run:
    """One study of the benchmark and what its storage holds afterwards."""

    workers: int
    wall_s: float
    trial_phase_s: float
    finished: int
    distinct_params: int
    left_running_or_queued: int
    surplus: int
    workers_used: int

    @property
    def per_minute(self) -> float:
        return 60.0 * self.finished / self.wall_s


def run_study(workers: int, args: argparse.Namespace, home: Path) -> Run:
    """One study through the command line in a fresh folder."""
    gpu = args.device == "gpu"
    overrides = [
        "launcher=local",
        f"launcher.workers={workers}",
        "launcher.threads_per_worker=1",
        "trainer.num_threads=1",
        f"study.n_trials={args.trials}",
        "study.name=bench",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={max(args.steps // 4, 1)}",
        f"tracking.step_flush_every={max(args.steps // 4, 1)}",
        "pruner=none",  # every trial does the same work
        "sampler=random",
        "report.enabled=false",  # the plots at the end cost both runs the same; not measured here
        f"trainer.accelerator={'gpu' if gpu else 'cpu'}",
        f"launcher.trials_per_gpu={workers if gpu else 1}",
        *([f"study.timeout={args.study_timeout}"] if args.study_timeout else []),
        *args.overrides,
    ]
    env = {**os.environ, "TUNER_HOME": str(home / "runs"), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "--quiet", *overrides],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"the {workers}-worker study failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    storage = JournalStorage(JournalFileBackend(str(home / "runs" / "optuna.journal")))
    trials = optuna.load_study(study_name="bench", storage=storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.state.is_finished() and not t.system_attrs.get("tuner.surplus")]
    spans = [
        (t.datetime_start, t.datetime_complete) for t in done if t.datetime_start and t.datetime_complete
    ]
    phase = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds() if spans else 0.0
    return Run(
        workers=workers,
        wall_s=wall,
        trial_phase_s=phase,
        finished=len(done),
        distinct_params=len({json.dumps(t.params, sort_keys=True) for t in done}),
        left_running_or_queued=sum(not t.state.is_finished() for t in trials),
        surplus=sum(bool(t.system_attrs.get("tuner.surplus")) for t in trials),
        workers_used=len({str(t.user_attrs.get("worker", {}).get("name")) for t in done}),
    )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--repeats", type=int, default=1, help="pairs of runs, one baseline and one parallel each"
    )
    parser.add_argument(
        "--study-timeout", type=float, default=None, help="seconds; trials per minute still hold"
    )
    parser.add_argument("--name", default="workers")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    load_before = load_average()
    runs: list[Run] = []
    order = [1, args.workers, args.workers, 1] * args.repeats
    for workers in order[: 2 * args.repeats]:
        with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
            run = run_study(workers, args, Path(tmp))
        runs.append(run)
        print(f"{workers} worker(s): {run.wall_s:.1f}s wall, {run.finished} trials", flush=True)
    load_after = load_average()
    base = [r for r in runs if r.workers == 1]
    many = [r for r in runs if r.workers == args.workers]

    def rate(group: list[Run], seconds: str) -> float:
        return sum(r.finished for r in group) / sum(getattr(r, seconds) for r in group)

    speedup_wall = rate(many, "wall_s") / rate(base, "wall_s")
    speedup_phase = rate(many, "trial_phase_s") / rate(base, "trial_phase_s")
    # With a study timeout the totals are not expected, but nothing may be left running.
    exact = all(
        r.left_running_or_queued == 0
        and r.distinct_params == r.finished
        and (args.study_timeout or r.finished == args.trials)
        for r in runs
    )
    lines = [
        f"## {args.workers} workers vs 1 ({args.device}, {args.trials} trials of {args.steps} steps)",
        "",
        "| workers | wall s | trials | trials/min | trial phase s | distinct params | left running | workers used |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.workers} | {r.wall_s:.1f} | {r.finished} | {r.per_minute:.2f} | {r.trial_phase_s:.1f} | "
            f"{r.distinct_params} | {r.left_running_or_queued} | {r.workers_used} |"
            for r in runs
        ),
        "",
        f"Speed-up, whole command (trials per minute, {args.workers} workers / 1): **{speedup_wall:.2f}x**",
        f"Speed-up, first trial start to last trial end: {speedup_phase:.2f}x",
        f"Exact totals, no duplicate or lost trials: {'yes' if exact else 'NO'}",
        f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}; {os.cpu_count()} CPUs. "
        "Other processes share this machine; the runs alternate so that load drifts hit both alike.",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M")
    record = {
        "benchmark": args.name,
        "device": args.device,
        "workers": args.workers,
        "trials": args.trials,
        "steps": args.steps,
        "speedup_wall": speedup_wall,
        "speedup_trial_phase": speedup_phase,
        "exact_totals": exact,
        "load_before": load_before,
        "load_after": load_after,
        "runs": [asdict(r) for r in runs],
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "date": stamp,
    }
    (RESULTS / f"{args.name}-{stamp}.json").write_text(json.dumps(record, indent=2))
    (RESULTS / f"{args.name}-{stamp}.md").write_text(table + "\n")
    if not exact:
        raise SystemExit("a study did not end with exactly its total")


if __name__ == "__main__":
    main()
