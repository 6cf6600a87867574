"""The benchmark suite: this project and the ways people tune an LR today, side by side.

For each task (``tasks.TASKS``) and seed, every peer (``peers.PEERS``) searches the same
space (peak LR, log scale, and the schedule family) under the same budget of training
steps. Measured against the task's dense-grid oracle (``grid.py``; LR x schedule, two
seeds; loaded from ``oracles/``, computed when missing): training steps and wall time until
a trial first scores within one point of the oracle's validation accuracy, the share of
seeds that get there within the budget, and the best value at the budget, as medians over
seeds; plus the framework's per-trial overhead against a raw PyTorch loop on the same steps
(``overhead.py``). Jobs run in a process pool, one torch thread each.

    python scripts/bench/suite.py             # default size: 3 tasks x 5 seeds
    python scripts/bench/suite.py --quick     # 3 tasks x 2 seeds, a smaller budget
    python scripts/bench/suite.py --recompute-oracles

Writes ``results/suite-<size>-<date>-<machine>.{json,md,png}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from grid import compute
from jobs import Job
from peers import PEERS, Peer, available, worker_init
from tasks import TASKS, cell_means, oracle_name, target, task_overrides

HERE = Path(__file__).resolve().parent
#: The peers whose steps to target the goals compare with the project's (``report.OURS``).
GOAL_PEERS = ("optuna+median", "optuna+hyperband", "tpe-per-process", "random")


@dataclass(frozen=True)
class Size:
    """How big a run of the suite is. ``steps``/``val_every`` None: each task's own trial."""

    name: str
    tasks: tuple[str, ...]
    seeds: int
    budget_trials: int  # the step budget, in full trials of the task
    pairs: int  # overhead A/B pairs per task
    steps: int | None = None
    val_every: int | None = None
    thin_grid: bool = False  # the smoke test's: at most 3 LRs and 2 values of any other axis

    def trial(self, task: str) -> tuple[int, int]:
        """(steps, val_every) of one trial of ``task`` at this size."""
        return self.steps or TASKS[task].steps, self.val_every or TASKS[task].val_every

    def budget(self, task: str) -> int:
        return self.trial(task)[0] * self.budget_trials


SIZES = {
    # 10 seeds: with 5, one seed more or less reaching the target moves the median by trials.
    "default": Size("default", tuple(TASKS), 10, 10, 3),
    "quick": Size("quick", tuple(TASKS), 1, 3, 1),
    # For the smoke test: seconds, not a measurement.
    "tiny": Size("tiny", tuple(TASKS), 1, 2, 1, steps=40, val_every=20, thin_grid=True),
}


def grid_axes(task: str, size: Size) -> dict[str, list]:
    """The oracle grid of a task at this size (thinned for the smoke test)."""
    axes = TASKS[task].grid
    if not size.thin_grid:
        return {path: list(values) for path, values in axes.items()}
    return {
        path: list(values[:: max(1, len(values) // 2)][: 3 if path == "optimizer.lr" else 2])
        for path, values in axes.items()
    }


def load_oracle(task: str, size: Size, *, folder: Path, recompute: bool, workers: int) -> dict:
    """The task's oracle for this trial length and grid, computed (and stored) if missing."""
    steps, val_every = size.trial(task)
    name = oracle_name(task, steps)
    path = folder / f"{name}.json"
    axes, seeds = grid_axes(task, size), list(TASKS[task].grid_seeds)
    if path.exists() and not recompute:
        oracle = json.loads(path.read_text())
        if oracle.get("axes") == axes and oracle.get("seeds") == seeds:
            return dict(oracle)
        print(f"oracle {path} was made for another grid; computing it again")
    cells = 1
    for values in axes.values():
        cells *= len(values)
    print(f"computing the oracle of {task} ({cells} grid points x seeds {seeds})")
    return compute(
        name,
        [*task_overrides(task, steps=steps, val_every=val_every), *TASKS[task].space.overrides()],
        axes=axes,
        seeds=seeds,
        workers=workers,
        out_dir=folder,
    )


def _cpu() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_peer(peer: Peer, job: Job) -> dict[str, Any]:
    """One peer on one task and seed (in a pool worker); its trace with the CPU seconds it used."""
    start = _cpu()
    trace = peer.run(job)
    trace["cpu_s"] = _cpu() - start
    return trace


def run_overhead(task: str, size: Size, pairs: int) -> dict[str, Any]:
    """The framework trial against a raw loop on the task's trial (no pruning), in a pool worker."""
    import overhead

    from tuner.cli import compose
    from tuner.data.factory import build_datamodule

    start = _cpu()
    # As the project's peers run here: one job per core, no core free for a tracking sidecar.
    steps, val_every = size.trial(task)
    cfg = compose(
        [
            *task_overrides(task, steps=steps, val_every=val_every),
            "pruner=none",
            "tracking.sidecar=false",
        ]
    )
    measured = overhead.measure(cfg, build_datamodule(cfg), pairs=pairs, say=lambda _line: None)
    return {**measured, "cpu_s": _cpu() - start}


def mlflow_template(folder: Path) -> Path:
    """An empty, migrated MLflow store copied into every run's home: creating one costs about
    3 CPU-seconds, paid once per project folder by a user, not once per study."""
    from mlflow.tracking import MlflowClient

    from tuner.tracking.tracker import local_uri

    MlflowClient(tracking_uri=local_uri(folder)).search_experiments()
    return folder / "mlflow.db"


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES[args.size]
    if args.tasks:
        size = replace(size, tasks=tuple(args.tasks))
    if args.seeds:
        size = replace(size, seeds=args.seeds)
    peers, skipped = available(PEERS)
    if args.peers:
        peers = [p for p in peers if p.name in args.peers]
    oracles = {
        t: load_oracle(t, size, folder=args.oracles, recompute=args.recompute_oracles, workers=args.workers)
        for t in size.tasks
    }
    started, load_before = time.monotonic(), os.getloadavg()
    fitting = {t: [p for p in peers if p.unfit(TASKS[t].space) is None] for t in size.tasks}
    skipped += [
        f"{p.name} on {t} ({p.unfit(TASKS[t].space)})"
        for t in size.tasks
        for p in peers
        if p not in fitting[t]
    ]
    traces: dict[str, dict[str, list[dict]]] = {t: {p.name: [] for p in fitting[t]} for t in size.tasks}
    overheads: dict[str, dict] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tuner-suite-") as root,
        ProcessPoolExecutor(max_workers=args.workers, initializer=worker_init) as pool,
    ):
        template = mlflow_template(Path(root))
        futures: dict[Future, tuple[str, str, int]] = {}
        for task in size.tasks:  # the costliest task first, so the pool ends evenly
            futures[pool.submit(run_overhead, task, size, size.pairs)] = (task, "overhead", -1)
            for seed in range(size.seeds):
                for peer in fitting[task]:
                    home = Path(root) / f"{task}-{peer.name}-{seed}"
                    home.mkdir()
                    shutil.copy(template, home / "mlflow.db")
                    job = Job(
                        task, seed, *size.trial(task), size.budget(task), str(home), cold_processes=args.cold
                    )
                    futures[pool.submit(run_peer, peer, job)] = (task, peer.name, seed)
        for done, future in enumerate(as_completed(futures), start=1):
            task, name, seed = futures[future]
            result = future.result()
            if name == "overhead":
                overheads[task] = result
                line = f"overhead x{result['ratio']:.2f}"
            else:
                traces[task][name].append(result)
                goal = target(cell_means(oracles[task]), TASKS[task].hit_share)
                budget = size.budget(task)
                steps, _ = report.first_reach(result, target=goal, budget=budget)
                line = f"seed {seed}: best {report.best_at(result, budget):.4f}, target at {steps:.0f} steps"
            print(
                f"[{done}/{len(futures)}] {task} {name}: {line} ({time.monotonic() - started:.0f}s)",
                flush=True,
            )
    return assemble(size, peers, skipped, oracles, traces, overheads, started, load_before)


def assemble(size, peers, skipped, oracles, traces, overheads, started, load_before) -> dict[str, Any]:
    """The result record: per task the oracle, target, peers' summaries and the overhead."""
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%MZ"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "seconds": round(time.monotonic() - started, 1),
        "size": asdict(size),
        "peers": {p.name: p.what for p in peers},
        "peers_left_out": skipped,
        "target": (
            "the validation accuracy that hit_share of the oracle grid's cells reach, at most the "
            "grid's best minus one point"
        ),
        "tasks": {},
        "traces": traces,
    }
    # Load-independent cost: the CPU time all jobs used (the main process only waits).
    result["cpu_s"] = round(
        sum(t["cpu_s"] for runs in traces.values() for ts in runs.values() for t in ts)
        + sum(o["cpu_s"] for o in overheads.values()),
        1,
    )
    for task in size.tasks:
        result["tasks"][task] = {
            "what": TASKS[task].what,
            "space": TASKS[task].space.params,
            "steps": size.trial(task)[0],
            "budget": size.budget(task),
            "oracle": float(oracles[task]["best_val_acc"]),
            "oracle_best": oracles[task]["best_point"],
            "cells": cell_means(oracles[task]),
            "overhead": overheads.get(task),
        }
        retarget(result, task, TASKS[task].hit_share)
    result["goals"] = report.goals(result, GOAL_PEERS)
    return result


def retarget(result: dict[str, Any], task: str, hit_share: float) -> None:
    """Sets a task's target from its grid cells and summarises its peers' traces against it."""
    block = result["tasks"][task]
    block["hit_share"] = hit_share
    block["target"] = goal = target(block["cells"], hit_share)
    block["peers"] = {
        peer: report.summarize(runs, target=goal, budget=block["budget"])
        for peer, runs in result["traces"][task].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=list(SIZES), default="default")
    parser.add_argument("--quick", dest="size", action="store_const", const="quick", help="--size quick")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--peers", nargs="+", help="run only these peers")
    parser.add_argument("--seeds", type=int, help="seeds per task and peer (the size's by default)")
    parser.add_argument("--workers", type=int, default=2, help="pool processes (one torch thread each)")
    parser.add_argument("--recompute-oracles", action="store_true")
    parser.add_argument(
        "--cold-processes",
        dest="cold",
        action="store_true",
        help="tpe-per-process: a new interpreter per trial",
    )
    parser.add_argument("--oracles", type=Path, default=HERE / "oracles")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--render", type=Path, help="only write the table and plot of a saved results JSON")
    parser.add_argument(
        "--hit-share", type=float, help="with --render: targets from this share of the grid's cells instead"
    )
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        if args.hit_share:  # another target on the same traces: written beside the run's own files
            for task, block in result["tasks"].items():
                if "cells" not in block:  # a run from before the cells were kept
                    oracle = args.oracles / f"{oracle_name(task, block['steps'])}.json"
                    block["cells"] = cell_means(json.loads(oracle.read_text()))
                retarget(result, task, args.hit_share)
        result["goals"] = report.goals(result, GOAL_PEERS)
        stem = str(args.render.with_suffix("")) + (f"-hit{args.hit_share:g}" if args.hit_share else "")
    else:
        from tuner._quiet import quiet_libraries

        quiet_libraries()
        result = run(args)
        result["workers"] = args.workers
        args.results.mkdir(parents=True, exist_ok=True)
        stem = str(args.results / f"suite-{result['size']['name']}-{result['date']}-{platform.node()}")
        Path(f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    table = report.markdown(result)
    header = (
        f"Suite ({result['size']['name']} size) on {result['machine']}, {result['date']}, "
        f"{result['seconds']:.0f} s ({result['cpu_s']:.0f} CPU-s in jobs, {result.get('workers', 2)} workers); "
        f"load average {result['load_average']['start'][0]:.1f} at the start"
    )
    Path(f"{stem}.md").write_text(f"{header}\n\n{table}\n")
    report.plot(result, result["traces"], Path(f"{stem}.png"))
    print(f"\n{header}\n\n{table}\n")
    if result["peers_left_out"]:
        print(
            "left out (feature not in this checkout, or unfit for a task): "
            + ", ".join(result["peers_left_out"])
        )
    print(f"written {stem}.json, .md, .png")


if __name__ == "__main__":
    main()
