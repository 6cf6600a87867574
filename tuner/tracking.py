"""MLflow tracking: one parent run per study, one nested run per trial.

Written here rather than with Optuna's MLflowCallback, which is deprecated and logs only
final values. Writes go through one background thread, batched, so a trial never waits
on the store (a ``log_metric`` on MLflow's SQLite store costs about 20 ms).
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

#: MLflow accepts at most this many metrics in one log_batch call.
_BATCH = 1000
ROLE_TAG, STUDY_TAG, TRIAL_TAG, STATE_TAG, REASON_TAG = (
    "tuner.role",
    "tuner.study",
    "tuner.trial",
    "tuner.state",
    "tuner.reason",
)
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}


def local_uri(root: Path) -> str:
    """The default store: an SQLite file beside the study's other outputs."""
    return f"sqlite:///{root.resolve() / 'mlflow.db'}"


class _Writer:
    """Runs store writes in order on one daemon thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="tuner-mlflow", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], object]) -> None:
        self._queue.put(write)

    def _run(self) -> None:
        while (write := self._queue.get()) is not None:
            try:
                write()
            except Exception as exc:  # a tracking hiccup must not kill the study
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Tracker:
    """The MLflow side of one study.

    Args:
        uri: Tracking URI (``sqlite:///...``, ``file:...`` or ``http://127.0.0.1:5000``).
        experiment: Experiment name (the study's name).
        artifact_root: Where a new local experiment keeps artifacts (ignored for servers).
    """

    def __init__(self, uri: str, *, experiment: str, artifact_root: Path | None = None) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if artifact_root is not None and not uri.startswith(("http:", "https:")):
                location = (artifact_root / experiment).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        self._writer = _Writer()

    def parent_run(self, study_name: str, *, params: Mapping[str, Any]) -> str:
        """The study's parent run: the one made by an earlier run of the study, or a new one."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{study_name}'",
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={ROLE_TAG: "study", STUDY_TAG: study_name},
        )
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def start_trial(
        self, parent_id: str, *, study_name: str, number: int, params: Mapping[str, Any], config_yaml: str
    ) -> TrialRun:
        """A nested run for one trial, with its sampled parameters and resolved config."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:04d}",
            tags={
                "mlflow.parentRunId": parent_id,
                ROLE_TAG: "trial",
                STUDY_TAG: study_name,
                TRIAL_TAG: str(number),
                STATE_TAG: "RUNNING",
            },
        )
        trial_run = TrialRun(self, run.info.run_id)
        self._writer.submit(lambda: self._log_params(run.info.run_id, params))
        trial_run.log_text(config_yaml, "trial_config.yaml")
        return trial_run

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def submit(self, write: Callable[[], object]) -> None:
        """Queues a write on the background thread."""
        self._writer.submit(write)

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """Logs several metrics at one step."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.submit(lambda: self.client.log_batch(run_id, metrics=batch))

    def finish_study(self, run_id: str, *, summary: Mapping[str, Any], best_config_yaml: str | None) -> None:
        """Writes the best value, parameters and config to the parent run and ends it."""
        metrics = {
            k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        tags = [RunTag(f"tuner.{k}", str(v)) for k, v in summary.items() if k not in metrics]
        now = int(time.time() * 1000)

        def write() -> None:
            self.client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=tags
            )
            if best_config_yaml is not None:
                self.client.log_text(run_id, best_config_yaml, "best_config.yaml")
            self.client.set_terminated(run_id, "FINISHED")

        self.submit(write)

    def close(self) -> list[str]:
        """Waits for every pending write; returns the errors the store gave, if any."""
        self._writer.close()
        return self._writer.errors


class TrialRun:
    """The nested MLflow run of one trial."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id
        # The LR of every step taken, kept for the trial's lr_curve.png.
        self._lr_steps: list[int] = []
        self._lrs: list[float] = []

    def log_steps(self, steps: list[int], series: Mapping[str, list[float]]) -> None:
        """Per-step values (``lr``, ``train_loss``) in batches of MLflow's maximum size."""
        if "lr" in series:
            self._lr_steps.extend(steps)
            self._lrs.extend(series["lr"])
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, s)
            for k, values in series.items()
            for s, v in zip(steps, values, strict=False)
        ]
        client = self.tracker.client
        for start in range(0, len(metrics), _BATCH):
            self.tracker.submit(
                partial(client.log_batch, self.run_id, metrics=metrics[start : start + _BATCH])
            )

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.tracker.log_metrics(self.run_id, step, metrics)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.tracker.submit(lambda: self.tracker.client.log_text(self.run_id, text, artifact_file))

    def log_artifact(self, path: Path) -> None:
        self.tracker.submit(lambda: self.tracker.client.log_artifact(self.run_id, str(path)))

    def log_lr_curve(self, *, planned: Callable[[], Sequence[float]] | None, title: str) -> None:
        """Plots the LR recorded at every step taken (and the planned one) to ``lr_curve.png``.

        Drawn on the background thread, so the next trial does not wait for matplotlib.
        """
        from tuner.lr_plots import plot_lr

        steps, lrs = list(self._lr_steps), list(self._lrs)

        def write() -> None:
            with tempfile.TemporaryDirectory() as folder:
                path = plot_lr(
                    Path(folder) / "lr_curve.png",
                    title=title,
                    planned=planned() if planned is not None else None,
                    steps=steps,
                    lrs=lrs,
                )
                self.tracker.client.log_artifact(self.run_id, str(path))

        self.tracker.submit(write)

    def end(
        self, state: str, *, value: float | None, reason: str | None, extra: Mapping[str, float] | None = None
    ) -> None:
        """Ends the run with the trial's state (COMPLETE / PRUNED / FAIL) and why."""
        tags = [RunTag(STATE_TAG, state)] + ([RunTag(REASON_TAG, reason[:5000])] if reason else [])
        final = dict(extra or {})
        if value is not None:
            final["value"] = value
        now = int(time.time() * 1000)
        client, run_id = self.tracker.client, self.run_id

        def write() -> None:
            client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, 0) for k, v in final.items()], tags=tags
            )
            client.set_terminated(run_id, _STATUS.get(state, RunStatus.to_string(RunStatus.FAILED)))

        self.tracker.submit(write)
