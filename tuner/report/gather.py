"""What the plots and the report are made of: the Optuna study and its MLflow runs.

Everything is read from the stores, never from the process that ran the study, so a
report can be made of a finished study, of one still running, or of one run elsewhere.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tuner.tracking.tracker import ROLE_TAG, STUDY_TAG, TRIAL_TAG

#: Tag of the runs of the LR range test and of the LR-free comparison arms.
FINDER_ROLE, ARM_TAG, LR_FREE_ARM = "finder", "tuner.arm", "lr_free"
#: MLflow's largest page of runs (its default, 1,000, is smaller than a big study).
_MAX_RUNS = 50_000
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def lr_param(study: optuna.Study) -> str | None:
    """The name of the searched learning rate: ``lr``, else a log-scale ``*lr*`` float."""
    names: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        names.update(trial.distributions)
    if "lr" in names:
        return "lr"
    for name, dist in names.items():
        if "lr" in name.lower() and isinstance(dist, optuna.distributions.FloatDistribution):
            return name
    return None


@dataclass
class StudyData:
    """A study with its MLflow runs, fetched once and shared by the plots and the report.

    Attributes:
        study: The Optuna study (loaded from its storage).
        metric: The optimized validation metric (``study.metric``).
        client: MLflow client on the study's tracking store, or None without one.
        experiment_id: The study's MLflow experiment, or None if it has none.
        parent_run_id: The study's parent run, or None.
        trial_runs: Trial number -> its nested MLflow run.
    """

    study: optuna.Study
    metric: str
    client: MlflowClient | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    trial_runs: dict[int, Run] = field(default_factory=dict)
    _histories: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def maximize(self) -> bool:
        return self.study.direction == optuna.study.StudyDirection.MAXIMIZE

    @cached_property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        """Every trial of the study, the surplus ones of parallel workers left out."""
        return [t for t in self.study.get_trials(deepcopy=False) if not t.system_attrs.get("tuner.surplus")]

    @cached_property
    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.state in _FINISHED]

    @cached_property
    def complete(self) -> list[optuna.trial.FrozenTrial]:
        """Complete trials with a finite value, best first."""
        done = [
            t
            for t in self.trials
            if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        return sorted(done, key=lambda t: float(t.value or 0.0), reverse=self.maximize)

    def top(self, n: int) -> list[optuna.trial.FrozenTrial]:
        return self.complete[:n]

    @cached_property
    def lr_param(self) -> str | None:
        return lr_param(self.study)

    def history(self, number: int, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of a metric logged on a trial's run, in step order (empty if none)."""
        run = self.trial_runs.get(number)
        if run is None or self.client is None:
            return []
        cache_key = (run.info.run_id, key)
        if cache_key not in self._histories:
            points = self.client.get_metric_history(run.info.run_id, key)
            self._histories[cache_key] = sorted((m.step, m.value) for m in points)
        return self._histories[cache_key]

    def runs_tagged(self, tags: Mapping[str, str]) -> list[Run]:
        """Runs of this study (its experiment, or any run tagged with its name) with these tags."""
        if self.client is None:
            return []
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        found: list[Run] = []
        for start in range(0, len(experiments), 100):
            found += self.client.search_runs(
                experiments[start : start + 100], filter_string=where, max_results=_MAX_RUNS
            )
        return [
            r
            for r in found
            if r.info.experiment_id == self.experiment_id or r.data.tags.get(STUDY_TAG) == self.name
        ]

    @cached_property
    def finder_runs(self) -> list[Run]:
        """Runs of the LR range test for this study (tag ``tuner.role=finder``)."""
        return self.runs_tagged({ROLE_TAG: FINDER_ROLE})

    @cached_property
    def lr_free_runs(self) -> list[Run]:
        """Runs of the LR-free comparison arms (tag ``tuner.arm=lr_free``)."""
        return self.runs_tagged({ARM_TAG: LR_FREE_ARM})

    def download_pngs(self, run: Run, into: Path, *, prefix: str) -> list[Path]:
        """Copies every PNG artifact of a run into a folder, named ``<prefix>[-n].png``."""
        if self.client is None:
            return []
        found: list[str] = []
        pending = [""]
        while pending:
            for item in self.client.list_artifacts(run.info.run_id, pending.pop() or None):
                if item.is_dir:
                    pending.append(item.path)
                elif item.path.lower().endswith(".png"):
                    found.append(item.path)
        into.mkdir(parents=True, exist_ok=True)
        out: list[Path] = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, path in enumerate(sorted(found)):
                local = self.client.download_artifacts(run.info.run_id, path, tmp)
                target = into / (f"{prefix}.png" if i == 0 else f"{prefix}-{i}.png")
                shutil.move(local, target)
                out.append(target)
        return out


def load_study_data(
    study: optuna.Study, *, metric: str, client: MlflowClient | None, parent_run_id: str | None = None
) -> StudyData:
    """Collects the study's MLflow experiment, parent run and one run per trial."""
    data = StudyData(study=study, metric=metric, client=client, parent_run_id=parent_run_id)
    if client is None:
        return data
    experiment = client.get_experiment_by_name(study.study_name)
    if experiment is None:
        return data
    data.experiment_id = experiment.experiment_id
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study.study_name}'",
        max_results=_MAX_RUNS,
    )
    by_id = {t.user_attrs.get("mlflow_run_id"): t.number for t in study.get_trials(deepcopy=False)}
    for run in runs:
        role = run.data.tags.get(ROLE_TAG)
        if role == "study" and data.parent_run_id is None:
            data.parent_run_id = run.info.run_id
        elif role == "trial":
            number = by_id.get(run.info.run_id)
            if number is None and run.data.tags.get(TRIAL_TAG, "").isdigit():
                number = int(run.data.tags[TRIAL_TAG])
            if number is not None:
                data.trial_runs[number] = run
    return data


def trial_config_text(data: StudyData, number: int) -> str | None:
    """The resolved config a trial trained with (its ``trial_config.yaml``), if recorded."""
    run = data.trial_runs.get(number)
    if run is None or data.client is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = data.client.download_artifacts(run.info.run_id, "trial_config.yaml", tmp)
        except Exception:  # an artifact store that is gone or unreachable: fall back on the config
            return None
        return Path(path).read_text()
