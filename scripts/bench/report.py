"""Figures of the suite from the peers' traces: steps and time to target, probability of
reaching it, best value at equal budget; the Markdown table and the best-so-far plot."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Trace = dict[str, Any]
#: The peer the goals are measured for.
OURS = "tuner"


def _within(trace: Trace, budget: int) -> list[dict[str, Any]]:
    return [t for t in trace["trials"] if t["steps"] <= budget]


def first_reach(trace: Trace, *, target: float, budget: int) -> tuple[float, float]:
    """(steps, seconds) when a finished trial first scored ``target`` or more; inf if never."""
    for trial in _within(trace, budget):
        if trial["value"] is not None and trial["value"] >= target:
            return float(trial["steps"]), float(trial["seconds"])
    return math.inf, math.inf


def trials_to_reach(trace: Trace, *, target: float, budget: int) -> float:
    """How many trials had ended (pruned ones included) when one first scored ``target``."""
    for count, trial in enumerate(_within(trace, budget), start=1):
        if trial["value"] is not None and trial["value"] >= target:
            return float(count)
    return math.inf


def best_at(trace: Trace, budget: int) -> float:
    """Best final validation accuracy of the trials finished within ``budget`` steps (0 if none)."""
    values = [t["value"] for t in _within(trace, budget) if t["value"] is not None]
    return max(values, default=0.0)


def summarize(traces: Sequence[Trace], *, target: float, budget: int) -> dict[str, Any]:
    """Medians over seeds (a seed that never reached the target counts as infinitely slow)."""
    reach = [first_reach(t, target=target, budget=budget) for t in traces]
    return {
        "seeds": len(traces),
        "steps_to_target": statistics.median(r[0] for r in reach),
        "seconds_to_target": statistics.median(r[1] for r in reach),
        "trials_to_target": statistics.median(
            trials_to_reach(t, target=target, budget=budget) for t in traces
        ),
        "p_reach": sum(math.isfinite(r[0]) for r in reach) / len(reach),
        "best_at_budget": statistics.median(best_at(t, budget) for t in traces),
        "trials": statistics.median(len(_within(t, budget)) for t in traces),
        "cpu_s": statistics.median(t.get("cpu_s", 0.0) for t in traces),
    }


def goal_ratios(rows: dict[str, dict[str, Any]], *, ours: str, peers: Sequence[str]) -> dict[str, float]:
    """A peer's median steps to target over ours: inf when only we reached the target within
    the budget, 0 when only the peer did, nan when neither did."""
    mine = rows[ours]["steps_to_target"] if ours in rows else math.inf
    out = {}
    for peer in (p for p in peers if p in rows):
        theirs = rows[peer]["steps_to_target"]
        if math.isinf(mine):
            out[peer] = math.nan if math.isinf(theirs) else 0.0
        else:
            out[peer] = theirs / mine
    return out


def median_task(ratios: Sequence[float]) -> float:
    """The median over tasks of a ratio, leaving out tasks where it is undefined; of an even
    count, the lower middle value (the one less favourable to us)."""
    defined = [r for r in ratios if not math.isnan(r)]
    return statistics.median_low(defined) if defined else math.nan


def goals(result: dict[str, Any], peers: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per peer: its steps to target over ours on each task, and on the median task."""
    out: dict[str, dict[str, float]] = {}
    for task, block in result["tasks"].items():
        for peer, ratio in goal_ratios(block["peers"], ours=OURS, peers=peers).items():
            out.setdefault(peer, {})[task] = ratio
    for per_task in out.values():
        per_task["median"] = median_task(list(per_task.values()))
    return out


def _num(value: float, fmt: str, budget: int | None = None) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "never" if budget is None else f"> {budget}" if budget else "inf"
    return format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown: one table of peers per task, the tasks, the goals and checks."""
    lines = [
        "| task | peer | steps to target | trials to target | P(reach) | best val_acc at budget | trials | CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, block in result["tasks"].items():
        for peer, row in block["peers"].items():
            lines.append(
                f"| {task} | {peer} | {_num(row['steps_to_target'], '.0f', block['budget'])} | "
                f"{_num(row.get('trials_to_target', math.nan), '.0f', None)} | {row['p_reach']:.2f} | "
                f"{row['best_at_budget']:.4f} | {row['trials']:g} | {row['cpu_s']:.1f} |"
            )
    lines += [
        "",
        "| task | oracle val_acc (grid best) | target | budget (steps) | raw loop s | tuner trial s | overhead ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, block in result["tasks"].items():
        over = block.get("overhead") or {}
        lines.append(
            f"| {task} | {block['oracle']:.4f} | {block['target']:.4f} | {block['budget']} | "
            f"{over.get('raw_s', math.nan):.3f} | {over.get('framework_s', math.nan):.3f} | "
            f"{over.get('ratio', math.nan):.3f} |"
        )
    goals = result.get("goals") or {}
    if goals:
        lines += ["", "| steps to target, peer / tuner | " + " | ".join(result["tasks"]) + " | median task |"]
        lines.append("|---|" + "---:|" * (len(result["tasks"]) + 1))
        for peer, per_task in goals.items():
            cells = [_ratio(per_task[task], result["tasks"][task]) for task in result["tasks"]]
            lines.append(f"| {peer} | " + " | ".join(cells) + f" | {_num(per_task['median'], '.2f', 0)} |")
        lines += [
            "",
            "(> x: the peer did not reach the target within the budget on the median seed, so the "
            "ratio is at least budget / ours; n/a: neither did.)",
        ]
    return "\n".join([*lines, "", *checks(result)])


def checks(result: dict[str, Any]) -> list[str]:
    """Whether the suite can tell methods apart on this run, and whether we always get there."""
    out = []
    for task, block in result["tasks"].items():
        rows = block["peers"]
        parts = []
        if "random" in rows:
            parts.append(
                f"random reaches the target on {rows['random']['p_reach']:.0%} of seeds (wanted >= 60%)"
            )
        if "tpe-per-process" in rows:
            trials = rows["tpe-per-process"].get("trials_to_target", math.nan)
            said = f"needs {trials:.0f} full trials" if math.isfinite(trials) else "does not reach it"
            parts.append(f"TPE without pruning {said} on the median seed (wanted >= 5 trials)")
        for peer in (p for p in rows if p == OURS or p.startswith(OURS + "+")):
            every = "every seed" if rows[peer]["p_reach"] == 1 else f"{rows[peer]['p_reach']:.0%} of seeds"
            parts.append(f"{peer} reaches it on {every}")
        out.append(f"- {task}: " + "; ".join(parts) + ".")
    return out


def _ratio(value: float, block: dict[str, Any]) -> str:
    if math.isinf(value):
        ours = block["peers"][OURS]["steps_to_target"]
        return f"> {block['budget'] / ours:.2f}"
    return _num(value, ".2f")


def _curve(trace: Trace, grid: Sequence[int]) -> list[float]:
    best, out, trials = math.nan, [], trace["trials"]
    i = 0
    for step in grid:
        while i < len(trials) and trials[i]["steps"] <= step:
            if trials[i]["value"] is not None:
                best = trials[i]["value"] if math.isnan(best) else max(best, trials[i]["value"])
            i += 1
        out.append(best)
    return out


def _values(trace: Trace) -> list[float]:
    return [t["value"] for t in trace["trials"] if t["value"] is not None]


def plot(result: dict[str, Any], traces: dict[str, dict[str, list[Trace]]], path: Path) -> None:
    """Best-so-far validation accuracy against training steps: a panel per task, a line per peer
    (median over seeds), the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(traces)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        block = result["tasks"][task]
        grid = list(np.linspace(0, int(block["budget"]), 101).astype(int))
        styles = itertools.cycle(["-", "--", "-.", ":"])  # peers that agree stay visible
        for peer, runs in traces[task].items():
            curves = np.array([_curve(t, grid) for t in runs], dtype=float)
            # A seed with no finished trial yet ranks below any value; where that is the
            # median, the peer has no median value yet.
            median = np.median(np.where(np.isnan(curves), -1.0, curves), axis=0)
            median[median < 0] = np.nan
            ax.step(grid, median, where="post", label=peer, linestyle=next(styles), alpha=0.85)
        ax.axhline(block["target"], color="k", linestyle="--", linewidth=0.8, label="target")
        ax.set_title(task)
        ax.set_xlabel("training steps (all trials)")
        ax.set_ylabel("best val_acc so far (median over seeds)")
        top = max([block["oracle"], *(v for runs in traces[task].values() for t in runs for v in _values(t))])
        ax.set_ylim(max(0.0, block["target"] - 0.15), min(1.0, top + 0.02))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{result['date']} on {result['machine']} ({result['size']['name']} size)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
