"""The LR curve figure, and a helper process that draws it away from training.

A trial's ``lr_curve.png`` costs tens of milliseconds of matplotlib, in Python, for every
trial; drawn on the tracker's thread it holds the GIL that the training loop needs
(measured: 1.13x on a 500-step trial). :class:`FigureProcess` sends the drawing to one
child process (``python -m tuner.lr_figure``) that imports only matplotlib, so it runs
on another core. This module imports nothing heavy at the top, for that child's sake.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    axes.set_title(title, fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


class _Refused(Exception):
    """The child could not draw one figure (it is still alive)."""


class FigureProcess:
    """Draws LR curves in a child process; falls back to this process if the child fails.

    One request at a time (callers may be on several threads). The child starts on the
    first request and stops on :meth:`close`.
    """

    def __init__(self) -> None:
        self._child: subprocess.Popen[str] | None = None
        self._broken = False
        self._lock = threading.Lock()

    def plot_lr(self, path: Path, **kwargs: Any) -> Path:
        """As :func:`plot_lr`, drawn by the child process."""
        with self._lock:
            if not self._broken:
                try:
                    return self._ask(path, kwargs)
                except _Refused:
                    pass  # this figure failed there; drawing it here raises the error itself
                except (OSError, ValueError, RuntimeError):
                    # The child could not start or died: this process draws from now on.
                    self._broken = True
                    self._stop()
        return plot_lr(path, **kwargs)

    def _ask(self, path: Path, kwargs: dict[str, Any]) -> Path:
        if self._child is None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tuner.lr_figure"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # errors come back as answers
                text=True,
            )
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        values = {
            k: v if isinstance(v, str) or not isinstance(v, Sequence) else list(v) for k, v in kwargs.items()
        }
        request = {"path": str(path), **values}
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        answer = child.stdout.readline().strip()
        if not answer:
            raise RuntimeError("the figure process ended")
        if answer != "ok":
            raise _Refused(answer)
        return path

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()


def serve() -> None:
    """The child's loop: one JSON request per line on stdin, ``ok`` or the error on stdout."""
    # Ctrl-C reaches the whole process group; the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            plot_lr(Path(request.pop("path")), **request)
            answer = "ok"
        except Exception as exc:  # the parent falls back to drawing itself
            answer = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
