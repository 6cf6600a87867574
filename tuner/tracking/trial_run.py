"""The nested MLflow run of one trial, written through the study's ``Tracker``
(:mod:`tuner.tracking.tracker`), which it knows only by the few methods it calls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities import RunStatus

from tuner.tracking.spool_format import Op
from tuner.tracking.thinning import StepThinner

#: MLflow accepts at most this many metrics in one log_batch call.
_BATCH = 1000
#: A trial's state and why it ended, as tags of its run.
STATE_TAG, REASON_TAG = "tuner.state", "tuner.reason"
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}


class RunWriter(Protocol):
    """What a trial's run asks of the study's tracker (``tuner.tracking.tracker.Tracker``)."""

    log_every: int

    def resolve(self, ref: str) -> str | None: ...
    def queue(self, op: Op) -> None: ...
    def write_batch(
        self,
        ref: str,
        *,
        metrics: list[list[Any]] | None = None,
        params: list[list[str]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None: ...
    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None: ...
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...
    def end_run(self, run_id: str, status: str) -> None: ...


class TrialRun:
    """The nested MLflow run of one trial.

    ``run_id`` is the run's id, or a placeholder while the run waits to be created
    (the store was away); :meth:`mlflow_id` is the real id once it is known.
    """

    def __init__(self, tracker: RunWriter, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id
        # The LR of every step taken, kept for the trial's lr_curve.png.
        self._lr_steps: list[int] = []
        self._lrs: list[float] = []
        self._thinner = StepThinner(tracker.log_every)
        #: The last value logged of each metric (the study's tie-break reads its last val_loss).
        self.last_metrics: dict[str, float] = {}

    @property
    def mlflow_id(self) -> str | None:
        return self.tracker.resolve(self.run_id)

    def log_steps(self, steps: list[int], series: Mapping[str, list[float]]) -> None:
        """Per-step values (``lr``, ``train_loss``), thinned to one point every
        ``log_every`` steps (:mod:`tuner.tracking.thinning`), in batches of MLflow's maximum size."""
        if "lr" in series:
            self._lr_steps.extend(steps)
            self._lrs.extend(series["lr"])
        self._send_steps(*self._thinner.add(steps, series))

    def _send_steps(self, steps: list[int], series: Mapping[str, list[float]]) -> None:
        now = int(time.time() * 1000)
        metrics = [
            [k, float(v), now, s] for k, values in series.items() for s, v in zip(steps, values, strict=False)
        ]
        for start in range(0, len(metrics), _BATCH):
            self.tracker.write_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    def flush_steps(self) -> None:
        """Sends the steps since the last thinned point: at the run's end, and before
        Optuna is told a trial's result, so that a kill after the tell loses none."""
        self._send_steps(*self._thinner.rest())

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.last_metrics.update(metrics)
        self.tracker.log_metrics(self.run_id, step, metrics)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.tracker.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: Path) -> None:
        self.tracker.queue(Op("artifact", self.run_id, {"path": str(path)}))

    def log_lr_curve(self, *, plan: Mapping[str, Any] | None, title: str) -> None:
        """Plots the LR recorded at every step taken (and the planned one, from
        :func:`tuner.schedule.plot.lr_plan`) to ``lr_curve.png``.

        A write like the others, kept in the spool as data: the tracker's thread computes
        the planned curve and asks the sidecar process (:mod:`tuner.tracking.sidecar`) to draw it, so
        neither the next trial nor the training loop (through the GIL) waits for matplotlib.
        """
        steps, lrs = list(self._lr_steps), list(self._lrs)
        data = {"title": title, "plan": dict(plan) if plan else None, "steps": steps, "lrs": lrs}
        self.tracker.queue(Op("plot", self.run_id, data))

    def end(
        self, state: str, *, value: float | None, reason: str | None, extra: Mapping[str, float] | None = None
    ) -> None:
        """Ends the run with the trial's state (COMPLETE / PRUNED / FAIL) and why."""
        self.flush_steps()
        tags = {STATE_TAG: state, **({REASON_TAG: reason} if reason else {})}
        final = dict(extra or {})
        if value is not None:
            final["value"] = value
        now = int(time.time() * 1000)
        self.tracker.write_batch(
            self.run_id, metrics=[[k, float(v), now, 0] for k, v in final.items()], tags=tags
        )
        self.tracker.end_run(self.run_id, _STATUS.get(state, RunStatus.to_string(RunStatus.FAILED)))
