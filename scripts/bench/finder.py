"""Benchmark: this LR finder and Lightning's ``Tuner.lr_find`` against the best LR of a dense grid.

For each task (``_tasks.TASKS``: different data, models and optimizers) it compares, over
``--repeats`` seeds, the combined suggestion of ``mode=find`` (its default settings: 3 range
tests of 300 steps, median) and the suggestion of Lightning's ``lr_find`` (its defaults: one
test of 100 steps, 1e-8 to 1) with the grid-best LR of real trials (``_tasks.oracle``, cached
under ``oracles/``). Error: |log10(suggested / grid-best)| of the median suggestion; spread:
largest over smallest suggestion across the repeats. ``--studies`` adds a study with
``search.from_finder=true`` against the same study without it: trials until the best
val_acc is within 2 points of the grid's best.

    python scripts/bench/finder.py                       # ~10 min on 2 cores (oracles cached)
    python scripts/bench/finder.py --quick               # 3 repeats, 2 tasks: ~2 min
    python scripts/bench/finder.py --recompute-oracle    # the grid again (~20 min on 2 free cores)
    python scripts/bench/finder.py --studies             # add the study comparison (long)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from _tasks import TASKS, compose_task, log_error, oracle, regret

RESULTS = Path(__file__).resolve().parent / "results"


def _setup() -> None:
    import torch

    from tuner._quiet import quiet_libraries

    torch.set_num_threads(1)
    quiet_libraries()


def ours(task: str, repeat: int) -> dict[str, Any]:
    """The combined suggestion of mode=find with its default finder settings."""
    _setup()
    from tuner.data.factory import build_datamodule
    from tuner.finder.run import make_fabric, measure

    seeds = [3 * repeat, 3 * repeat + 1, 3 * repeat + 2]
    cfg = compose_task(task, f"seed={repeat}", f"finder.seeds=[{','.join(map(str, seeds))}]")
    started = time.monotonic()
    result, curves, _ = measure(cfg, build_datamodule(cfg), make_fabric(cfg), say=lambda _line: None)
    return {
        "lr": result.suggestion,
        "inner_spread": result.spread,
        "rules": result.rules,
        "single_seed": [s["combined"] for s in result.per_seed],
        "steps": sum(len(c.lrs) for c in curves),
        "seconds": time.monotonic() - started,
    }


def lightning(task: str, repeat: int) -> dict[str, Any]:
    """Lightning's lr_find with its defaults, on the task's net, optimizer and data.

    ``lr_find`` wants a plain LightningModule (automatic optimization, one batch a step);
    the trials' ``TrialModule`` takes several optimizer steps per Lightning step, so the
    baseline gets the plain classifier Lightning's documentation shows.
    """
    _setup()
    import pytorch_lightning as pl
    from pytorch_lightning.tuner import Tuner
    from torch.nn import functional as F

    from tuner.config.nodes import plain
    from tuner.data.factory import build_datamodule
    from tuner.models.factory import build_model
    from tuner.optimizer.factory import build_optimizer

    class Classifier(pl.LightningModule):
        def __init__(self, net: Any, spec: dict[str, Any]) -> None:
            super().__init__()
            self.net, self.spec = net, spec

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return build_optimizer(self.net, self.spec)

    cfg = compose_task(task, f"seed={repeat}")
    pl.seed_everything(repeat, verbose=False)
    datamodule = build_datamodule(cfg)
    module = Classifier(build_model(cfg, datamodule), plain(cfg.optimizer))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=int(cfg.trainer.max_steps),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # its progress bar
            found = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    suggestion = found.suggestion() if found is not None else None
    return {
        "lr": float(suggestion) if suggestion else float("nan"),
        "steps": len(found.results["lr"]) if found is not None else 0,
        "seconds": time.monotonic() - started,
    }


def study(task: str, seed: int, from_finder: bool, n_trials: int) -> dict[str, Any]:
    """A study (search=lr, constant schedule, TPE seeded with ``seed``); val_acc per trial."""
    _setup()
    from tuner.report import study_report
    from tuner.study.loop import tune
    from tuner.study.progress import StudyProgress
    from tuner.validate import validate

    with tempfile.TemporaryDirectory() as home:
        os.environ["TUNER_HOME"] = home
        cfg = compose_task(
            task,
            "search=lr",
            "pruner=none",
            f"seed={seed}",
            f"study.n_trials={n_trials}",
            f"search.from_finder={str(from_finder).lower()}",
        )
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            StudyProgress(quiet=True, stream=sink) as progress,
        ):
            result = tune(cfg, validate(cfg), progress=progress, write_report=study_report)
        values = [float(t.value) if t.value is not None else 0.0 for t in result.study.trials]
    return {"task": task, "seed": seed, "from_finder": from_finder, "values": values}


def _median_error(lrs: list[float], best: float) -> tuple[float, float, float]:
    finite = [v for v in lrs if v and np.isfinite(v) and v > 0]
    median = float(10 ** np.median(np.log10(finite)))
    return median, log_error(median, best), max(finite) / min(finite)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tasks = args.tasks or (list(TASKS)[:2] if args.quick else list(TASKS))
    repeats = 3 if args.quick else args.repeats
    oracles = {t: oracle(t, recompute=args.recompute_oracle, workers=args.workers) for t in tasks}
    jobs = [(fn, t, k) for t in tasks for k in range(repeats) for fn in (ours, lightning)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [(fn.__name__, t, pool.submit(fn, t, k)) for fn, t, k in jobs]
        done = [(name, t, f.result()) for name, t, f in futures]
    rows = []
    for t in tasks:
        best = float(oracles[t]["best_lr"])
        mine = [r for name, task, r in done if name == "ours" and task == t]
        theirs = [r for name, task, r in done if name == "lightning" and task == t]
        our_median, our_error, our_spread = _median_error([r["lr"] for r in mine], best)
        singles = [v for r in mine for v in r["single_seed"]]
        _, single_error, single_spread = _median_error(singles, best)
        pl_median, pl_error, pl_spread = _median_error([r["lr"] for r in theirs], best)
        rows.append(
            {
                "task": t,
                "grid_best_lr": best,
                "grid_best_val_acc": oracles[t]["best_value"],
                "ours_median": our_median,
                "ours_error": our_error,
                "ours_spread": our_spread,
                "ours_regret": regret(our_median, oracles[t]),
                "ours_single_seed_error": single_error,
                "ours_single_seed_spread": single_spread,
                "ours_steps": int(np.mean([r["steps"] for r in mine])),
                "lightning_median": pl_median,
                "lightning_error": pl_error,
                "lightning_spread": pl_spread,
                "lightning_regret": regret(pl_median, oracles[t]),
                "lightning_steps": int(np.mean([r["steps"] for r in theirs])),
                "ours": mine,
                "lightning": theirs,
            }
        )
    out: dict[str, Any] = {"repeats": repeats, "rows": rows}
    if args.studies:
        out["studies"] = run_studies(tasks, oracles, args)
    return out


def run_studies(tasks: list[str], oracles: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = [(t, s, ff) for t in tasks for s in range(args.study_seeds) for ff in (False, True)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        found = list(pool.map(study, *zip(*jobs, strict=True), [args.study_trials] * len(jobs)))
    rows = []
    for t in tasks:
        target = float(oracles[t]["best_value"]) - 0.02
        for ff in (False, True):
            counts = []
            for r in (r for r in found if r["task"] == t and r["from_finder"] == ff):
                hit = next(
                    (i + 1 for i, v in enumerate(np.maximum.accumulate(r["values"])) if v >= target), None
                )
                counts.append(hit if hit is not None else args.study_trials + 1)
            rows.append(
                {"task": t, "from_finder": ff, "trials_to_target": counts, "median": float(np.median(counts))}
            )
    return rows


def markdown(out: dict[str, Any]) -> str:
    lines = [
        "| task | grid-best LR | ours: median | ours: error | ours: spread | ours: regret "
        "| ours, 1 seed: error / spread | lightning: median | lightning: error | lightning: spread "
        "| lightning: regret |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['task']} | {r['grid_best_lr']:.2e} | {r['ours_median']:.2e} | {r['ours_error']:.2f} "
            f"| {r['ours_spread']:.2f}x | {r['ours_regret']:.1f} "
            f"| {r['ours_single_seed_error']:.2f} / {r['ours_single_seed_spread']:.2f}x "
            f"| {r['lightning_median']:.2e} | {r['lightning_error']:.2f} | {r['lightning_spread']:.2f}x "
            f"| {r['lightning_regret']:.1f} |"
        )
    lines.append("")
    lines.append(
        f"{out['repeats']} repeats (seeds) per method. error: |log10(median suggestion / grid-best)|; spread: "
        "max/min over the repeats; regret: points of seed-mean val_acc lost at the median suggestion "
        "against the grid's best (interpolated along the grid). "
        f"Ours: {out['rows'][0]['ours_steps']} range-test steps per suggestion (3 seeds, median); "
        "ours, 1 seed: every seed's own suggestion; lightning: lr_find with its defaults "
        f"({out['rows'][0]['lightning_steps']} steps)."
    )
    if "studies" in out:
        lines += [
            "",
            "| task | from_finder | trials to within 2 points of the grid's best (per seed) | median |",
            "|---|---|---|---|",
        ]
        for r in out["studies"]:
            lines.append(
                f"| {r['task']} | {r['from_finder']} | {r['trials_to_target']} | {r['median']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats on 2 tasks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", nargs="*", choices=list(TASKS))
    parser.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    parser.add_argument("--recompute-oracle", action="store_true")
    parser.add_argument("--studies", action="store_true", help="add the from_finder study comparison")
    parser.add_argument("--study-seeds", type=int, default=3)
    parser.add_argument("--study-trials", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("TUNER_HOME", tempfile.mkdtemp(prefix="tuner-bench-"))
    started = time.monotonic()
    out = run(args)
    out["seconds"] = round(time.monotonic() - started, 1)
    table = markdown(out)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "finder-studies" if args.studies else "finder-quick" if args.quick else "finder"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(f"\n{out['seconds']} s; results in {RESULTS / name}.json and .md")


if __name__ == "__main__":
    main()
