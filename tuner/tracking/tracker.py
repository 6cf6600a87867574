"""MLflow tracking: one parent run per study, one nested run per trial.

Written here rather than with Optuna's MLflowCallback, which is deprecated and logs only
final values. Writes go through one background thread, batched, so a trial never waits
on the store (a ``log_metric`` on MLflow's SQLite store costs about 20 ms), and that
thread keeps them on disk while the store is away (:mod:`tuner.tracking.spool`). Every text sent
is stripped of passwords first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.entities import Param, RunTag, ViewType
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from tuner.compat import hard_delete
from tuner.secrets import mask_secrets, mask_value
from tuner.tracking.health import probe_server
from tuner.tracking.sidecar import Sidecar
from tuner.tracking.spool import SpoolWriter
from tuner.tracking.spool_format import PENDING, Op, orphaned_spools, spool_file
from tuner.tracking.store_template import create_from_template
from tuner.tracking.trial_run import STATE_TAG, TrialRun

#: Seconds a metrics batch waits for the next ones, to be written together (per-step
#: windows and evaluations of a trial: a few writes a second, each a store transaction).
_LINGER = 1.0
#: MLflow's HTTP client retries a failed request for minutes by default; the spool
#: retries instead, so a request gets one quick try.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
ROLE_TAG, STUDY_TAG, TRIAL_TAG = "tuner.role", "tuner.study", "tuner.trial"
#: The Optuna study a parent run belongs to, and the mark of a replaced study's runs.
STUDY_KEY_TAG, REPLACED_TAG = "tuner.study_key", "tuner.replaced"
#: The experiment tag MLflow 3's UI reads for an experiment's type (model training, not
#: GenAI: its runs, not an Overview of traces).
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
#: Where ``mlflow ui`` serves by default.
MLFLOW_UI = "http://127.0.0.1:5000"


def runs_page(server: str, experiment_id: str) -> str:
    """The URL of an experiment's runs table in the MLflow UI at ``server``.

    MLflow 3.17's UI takes the experiment's type from its GenAI / Model training switch
    (remembered per browser, GenAI at first) before the tag; ``workflowType`` in the URL
    sets the switch, so the page opens on the runs whatever the browser saw before.
    """
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def local_uri(root: Path) -> str:
    """The default store: an SQLite file beside the study's other outputs."""
    return f"sqlite:///{root.resolve() / 'mlflow.db'}"


def tracking_uri(cfg: DictConfig) -> str:
    """The MLflow URI: the configured one, or the SQLite store under ``paths.root``."""
    return str(cfg.tracking.uri) if cfg.tracking.uri else local_uri(Path(str(cfg.paths.root)))


class Tracker:
    """The MLflow side of one study.

    Args:
        uri: Tracking URI (``sqlite:///...``, ``file:...`` or ``http://127.0.0.1:5000``).
        experiment: Experiment name (the study's name).
        artifact_root: Where a new local experiment keeps artifacts (ignored for servers).
        spool_dir: Where writes are kept while the store is away (None: in memory only).
        max_wait: Longest wait between two retries while the store is away, in seconds.
        sidecar: Whether writes and plots move to a child process from the second run on
            (:mod:`tuner.tracking.sidecar`; ``tracking.sidecar``).
        log_every: Per-step series keep one point every this many steps
            (``tracking.log_every_n_steps``; :mod:`tuner.tracking.thinning`).
    """

    def __init__(
        self,
        uri: str,
        *,
        experiment: str,
        artifact_root: Path | None = None,
        spool_dir: Path | None = None,
        max_wait: float = 30.0,
        sidecar: bool = True,
        log_every: int = 1,
    ) -> None:
        self.uri = uri
        self.log_every = log_every
        self.artifact_root = artifact_root
        remote = uri.startswith(("http:", "https:"))
        if remote:
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        create_from_template(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.created_experiment = False
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if EXPERIMENT_KIND not in found.tags:  # a study from before the tag was set
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        else:
            location = None
            if artifact_root is not None and not remote:
                location = (artifact_root / experiment).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
            self.created_experiment = True
        probe: Callable[[], str | None] = (lambda: probe_server(uri)) if remote else (lambda: None)
        # LR curves and the writes themselves run in a child process, off the training GIL.
        # Started with the second run of this process (see start_run), if wanted.
        self.sidecar = Sidecar()
        self.use_sidecar = sidecar
        self._runs_started = 0
        self._writer = SpoolWriter(
            self.client,
            sidecar=self.sidecar,
            uri=uri,
            probe=probe,
            spool_path=spool_file(spool_dir, experiment) if spool_dir is not None else None,
            max_wait=max_wait,
            describe_store=f"MLflow at {mask_secrets(uri)}",
            linger=_LINGER,
        )
        if spool_dir is not None and spool_dir.is_dir():
            replayed = self._writer.replay(orphaned_spools(spool_dir, experiment))
            if replayed:
                print(f"note: sending {replayed} MLflow writes kept from an earlier run of this study")

    def parent_run(self, study_name: str, *, params: Mapping[str, Any], study_key: str = "") -> str:
        """The study's parent run: the one made by an earlier run of the study, or a new one.

        ``study_key`` names the Optuna study itself (its storage id): a parent run made for
        another study of that name (replaced with ``study.resume=false``) is set apart by
        :meth:`set_apart` and a new one is made, so the two studies' runs never mix.
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{study_name}'",
        )
        for found in runs:
            if found.data.tags.get(STUDY_KEY_TAG, study_key) != study_key:
                self.set_apart(found, study_name)
                continue
            run_id = found.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STUDY_KEY_TAG, study_key)
            self._writer.names[run_id] = study_name
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={ROLE_TAG: "study", STUDY_TAG: study_name, STUDY_KEY_TAG: study_key},
        )
        self._writer.names[run.info.run_id] = study_name
        for start in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=_params(dict(params), start))
        return run.info.run_id

    def set_apart(self, parent: Any, study_name: str) -> None:
        """Keeps a replaced study's runs under their own, marked parent, out of the study's report.

        Their ``tuner.study`` tag becomes ``<name> (replaced)`` (the report and the next runs
        look runs up by it), the parent is renamed so, and runs left RUNNING end as KILLED.
        """
        replaced = f"{study_name} (replaced)"
        nested = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            max_results=50000,
        )
        for run in [parent, *nested]:
            tags = [RunTag(STUDY_TAG, replaced), RunTag(REPLACED_TAG, "true")]
            if run is parent:
                tags.append(RunTag("mlflow.runName", replaced))
            self.client.log_batch(run.info.run_id, tags=tags)
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
        print(f"note: the replaced study's MLflow runs are kept apart, under the parent run '{replaced}'")

    def running_trial_runs(self, parent_id: str) -> list[Any]:
        """The trial runs of a parent run that are still RUNNING."""
        return list(
            self.client.search_runs(
                [self.experiment_id],
                filter_string=(
                    f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{ROLE_TAG}` = 'trial' "
                    "and attributes.status = 'RUNNING'"
                ),
                max_results=10000,
            )
        )

    def start_trial(
        self, parent_id: str, *, study_name: str, number: int, params: Mapping[str, Any], config_yaml: str
    ) -> TrialRun:
        """A nested run for one trial, with its sampled parameters and resolved config."""
        tags = {ROLE_TAG: "trial", STUDY_TAG: study_name, TRIAL_TAG: str(number)}
        return self.start_run(
            parent_id, run_name=f"trial-{number:04d}", tags=tags, params=params, config_yaml=config_yaml
        )

    def start_run(
        self,
        parent_id: str,
        *,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        config_yaml: str,
    ) -> TrialRun:
        """A nested run of the study's parent run, with its params and config (``trial_config.yaml``).

        While the store is away the run is created later, from the spool.
        """
        name = run_name
        tags = {"mlflow.parentRunId": parent_id, STATE_TAG: "RUNNING", **tags}
        self._runs_started += 1
        if self._runs_started == 2 and self.use_sidecar:
            # The sidecar pays off from a second run on, whose training overlaps the first's
            # writes. A process that runs one trial (a worker per trial, a sweeper's job)
            # would pay the child's imports (1.6 s of CPU) and gain nothing.
            self.sidecar.start()
        ref: str | None = None
        if self._writer.healthy:
            try:
                ref = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
                self._writer.names[ref] = name
            except Exception:  # the store went away: the spool creates the run when it is back
                ref = None
        if ref is None:
            ref = f"{PENDING}{uuid.uuid4().hex}"
            self._writer.submit(
                Op("create", ref, {"experiment_id": self.experiment_id, "run_name": name, "tags": tags})
            )
        trial_run = TrialRun(self, ref)
        values = dict(params)
        for start in range(0, len(values), 100):
            self.write_batch(ref, params=[[p.key, p.value] for p in _params(values, start)])
        trial_run.log_text(config_yaml, "trial_config.yaml")
        return trial_run

    def resolve(self, ref: str) -> str | None:
        """The MLflow run id of a run reference, once the run exists."""
        return self._writer.resolve(ref)

    def submit(self, write: Callable[[], object]) -> None:
        """Queues any write on the background thread (kept in memory only in an outage)."""
        self._writer.submit(Op("call", "", call=write))

    def queue(self, op: Op) -> None:
        """Queues one spooled write (an artifact, a plot) on the background thread."""
        self._writer.submit(op)

    def write_batch(
        self,
        ref: str,
        *,
        metrics: list[list[Any]] | None = None,
        params: list[list[str]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Queues metrics, params and tags of a run (tags masked) as one spooled batch."""
        data: dict[str, Any] = {}
        if metrics:
            data["metrics"] = metrics
        if params:
            data["params"] = params
        if tags:
            data["tags"] = [[k, mask_secrets(str(v))[:5000]] for k, v in tags.items()]
        if data:
            self._writer.submit(Op("batch", ref, data))

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """Logs several metrics at one step."""
        now = int(time.time() * 1000)
        self.write_batch(run_id, metrics=[[k, float(v), now, step] for k, v in metrics.items()])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Logs a text artifact, passwords masked."""
        self._writer.submit(Op("text", run_id, {"text": mask_secrets(text), "file": artifact_file}))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Sets tags on a run (values masked)."""
        self.write_batch(run_id, tags=tags)

    def end_run(self, run_id: str, status: str) -> None:
        """Ends a run: FINISHED, FAILED or KILLED."""
        self._writer.submit(Op("end", run_id, {"status": status}))

    def finish_study(self, run_id: str, *, summary: Mapping[str, Any], best_config_yaml: str | None) -> None:
        """Writes the best value, parameters and config to the parent run and ends it."""
        metrics = {
            k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        now = int(time.time() * 1000)
        self.write_batch(
            run_id,
            metrics=[[k, float(v), now, 0] for k, v in metrics.items()],
            tags={f"tuner.{k}": str(v) for k, v in summary.items() if k not in metrics},
        )
        if best_config_yaml is not None:
            self.log_text(run_id, best_config_yaml, "best_config.yaml")
        self.end_run(run_id, "FINISHED")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: writes submitted after it are not sent."""
        return self._writer.closing

    def drain(self, *, timeout: float) -> bool:
        """Waits until every write so far is sent; False if ``timeout`` s passed first."""
        return self._writer.drain(timeout=timeout)

    def close(self, *, timeout: float = 60.0) -> list[str]:
        """Sends every pending write; returns what could not be logged, one line each.

        Args:
            timeout: Seconds to wait for a store that is away before leaving the rest in the spool.
        """
        try:
            return self._writer.close(timeout=timeout)
        finally:
            self.sidecar.close()

    def discard(self, parent_id: str) -> None:
        """Removes what this run of a study made: its runs, and the experiment if it made it.

        For a study stopped by a configuration error before any trial finished. Local stores
        lose the runs for good (with their artifacts); a server keeps them as deleted runs.
        """
        self.close(timeout=0.0)
        runs = [parent_id] + [
            r.info.run_id
            for r in self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                run_view_type=ViewType.ALL,
            )
        ]
        experiment = self.client.get_experiment(self.experiment_id)
        for run_id in runs:
            self.client.delete_run(run_id)
            hard_delete(self.client, run_id=run_id)
            _remove_local(experiment.artifact_location, run_id)
        if self.created_experiment:
            self.client.delete_experiment(self.experiment_id)
            hard_delete(self.client, experiment_id=self.experiment_id)
            _remove_local(experiment.artifact_location, "")
            if self.artifact_root is not None and self.artifact_root.is_dir():
                with contextlib.suppress(OSError):  # kept when other experiments use it
                    self.artifact_root.rmdir()


def _params(values: Mapping[str, Any], start: int) -> list[Param]:
    """Up to 100 params (MLflow's batch limit) from ``start``, secrets masked."""
    items = list(values.items())[start : start + 100]
    return [Param(str(k), str(mask_value(str(k), v))[:6000]) for k, v in items]


def _remove_local(artifact_location: str, run_id: str) -> None:
    """Deletes a local artifact folder (of one run, or the whole experiment's)."""
    parsed = urlparse(artifact_location)
    if parsed.scheme not in ("", "file"):
        return
    folder = Path(unquote(parsed.path)) / run_id
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
