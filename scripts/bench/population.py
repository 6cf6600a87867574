"""Population training against the same trials run one by one, for K in {4, 16, 64}.

For each model and K, in this process, with the same config and the same sampled trials
(random sampler, fixed seed, no pruning):

* through the framework: a study with ``study.population=K`` against the same study
  one trial at a time, both through ``tune()`` (Optuna, Lightning, MLflow tracking on
  one warm SQLite store; the end-of-study report is off, it is a cost per study);
* training alone: ``run_population`` on the K trial configs against ``run_trial`` on
  each, without Optuna or MLflow (wall and CPU time).

The table gives trials per minute, the speedups, and how far each member's final
validation metric and test accuracy are from the same trial trained alone.

    python scripts/bench/population.py                    # MLP and CNN, K = 4, 16, 64
    python scripts/bench/population.py --quick            # MLP, K = 4 and 16, 100 steps
    python scripts/bench/population.py --device cuda --k 64 --models mlp --only framework

The default run took 17-27 min on 2 CPU cores shared with other jobs (load average 5-10).

Figures are ratios taken within one run; on a shared machine absolute rates move with
the load, ratios much less (CPU-time ratios least).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tuner._quiet import quiet_libraries  # noqa: E402
from tuner.cli import compose  # noqa: E402
from tuner.data.factory import build_datamodule  # noqa: E402
from tuner.report import study_report  # noqa: E402
from tuner.search.space import apply, suggest  # noqa: E402
from tuner.study.loop import tune  # noqa: E402
from tuner.study.population import run_population  # noqa: E402
from tuner.study.progress import StudyProgress  # noqa: E402
from tuner.tracking.tracker import Tracker, local_uri  # noqa: E402
from tuner.training.trial import run_trial  # noqa: E402
from tuner.validate import validate  # noqa: E402

RESULTS = REPO / "scripts" / "bench" / "results"
MODELS = {"mlp": "MNIST-1D MLP", "cnn1d": "MNIST-1D CNN"}


def overrides(model: str, k: int, population: int, args: argparse.Namespace) -> list[str]:
    every = max(args.steps // 3, 1)
    return [
        f"model={model}",
        "data=mnist1d",
        "optimizer=adam",
        "schedule=warmup_cosine",
        "search=default",
        "sampler=random",
        "pruner=none",
        "storage=memory",
        "report.enabled=false",
        f"study.n_trials={k}",
        f"study.population={population}",
        f"study.name=bench-{model}-{k}-{population}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={every}",
        f"tracking.step_flush_every={every}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        "trainer.num_threads=1",
    ]


def timed(work: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def study(model: str, k: int, population: int, args: argparse.Namespace) -> dict[str, Any]:
    """One study of ``k`` trials through ``tune()``: its times and each trial's results."""
    cfg = compose(overrides(model, k, population, args))
    specs = validate(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        result, wall, cpu = timed(
            lambda: tune(cfg, specs, progress=StudyProgress(quiet=True), write_report=study_report)
        )
    trials = [
        {"params": t.params, "value": t.value, "test_acc": t.user_attrs.get("test_acc")}
        for t in sorted(result.study.trials, key=lambda t: t.number)
    ]
    return {"wall": wall, "cpu": cpu, "trials": trials}


def training_alone(model: str, k: int, args: argparse.Namespace) -> dict[str, float]:
    """K trial configs of the study trained as one population, then one by one, without tracking."""
    cfg = compose(overrides(model, k, k, args))
    specs = validate(cfg)
    sampler = optuna.samplers.RandomSampler(seed=int(cfg.seed))
    draws = optuna.create_study(sampler=sampler)  # the same draws as the studies' sampler
    cfgs = [apply(cfg, specs, suggest(draws.ask(), specs, cfg)) for _ in range(k)]
    datamodule = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        _, pop_wall, pop_cpu = timed(
            lambda: run_population(cfgs, datamodule, trials=[None] * k, runs=[None] * k)
        )
        _, seq_wall, seq_cpu = timed(lambda: [run_trial(c, datamodule, trial=None, run=None) for c in cfgs])
    return {"pop_wall": pop_wall, "pop_cpu": pop_cpu, "seq_wall": seq_wall, "seq_cpu": seq_cpu}


def gaps(pop: dict[str, Any], seq: dict[str, Any]) -> dict[str, float]:
    """Largest and median gaps between the same trial trained in a population and alone."""
    diffs: dict[str, list[float]] = {"value": [], "test_acc": []}
    same = 1.0
    for member, alone in zip(pop["trials"], seq["trials"], strict=True):
        if member["params"] != alone["params"]:
            same = 0.0
        for key, found in diffs.items():
            if member[key] is not None and alone[key] is not None:
                found.append(abs(member[key] - alone[key]))
    out = {"same_trials": same}
    for key, found in diffs.items():
        out[key] = max(found, default=0.0)
        out[f"{key}_median"] = statistics.median(found) if found else 0.0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="MLP only, K = 4 and 16, 100 steps")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--k", type=int, nargs="+", help="population sizes (default 4 16 64)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="default: mlp cnn1d")
    parser.add_argument("--steps", type=int, help="optimizer steps per trial (default 300, quick 100)")
    parser.add_argument(
        "--only", choices=("framework", "training"), help="one of the two comparisons (default: both)"
    )
    args = parser.parse_args()
    args.k = args.k or ([4, 16] if args.quick else [4, 16, 64])
    args.models = args.models or (["mlp"] if args.quick else ["mlp", "cnn1d"])
    args.steps = args.steps or (100 if args.quick else 300)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    quiet_libraries()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["TUNER_HOME"] = home
        # Creating the MLflow store's tables takes seconds: not part of either side.
        Tracker(local_uri(Path(home)), experiment="warm-up").close()
        for model in args.models:
            for k in args.k:
                row: dict[str, Any] = {"model": model, "k": k, "steps": args.steps, "device": args.device}
                if args.only != "training":
                    print(f"{MODELS[model]}, K={k}: population study ...", file=sys.stderr, flush=True)
                    pop = study(model, k, k, args)
                    print(f"{MODELS[model]}, K={k}: one-by-one study ...", file=sys.stderr, flush=True)
                    seq = study(model, k, 1, args)
                    row |= {
                        "population_s": pop["wall"],
                        "sequential_s": seq["wall"],
                        "population_per_min": 60 * k / pop["wall"],
                        "sequential_per_min": 60 * k / seq["wall"],
                        "speedup": seq["wall"] / pop["wall"],
                        "speedup_cpu": seq["cpu"] / pop["cpu"],
                        **{f"gap_{key}": v for key, v in gaps(pop, seq).items()},
                    }
                if args.only != "framework":
                    print(f"{MODELS[model]}, K={k}: training alone ...", file=sys.stderr, flush=True)
                    alone = training_alone(model, k, args)
                    row |= {
                        **alone,
                        "training_speedup": alone["seq_wall"] / alone["pop_wall"],
                        "training_speedup_cpu": alone["seq_cpu"] / alone["pop_cpu"],
                    }
                rows.append(row)
                print(table(rows[-1:]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    write(rows, text, args)
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | device | K | steps | population trials/min | one-by-one trials/min | speedup (wall / CPU) "
        "| training alone: speedup (wall / CPU) | gap val_acc (max / median) | gap test_acc (max / median) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(r: dict[str, Any], text: str, key: str) -> str:
        return text.format(**r) if key in r else "-"

    for r in rows:
        cells = [
            MODELS[r["model"]],
            r["device"],
            str(r["k"]),
            str(r["steps"]),
            cell(r, "{population_per_min:.1f}", "speedup"),
            cell(r, "{sequential_per_min:.1f}", "speedup"),
            cell(r, "{speedup:.2f}x / {speedup_cpu:.2f}x", "speedup"),
            cell(r, "{training_speedup:.2f}x / {training_speedup_cpu:.2f}x", "training_speedup"),
            cell(r, "{gap_value:.2g} / {gap_value_median:.2g}", "speedup"),
            cell(r, "{gap_test_acc:.2g} / {gap_test_acc_median:.2g}", "speedup"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(rows: list[dict[str, Any]], text: str, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Dated, like the other benchmarks: a run with other arguments never replaces one quoted.
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M")
    stem = f"population-{args.device}" + ("-quick" if args.quick else "") + f"-{stamp}"
    meta = {
        "date": stamp,
        "arguments": {"models": args.models, "k": args.k, "steps": args.steps, "only": args.only},
        "threads": 1,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "rows": rows,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(text + "\n")
    if all("speedup" in r for r in rows):
        plot(rows, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / stem}.{{json,md,png}}", file=sys.stderr)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        ks = [r["k"] for r in mine]
        (line,) = ax.plot(
            ks, [r["population_per_min"] for r in mine], marker="o", label=f"{MODELS[model]}, population"
        )
        ax.plot(
            ks,
            [r["sequential_per_min"] for r in mine],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{MODELS[model]}, one by one",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (trials per population)")
    ax.set_ylabel("trials per minute, through the framework")
    ax.set_title(f"Population training, {rows[0]['steps']} steps per trial, {rows[0]['device']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
