"""Stopping cleanly on Ctrl-C, SIGTERM (``scancel``, a SLURM time limit) or SIGUSR2.

Lightning turns a KeyboardInterrupt inside ``fit`` into ``sys.exit(1)``, and one raised
inside a library (OmegaConf, matplotlib) can leave it half-done and raise something
else. So while a study runs, from its first trial to its report, the first signal only
asks it to stop at the next safe point: a trial in training stops at the next step and
ends as interrupted (failed, re-queued, its MLflow run KILLED), the study stops, its
pending MLflow writes are sent. A second Ctrl-C ends the process at once, with exit code
130 and no traceback: every MLflow write is already in the spool file
(:mod:`tuner.tracking.spool`), which the next run sends, and that run ends the trial left running.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from tuner._exit import flush_streams
from tuner.errors import INTERRUPTED

#: Signals that stop a study. SIGUSR2 is SLURM's (and submitit's) warning before the time limit.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
_requested: list[str] = []


def requested() -> str | None:
    """The name of the signal that asked the study to stop, or None."""
    return _requested[0] if _requested else None


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A handler that turns SIGTERM / SIGUSR2 into the same path as Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def graceful_stop() -> Iterator[None]:
    """While a trial trains, records the first stop signal instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        _requested.append(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, stop_now)

    _requested.clear()
    for sig in STOP_SIGNALS:
        signal.signal(sig, ask_to_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_now(signum: int, frame: FrameType | None) -> None:
    """A second Ctrl-C: ends the process here, whatever it was doing, without a traceback.

    Nothing is unwound: every tracking write is in the spool file already, and the trial
    this process held is ended by the next run (:func:`tuner.storage.coordination.reap_dead_owners`).
    """
    print(f"\n{INTERRUPTED} (stopped at once; the next run sends what MLflow lacks)", file=sys.stderr)
    flush_streams()
    os._exit(130)


class StopOnRequest(pl.Callback):
    """Ends training at the next step once a stop signal arrived; every DDP rank stops together.

    Args:
        every: Under DDP, steps between the collective checks of the flag.
    """

    def __init__(self, *, every: int = 10) -> None:
        self.every = every
        self.stopped = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        wanted = requested() is not None
        if trainer.world_size > 1:
            if trainer.global_step % self.every:
                return
            wanted = trainer.strategy.reduce_boolean_decision(wanted, all=False)
        if wanted:
            self.stopped = True
            trainer.should_stop = True
