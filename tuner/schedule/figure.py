"""The LR curve figure. Imports only matplotlib (inside the function), for the sidecar's sake."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_lr(
    path: Path,
    *,
    title: str,
    planned: Sequence[float] | None = None,
    steps: Sequence[int] = (),
    lrs: Sequence[float] = (),
    warmup: int = 0,
) -> Path:
    """Draws an LR curve to a PNG.

    Args:
        path: The PNG to write.
        title: Figure title.
        planned: Closed-form LR at steps ``0..len-1`` (dashed), or None.
        steps: Steps a run took.
        lrs: The LR it recorded at each of them (solid).
        warmup: Steps of warmup, marked by a dotted line when > 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if planned is not None:
        style = "--" if steps else "-"
        axes.plot(
            range(len(planned)), planned, style, color="tab:gray", lw=1.2, label="planned (closed form)"
        )
    if steps:
        axes.plot(steps, lrs, color="tab:blue", lw=1.6, label=f"recorded ({len(steps)} steps)")
    if warmup > 0:
        axes.axvline(warmup, color="tab:orange", ls=":", lw=1, label=f"end of warmup ({warmup})")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    # Short tick labels (0.1e-4 as 1.0 with a x1e-5 offset), so fixed margins fit any LR.
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axes.set_title(title, fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    # Fixed margins: tight_layout measured every label first, a third of the figure's time.
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.86 if "\n" in title else 0.9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
