"""The study's plots: PNG with matplotlib (Agg), interactive HTML with plotly when installed.

Each plot is drawn once at the end of a study (or by ``mode=report``), never per trial.
Matplotlib is used through ``Figure`` objects, not pyplot, so nothing depends on or
changes the process's global backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.figure import Figure

from tuner.report.analysis import LRRange
from tuner.report.curves import learning_curves, lr_schedules
from tuner.report.figures import STYLE, Artifact, has_plotly, save_png, write_html
from tuner.report.gather import StudyData
from tuner.report.lr_wd import lr_weight_decay, weight_decay_param
from tuner.study.ties import raw_value


def _value_of(trial: optuna.trial.FrozenTrial) -> float | None:
    value = raw_value(trial)
    if value is None and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    return float(value) if value is not None and math.isfinite(value) else None


def optimization_history(data: StudyData, out: Path, *, html: bool) -> Artifact:
    art = Artifact("optimization_history", "Optimization history")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for state, style in STYLE.items():
        pts = [
            (t.number, v) for t in data.finished if t.state.name == state if (v := _value_of(t)) is not None
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, c=style["color"], marker=style["marker"], label=style["label"])
    best, running = [], None
    for t in sorted(data.complete, key=lambda t: t.number):
        v = float(raw_value(t) or 0.0)
        running = v if running is None else (max(running, v) if data.maximize else min(running, v))
        best.append((t.number, running))
    if best and data.finished:
        best.append((max(t.number for t in data.finished), best[-1][1]))
        ax.step(*zip(*best, strict=True), where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel=data.metric, title=f"{data.name}: {data.metric} by trial")
    _legend(ax)
    art.png = save_png(fig, out / f"{art.name}.png")
    if html and data.complete:
        art.html = write_html(
            optuna.visualization.plot_optimization_history(data.study, target_name=data.metric),
            out / f"{art.name}.html",
        )
    return art


def _legend(ax: Any) -> None:
    """A legend, unless nothing was drawn (a study of failed trials only): matplotlib
    warns on the console about an empty one."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")


def metric_vs_lr(data: StudyData, out: Path, *, html: bool, basin: LRRange | None) -> Artifact:
    art = Artifact("metric_vs_lr", f"{data.metric} against the learning rate")
    param = data.lr_param
    if param is None:
        art.note = "no learning-rate parameter was searched"
        return art
    series: dict[str, list[tuple[float, float, int]]] = {}
    for t in data.finished:
        v = _value_of(t)
        if param in t.params and v is not None:
            series.setdefault(t.state.name, []).append((float(t.params[param]), v, t.number))
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    if basin is not None:
        ax.axvspan(basin.low, basin.high, color="tab:green", alpha=0.15, label="robust range")
        ax.axvline(
            basin.recommended, color="tab:green", ls="--", label=f"recommended {basin.recommended:.3g}"
        )
    for state, pts in series.items():
        style = STYLE.get(state, STYLE["FAIL"])
        xs, ys, _ = zip(*pts, strict=True)
        ax.scatter(xs, ys, c=style["color"], marker=style["marker"], label=style["label"])
    if data.complete and param in data.complete[0].params:
        b = data.complete[0]
        ax.scatter(
            [b.params[param]],
            [float(raw_value(b) or 0.0)],
            marker="*",
            s=200,
            c="gold",
            edgecolors="black",
            label="best",
        )
    ax.set_xscale("log")
    ax.set(xlabel=f"{param} (log scale)", ylabel=data.metric, title=f"{data.name}: {data.metric} vs {param}")
    _legend(ax)
    art.png = save_png(fig, out / f"{art.name}.png")
    if html:
        import plotly.graph_objects as go

        pfig = go.Figure()
        for state, pts in series.items():
            xs, ys, ns = zip(*pts, strict=True)
            pfig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers",
                    name=state.lower(),
                    text=[f"trial {n}" for n in ns],
                    marker={"symbol": {"COMPLETE": "circle", "PRUNED": "x"}.get(state, "triangle-down")},
                )
            )
        if basin is not None:
            pfig.add_vrect(x0=basin.low, x1=basin.high, fillcolor="green", opacity=0.15, line_width=0)
            pfig.add_vline(x=basin.recommended, line_dash="dash", line_color="green")
        pfig.update_layout(title=art.title, xaxis={"type": "log", "title": param}, yaxis_title=data.metric)
        art.html = write_html(pfig, out / f"{art.name}.html")
    return art


# long: each column's values, ticks and labels for one Plotly figure
def parallel_coordinates(data: StudyData, out: Path, *, html: bool) -> Artifact:
    art = Artifact("parallel_coordinates", "Parallel coordinates")
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in data.complete:
        dists.update(t.distributions)
    if not data.complete or not dists:
        art.note = "needs complete trials with searched parameters"
        return art
    names = sorted(dists)
    columns: list[tuple[str, list[float], list[str]]] = []
    for name in names:
        dist = dists[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            choices = [str(c) for c in dist.choices]
            raw = [
                float(choices.index(str(t.params[name]))) if name in t.params else math.nan
                for t in data.complete
            ]
            columns.append((name, [r / max(len(choices) - 1, 1) for r in raw], choices))
            continue
        log = bool(getattr(dist, "log", False))
        lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
        f = math.log10 if log else float
        raw = [f(float(t.params[name])) if name in t.params else math.nan for t in data.complete]
        columns.append(
            (name, [(r - f(lo)) / ((f(hi) - f(lo)) or 1.0) for r in raw], [f"{lo:.3g}", f"{hi:.3g}"])
        )
    values = [float(raw_value(t) or 0.0) for t in data.complete]
    vlo, vhi = min(values), max(values)
    columns.append(
        (data.metric, [(v - vlo) / ((vhi - vlo) or 1.0) for v in values], [f"{vlo:.4g}", f"{vhi:.4g}"])
    )
    fig = Figure(figsize=(max(6.0, 1.8 * len(columns)), 4))
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["viridis" if data.maximize else "viridis_r"]
    order = np.argsort(values) if data.maximize else np.argsort(values)[::-1]  # best drawn last, on top
    for i in order:
        ys = [col[1][i] for col in columns]
        ax.plot(range(len(columns)), ys, color=cmap((values[i] - vlo) / ((vhi - vlo) or 1.0)), alpha=0.8)
    for x, (_name, _ys, ticks) in enumerate(columns):
        ax.axvline(x, color="grey", lw=0.8)
        for j, tick in enumerate(ticks):
            ax.annotate(
                tick,
                (x, j / max(len(ticks) - 1, 1)),
                fontsize="x-small",
                xytext=(3, 0),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(columns)), [c[0] for c in columns])
    ax.set_yticks([])
    ax.set_title(f"{data.name}: complete trials, colour = {data.metric}")
    art.png = save_png(fig, out / f"{art.name}.png")
    if html:
        art.html = write_html(
            optuna.visualization.plot_parallel_coordinate(data.study, target_name=data.metric),
            out / f"{art.name}.html",
        )
    return art


def param_importances(
    data: StudyData, out: Path, *, html: bool, found: dict[str, float], note: str | None
) -> Artifact:
    art = Artifact("param_importances", "Parameter importances (fANOVA)", note=note)
    if not found:
        return art
    names = sorted(found, key=lambda k: found[k])
    fig = Figure(figsize=(6, 1 + 0.5 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [found[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.annotate(f"{found[n]:.2f}", (found[n], i), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set(xlim=(0, 1.1), xlabel=f"importance for {data.metric}", title=f"{data.name}: parameter importances")
    art.png = save_png(fig, out / f"{art.name}.png")
    if html:
        import plotly.graph_objects as go

        pfig = go.Figure(go.Bar(x=[found[n] for n in names], y=names, orientation="h"))
        pfig.update_layout(title=art.title, xaxis_title=f"importance for {data.metric}")
        art.html = write_html(pfig, out / f"{art.name}.html")
    return art


def finder(data: StudyData, out: Path) -> list[Artifact]:
    """The LR range test's own plots, when a finder run of this study logged any."""
    arts: list[Artifact] = []
    for i, run in enumerate(data.finder_runs):
        prefix = "finder" if i == 0 else f"finder-{i}"
        for png in data.download_pngs(run, out, prefix=prefix):
            arts.append(Artifact(png.stem, f"LR range test ({run.info.run_name})", png=png))
    return arts


def draw_all(
    data: StudyData,
    out: Path,
    *,
    top: int,
    basin: LRRange | None,
    found: dict[str, float],
    note: str | None,
    html: bool = True,
) -> list[Artifact]:
    """Every plot of the study, written into ``out``; HTML too when plotly is there."""
    out.mkdir(parents=True, exist_ok=True)
    html = html and has_plotly()
    return [
        optimization_history(data, out, html=html),
        metric_vs_lr(data, out, html=html, basin=basin),
        parallel_coordinates(data, out, html=html),
        param_importances(data, out, html=html, found=found, note=note),
        # Only for studies that searched a weight decay: elsewhere it would be one more "not drawn".
        *([lr_weight_decay(data, out, html=html, top=top)] if weight_decay_param(data.study) else []),
        learning_curves(data, out, html=html, top=top),
        lr_schedules(data, out, html=html, top=top),
        *finder(data, out),
    ]
