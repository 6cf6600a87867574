"""Curves of the top trials overlaid: learning curves and LR schedules, PNG and HTML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
from matplotlib.figure import Figure

from tuner.report.figures import Artifact, save_png, write_html
from tuner.report.gather import StudyData
from tuner.study.ties import raw_value


def _ema(values: list[float], alpha: float = 0.1) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def _overlay(
    data: StudyData,
    out: Path,
    *,
    html: bool,
    name: str,
    title: str,
    top: int,
    panels: list[tuple[str, Callable[[optuna.trial.FrozenTrial], list[tuple[int, float]]], bool]],
) -> Artifact:
    """Curves of the top trials, one panel per ``(label, curve of a trial, log y)``."""
    art = Artifact(name, title)
    trials = data.top(top)
    curves = [[(t, fn(t)) for t in trials] for _label, fn, _log in panels]
    if not any(pts for panel in curves for _t, pts in panel):
        art.note = "no recorded curve for the top trials"
        return art
    fig = Figure(figsize=(6 * len(panels), 4))
    lr = data.lr_param
    for k, ((label, _fn, log), panel) in enumerate(zip(panels, curves, strict=True)):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for t, pts in panel:
            if pts:
                tag = f"#{t.number} {data.metric}={float(raw_value(t) or 0.0):.4g}"
                tag += f" {lr}={float(t.params[lr]):.3g}" if lr and lr in t.params else ""
                ax.plot(*zip(*pts, strict=True), label=tag)
        if log:
            ax.set_yscale("log")
        ax.set(xlabel="step", ylabel=label, title=f"{label}, top {len(trials)} trials")
        ax.legend(fontsize="x-small")
    art.png = save_png(fig, out / f"{name}.png")
    if html:
        from plotly.subplots import make_subplots

        pfig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
        for k, panel in enumerate(curves):
            for t, pts in panel:
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    pfig.add_scatter(x=xs, y=ys, name=f"trial {t.number}", row=1, col=k + 1, mode="lines")
        pfig.update_layout(title=title)
        art.html = write_html(pfig, out / f"{name}.html")
    return art


def learning_curves(data: StudyData, out: Path, *, html: bool, top: int) -> Artifact:
    def val(t: optuna.trial.FrozenTrial) -> list[tuple[int, float]]:
        return sorted(t.intermediate_values.items()) or data.history(t.number, data.metric)

    def train(t: optuna.trial.FrozenTrial) -> list[tuple[int, float]]:
        pts = data.history(t.number, "train_loss")
        return list(zip([s for s, _ in pts], _ema([v for _, v in pts]), strict=True))

    return _overlay(
        data,
        out,
        html=html,
        name="learning_curves",
        title="Learning curves of the top trials",
        top=top,
        panels=[(data.metric, val, False), ("train_loss (EMA 0.1)", train, True)],
    )


def lr_schedules(data: StudyData, out: Path, *, html: bool, top: int) -> Artifact:
    return _overlay(
        data,
        out,
        html=html,
        name="lr_schedules",
        title="LR schedules of the top trials",
        top=top,
        panels=[("lr", lambda t: data.history(t.number, "lr"), True)],
    )
