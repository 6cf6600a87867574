"""The best trials in the plane of the learning rate and the weight decay.

AdamW shrinks the weights by ``lr * weight_decay`` each step, so good trials lie along a
band of roughly constant product rather than at one LR: the dashed diagonals mark
constant ``lr * weight_decay``, and the best trials are numbered.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tuner.report.figures import Artifact, save_png, write_html
from tuner.report.gather import StudyData

NAME = "lr_weight_decay"


def weight_decay_param(study: optuna.Study) -> str | None:
    """The name of the searched weight decay: ``weight_decay``, else a float named ``*weight_decay*`` or ``wd``."""
    names: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        names.update(trial.distributions)
    floats = [n for n, d in names.items() if isinstance(d, optuna.distributions.FloatDistribution)]
    if "weight_decay" in floats:
        return "weight_decay"
    return next((n for n in floats if "weight_decay" in n.lower() or n.lower() == "wd"), None)


def lr_weight_decay(data: StudyData, out: Path, *, html: bool, top: int) -> Artifact:
    """Complete trials at (lr, weight decay), coloured by the metric, the ``top`` best numbered."""
    art = Artifact(NAME, "Best trials in the learning rate x weight decay plane")
    lr, wd = data.lr_param, weight_decay_param(data.study)
    points = [t for t in data.complete if lr in t.params and wd in t.params] if lr and wd else []
    if not points:
        art.note = "needs complete trials that searched both the learning rate and the weight decay"
        return art
    assert lr is not None and wd is not None
    xs = np.array([float(t.params[lr]) for t in points])
    ys = np.array([float(t.params[wd]) for t in points])
    values = np.array([float(t.value or 0.0) for t in points])
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    _products(ax, xs, ys)
    # Best drawn last, on top; data.complete is best first.
    dots = ax.scatter(
        xs[::-1], ys[::-1], c=values[::-1], cmap="viridis" if data.maximize else "viridis_r", s=40
    )
    fig.colorbar(dots, ax=ax, label=data.metric)
    for rank, trial in enumerate(points[:top], start=1):
        ax.annotate(f"{rank}: #{trial.number}", (xs[rank - 1], ys[rank - 1]), xytext=(4, 4),
                    textcoords="offset points", fontsize="x-small")  # fmt: skip
    ax.scatter(
        [xs[0]],
        [ys[0]],
        marker="*",
        s=250,
        c="gold",
        edgecolors="black",
        label=f"best ({data.metric} {values[0]:.4g})",
    )
    ax.set(xscale="log", yscale="log", xlabel=f"{lr} (log scale)", ylabel=f"{wd} (log scale)",
           title=f"{data.name}: best trials in {lr} x {wd}")  # fmt: skip
    ax.legend(fontsize="small", loc="best")
    art.png = save_png(fig, out / f"{NAME}.png")
    if html:
        art.html = _html(data, points, lr, wd, out)
    return art


def _products(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> None:
    """Dashed diagonals of constant ``lr * weight_decay``, one per decade in the plotted range."""
    products = np.log10(xs * ys)
    lo, hi = math.floor(products.min()), math.ceil(products.max())
    xline = np.geomspace(xs.min() / 2, xs.max() * 2, 50)
    for exponent in range(lo, hi + 1):
        ax.plot(xline, 10.0**exponent / xline, ls="--", lw=0.7, color="grey")
        ax.annotate(f"lr*wd=1e{exponent}", (xline[-1], 10.0**exponent / xline[-1]), fontsize="xx-small",
                    color="grey", ha="right")  # fmt: skip
    ax.set_xlim(xs.min() / 2, xs.max() * 2)
    ax.set_ylim(ys.min() / 2, ys.max() * 2)


def _html(data: StudyData, points: list[optuna.trial.FrozenTrial], lr: str, wd: str, out: Path) -> Path:
    import plotly.graph_objects as go

    pfig = go.Figure(
        go.Scatter(
            x=[t.params[lr] for t in points],
            y=[t.params[wd] for t in points],
            mode="markers",
            text=[f"trial {t.number}: {data.metric} {t.value:.4g}" for t in points],
            marker={"color": [t.value for t in points], "colorscale": "Viridis", "showscale": True},
        )
    )
    pfig.update_layout(
        title=f"{data.name}: best trials in {lr} x {wd}",
        xaxis={"type": "log", "title": lr},
        yaxis={"type": "log", "title": wd},
    )
    return write_html(pfig, out / f"{NAME}.html")
