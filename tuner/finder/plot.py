"""The range test's plot: loss against LR (log axis), one curve per seed, each rule's mark."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training box

import matplotlib.pyplot as plt
import numpy as np

from tuner.finder.rangetest import Curve
from tuner.finder.rules import RULES, Marks

_MARKERS = {"steepest": "v", "valley": "o", "min/10": "s"}


def plot_curves(
    curves: Sequence[Curve],
    marks: Sequence[Marks],
    *,
    suggestion: float,
    spread: float,
    path: Path,
    title: str,
) -> Path:
    """Writes the plot to ``path`` (PNG) and returns it.

    The raw loss is drawn faint, the centred smoothed loss the rules read solid; each
    rule's mark sits on its seed's curve; the combined suggestion is a vertical line.
    """
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for i, (curve, mark) in enumerate(zip(curves, marks, strict=True)):
        colour = colours[i % len(colours)]
        ax.plot(curve.lrs, curve.losses, color=colour, alpha=0.2, linewidth=0.7)
        ax.plot(curve.lrs, mark.smooth, color=colour, linewidth=1.6, label=f"seed {curve.seed}")
        log_lrs = np.log10(curve.lrs)
        for rule in RULES:
            lr = mark.rules[rule]
            loss = float(np.interp(np.log10(lr), log_lrs, mark.smooth))
            ax.plot([lr], [loss], _MARKERS[rule], color=colour, markersize=7, markeredgecolor="black")
        top = max(top, float(mark.smooth[0]))
    for rule in RULES:  # legend entries for the marks, once
        ax.plot([], [], _MARKERS[rule], color="grey", markeredgecolor="black", label=rule)
    ax.axvline(suggestion, color="black", linestyle="--", label=f"suggested {suggestion:.2e} (x{spread:.2f})")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0.0, top=top * 1.5 if top > 0 else None)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
