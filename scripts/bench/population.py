"""Population training against the same trials run one by one, through the whole framework.

For each model and each K, two studies of K trials run in this process with the same
config and the same sampled trials (random sampler, fixed seed, no pruning): one with
``study.population=K``, one with trials one at a time. Both go through ``tune()``:
Optuna, Lightning, MLflow tracking (a fresh SQLite store each). The table gives trials
per minute of each, their ratio, and how far the members' final validation metric and
test accuracy are from the same trials trained alone.

    python scripts/bench/population.py                    # MLP and CNN, K = 4, 16, 64 (~10 min on 2 cores)
    python scripts/bench/population.py --quick            # MLP, K = 4, 16, 100 steps (~1 min)
    python scripts/bench/population.py --device cuda --k 64

Figures are ratios taken within one run; on a shared machine the absolute rates move
with the load, the ratio much less.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tuner._quiet import quiet_libraries  # noqa: E402
from tuner.cli import compose  # noqa: E402
from tuner.config import validate  # noqa: E402
from tuner.progress import StudyProgress  # noqa: E402
from tuner.tracking import Tracker, local_uri  # noqa: E402
from tuner.tune import tune  # noqa: E402

RESULTS = REPO / "scripts" / "bench" / "results"
MODELS = {"mlp": "MNIST-1D MLP", "cnn1d": "MNIST-1D CNN"}


def run_study(model: str, k: int, population: int, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """One study of ``k`` trials; returns its wall time and each trial's results by number."""
    overrides = [
        f"model={model}",
        "data=mnist1d",
        "optimizer=adam",
        "schedule=warmup_cosine",
        "search=default",
        "sampler=random",
        "pruner=none",
        "storage=memory",
        f"study.n_trials={k}",
        f"study.population={population}",
        f"study.name=bench-{model}-{k}-{population}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={max(args.steps // 3, 1)}",
        f"tracking.step_flush_every={max(args.steps // 3, 1)}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        "trainer.num_threads=1",
    ]
    os.environ["TUNER_HOME"] = str(home)
    cfg = compose(overrides)
    specs = validate(cfg)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = tune(cfg, specs, progress=StudyProgress(quiet=True))
    seconds = time.perf_counter() - started
    trials = {
        t.number: {
            "params": t.params,
            "state": t.state.name,
            "value": t.value,
            "test_acc": t.user_attrs.get("test_acc"),
        }
        for t in result.study.trials
    }
    return {"seconds": seconds, "trials": trials}


def compare(pop: dict[str, Any], seq: dict[str, Any]) -> dict[str, float]:
    """Largest gaps between the same trial trained in a population and alone."""
    gaps = {"value": 0.0, "test_acc": 0.0, "same_params": 1.0}
    for number, alone in seq["trials"].items():
        member = pop["trials"][number]
        if member["params"] != alone["params"]:
            gaps["same_params"] = 0.0
        for key in ("value", "test_acc"):
            if member[key] is not None and alone[key] is not None:
                gaps[key] = max(gaps[key], abs(member[key] - alone[key]))
    return gaps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="MLP only, K = 4 and 16, 100 steps")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--k", type=int, nargs="+", help="population sizes (default 4 16 64)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="default: mlp cnn1d")
    parser.add_argument("--steps", type=int, help="optimizer steps per trial (default 300, quick 100)")
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
    with tempfile.TemporaryDirectory() as tmp:
        # Creating the MLflow store's tables takes seconds; not part of either side's figure.
        Tracker(local_uri(Path(tmp)), experiment="warm-up").close()
        for model in args.models:
            for k in args.k:
                print(f"{MODELS[model]}, K={k}: population ...", file=sys.stderr, flush=True)
                pop = run_study(model, k, k, args, Path(tmp))
                print(f"{MODELS[model]}, K={k}: one by one ...", file=sys.stderr, flush=True)
                seq = run_study(model, k, 1, args, Path(tmp))
                rows.append(
                    {
                        "model": model,
                        "k": k,
                        "steps": args.steps,
                        "device": args.device,
                        "population_s": pop["seconds"],
                        "sequential_s": seq["seconds"],
                        "population_per_min": 60 * k / pop["seconds"],
                        "sequential_per_min": 60 * k / seq["seconds"],
                        "speedup": seq["seconds"] / pop["seconds"],
                        **{f"max_gap_{key}": v for key, v in compare(pop, seq).items()},
                    }
                )
                print(table(rows[-1:]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    write(rows, text, args)
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | device | K | steps | population trials/min | one-by-one trials/min | speedup | max gap val_acc | max gap test_acc |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {MODELS[r['model']]} | {r['device']} | {r['k']} | {r['steps']} | {r['population_per_min']:.1f} | "
            f"{r['sequential_per_min']:.1f} | {r['speedup']:.2f}x | {r['max_gap_value']:.2g} | {r['max_gap_test_acc']:.2g} |"
        )
    return "\n".join(lines)


def write(rows: list[dict[str, Any]], text: str, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"population-{args.device}" + ("-quick" if args.quick else "")
    meta = {"threads": 1, "cpu_count": os.cpu_count(), "torch": torch.__version__, "rows": rows}
    (RESULTS / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(text + "\n")
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
    ax.set_ylabel("trials per minute")
    ax.set_title(f"Population training, {rows[0]['steps']} steps per trial, {rows[0]['device']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
