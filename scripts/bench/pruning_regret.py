"""Pruning regret of a study: train every trial it pruned to the end, outside the study.

Runs the default study (``python -m tuner``, shortened by ``--max-steps`` and
``--n-trials``) once with today's default pruning (the baseline, ``pruner=median``) and once
with a candidate's overrides, on the same seeds. Every trial a study pruned (or stopped as
diverged) is then trained to its full length with the same config and sampled parameters,
as the study would have trained it (``grid.train_point``: ``tuner.training.trial.run_trial``, no
pruner). Per config:

* **regret**: how many pruned trials would have finished within 1 point of the study's
  best (or above it): the pruner threw away a trial as good as the one it kept;
* **savings**: of the trials that end more than 5 points below the best, the share of
  their full-length steps the pruner saved (completed ones save nothing);
* the study's best value and its total steps.

Goal (issue 13): no regret, and at least half of the hopeless trials' steps saved.

    python scripts/bench/pruning_regret.py --candidate "probe=cooldown"
    python scripts/bench/pruning_regret.py --candidate "pruner=hyperband" --n-trials 16 --max-steps 3000 --seeds 0 1

Writes ``results/pruning-regret-<date>-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import train_point

HERE = Path(__file__).resolve().parent
#: Within this of the best, a pruned trial is a regret; this far below, a hopeless one.
REGRET_POINTS, HOPELESS_POINTS = 0.01, 0.05


def study_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The default study, shortened; the report and the tracking sidecar off (no core free)."""
    return [
        *args.overrides,
        f"seed={seed}",
        f"trainer.max_steps={args.max_steps}",
        f"study.n_trials={args.n_trials}",
        "trainer.num_threads=1",
        "study.name=regret",
        "report.enabled=false",
        "tracking.sidecar=false",
    ]


def run_one_study(overrides: list[str], home: str) -> dict[str, Any]:
    """One study (in a pool worker): its trials' state, params as config paths, steps, value."""
    import os

    import optuna
    import torch

    torch.set_num_threads(1)
    os.environ["TUNER_HOME"] = home
    from jobs import run_study

    from tuner._quiet import quiet_libraries
    from tuner.cli import compose
    from tuner.search.space import parse_space

    quiet_libraries()
    cfg = compose(overrides)
    _, study = run_study(cfg)
    paths = {spec.name: spec.path for spec in parse_space(cfg.search.params, cfg)}
    trials = []
    for t in study.get_trials(deepcopy=False):
        complete = t.state == optuna.trial.TrialState.COMPLETE
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "reason": t.user_attrs.get("reason"),
                # A screening trial queued again in full (search.screen) is not lost: no regret.
                "promoted": t.number in (study.user_attrs.get("tuner.screen_promoted") or []),
                # The cooldown probes' branches train too: a budget counts their steps.
                "steps": int(t.user_attrs.get("steps", 0)) + int(t.user_attrs.get("probe_steps", 0)),
                "value": float(t.value) if complete and t.value is not None else None,
                "values": {paths[name]: value for name, value in t.params.items() if name in paths},
            }
        )
    return {"trials": trials, "full_steps": int(cfg.trainer.max_steps)}


def measure(study: dict[str, Any]) -> dict[str, Any]:
    """Regret and savings of one study whose pruned trials carry their full-length value."""
    full = study["full_steps"]
    finals = [t["value"] if t["state"] == "COMPLETE" else t.get("full_value") for t in study["trials"]]
    best = max((t["value"] for t in study["trials"] if t["value"] is not None), default=0.0)
    pruned = [t for t in study["trials"] if t["state"] == "PRUNED" and not t.get("promoted")]
    regrets = [t for t in pruned if (t.get("full_value") or 0.0) >= best - REGRET_POINTS]
    hopeless = [
        (t, final)
        for t, final in zip(study["trials"], finals, strict=True)
        if final is not None and final < best - HOPELESS_POINTS
    ]
    hopeless_steps = full * len(hopeless)
    saved = sum(full - t["steps"] for t, _ in hopeless if t["state"] == "PRUNED")
    return {
        "best": best,
        "trials": len(study["trials"]),
        "pruned": len(pruned),
        "regrets": len(regrets),
        "regret_trials": [
            {
                "number": t["number"],
                "pruned_at": t["steps"],
                "full_value": t["full_value"],
                "values": t["values"],
            }
            for t in regrets
        ],
        "hopeless": len(hopeless),
        "saved_share": saved / hopeless_steps if hopeless_steps else float("nan"),
        "steps": sum(t["steps"] for t in study["trials"]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    configs = {
        f"baseline ({args.baseline})": shlex.split(args.baseline),
        f"candidate ({args.candidate})": shlex.split(args.candidate),
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="tuner-regret-") as root,
        ProcessPoolExecutor(args.workers) as pool,
    ):
        keys = [(name, seed) for name in configs for seed in args.seeds]
        homes = [str(Path(root) / f"{i}") for i in range(len(keys))]
        base = {key: study_overrides(args, key[1]) for key in keys}
        jobs = [
            pool.submit(run_one_study, [*base[k], *configs[k[0]]], home)
            for k, home in zip(keys, homes, strict=True)
        ]
        studies = {key: job.result() for key, job in zip(keys, jobs, strict=True)}
        print(
            f"studies done ({time.monotonic() - started:.0f}s); training the pruned trials to the end",
            flush=True,
        )
        # The same config the study trained, its sampled values written on top, no pruner.
        todo = [(k, t) for k, s in studies.items() for t in s["trials"] if t["state"] == "PRUNED"]
        outs = pool.map(
            train_point, [[*base[k], *configs[k[0]]] for k, _ in todo], [t["values"] for _, t in todo]
        )
        for (_, trial), (value, _test, _state) in zip(todo, outs, strict=True):
            trial["full_value"] = value
    per_config: dict[str, Any] = {}
    for name in configs:
        rows = {seed: measure(studies[(name, seed)]) for seed in args.seeds}
        per_config[name] = {
            "overrides": configs[name],
            "per_seed": rows,
            "regrets": sum(r["regrets"] for r in rows.values()),
            "pruned": sum(r["pruned"] for r in rows.values()),
            "saved_share_median": _median([r["saved_share"] for r in rows.values()]),
            "studies": {seed: studies[(name, seed)] for seed in args.seeds},
        }
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%MZ"),
        "machine": platform.node(),
        "seconds": round(time.monotonic() - started, 1),
        "study": {
            "overrides": args.overrides,
            "max_steps": args.max_steps,
            "n_trials": args.n_trials,
            "seeds": args.seeds,
        },
        "configs": per_config,
    }


def _median(values: list[float]) -> float:
    import math
    import statistics

    defined = [v for v in values if not math.isnan(v)]
    return statistics.median(defined) if defined else float("nan")


def markdown(result: dict[str, Any]) -> str:
    study = result["study"]
    lines = [
        f"Pruning regret on {result['machine']}, {result['date']}, {result['seconds']:.0f} s: the default study "
        f"{' '.join(study['overrides']) or '(no overrides)'}, trainer.max_steps={study['max_steps']}, "
        f"study.n_trials={study['n_trials']}, seeds {study['seeds']}",
        "",
        "| config | seed | best val_acc | trials | pruned | pruned within 1 pt of best (regret) | "
        "ending > 5 pts below best | their steps saved | steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, block in result["configs"].items():
        for seed, r in block["per_seed"].items():
            lines.append(
                f"| {name} | {seed} | {r['best']:.4f} | {r['trials']} | {r['pruned']} | {r['regrets']} | "
                f"{r['hopeless']} | {r['saved_share']:.0%} | {r['steps']} |"
            )
    lines += ["", "Goal: no regret, and at least half the steps of the hopeless trials saved."]
    for name, block in result["configs"].items():
        lines.append(
            f"- {name}: {block['regrets']} regret(s) of {block['pruned']} pruned trials; "
            f"median share of hopeless steps saved {block['saved_share_median']:.0%}."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidate", default="pruner=hyperband", help="overrides of the candidate, one string"
    )
    parser.add_argument(
        "--baseline", default="pruner=median", help="overrides of the baseline, one string (today's default)"
    )
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("overrides", nargs="*", help="overrides of the study both configs share")
    args = parser.parse_args()
    from tuner._quiet import quiet_libraries

    quiet_libraries()
    result = run(args)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"pruning-regret-{result['date']}-{platform.node()}"
    Path(f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    table = markdown(result)
    Path(f"{stem}.md").write_text(table + "\n")
    print(f"\n{table}\nwritten {stem}.json, .md")


if __name__ == "__main__":
    main()
