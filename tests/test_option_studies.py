"""Every schedule and every optimizer is a config option that trains in a real short study.

One tiny study per option (one trial, 40 steps of an MLP on scikit-learn's digits), all in
one store so MLflow's database is created once. The LR each step trained with, as
recorded in MLflow, must be ``optimizer.lr`` times the schedule's closed form.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from tuner.optimizer.factory import OPTIMIZERS
from tuner.schedule.functions import SCHEDULES, lr_multiplier
from tuner.tracking.tracker import local_uri

STEPS = 40
#: A real task, small enough that a study of one trial takes about a second.
SMALL = [
    "data=digits",
    "model=mlp",
    "model.hidden=[32]",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=20",
    "tracking.log_every_n_steps=1",  # the LR of every step, checked against the schedule
    "study.n_trials=1",
    "pruner=none",
    # No search: the trial trains the option exactly as shipped.
    "search=lr",
    "search.params.lr=null",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("options") / "runs"


def _study(store: Path, run_cli, name: str, *overrides: str) -> tuple[optuna.trial.FrozenTrial, object]:
    code, out, err = run_cli(*SMALL, f"paths.root={store}", f"study.name={name}", *overrides)
    assert code == 0, out + err
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(store / "optuna.journal"))
    )
    (trial,) = optuna.load_study(study_name=name, storage=storage).trials
    mlflow.set_tracking_uri(local_uri(store))
    (run,) = [
        r
        for r in mlflow.search_runs(experiment_names=[name], output_format="list")
        if r.data.tags.get("tuner.role") == "trial"
    ]
    return trial, run


def _check_trained(trial: optuna.trial.FrozenTrial, run) -> tuple[list[int], list[float]]:
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("reason")
    assert trial.user_attrs["steps"] == STEPS
    assert 0.1 < trial.value <= 1.0  # above chance on 10 classes
    client = mlflow.MlflowClient()
    losses = [
        m.value
        for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
    ]
    assert sum(losses[-5:]) < sum(losses[:5]), "the loss did not go down"
    lrs = sorted(client.get_metric_history(run.info.run_id, "lr"), key=lambda m: m.step)
    assert "lr_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    return [m.step for m in lrs], [m.value for m in lrs]


@pytest.mark.slow
@pytest.mark.parametrize("family", SCHEDULES)
def test_every_schedule_trains(store, run_cli, compose_cfg, family):
    # Warmup on, so each family also composes with it (onecycle ignores it).
    overrides = [
        f"schedule={family}",
        "schedule.warmup=linear",
        "schedule.warmup_fraction=0.1",
        "optimizer=adam",
    ]
    trial, run = _study(store, run_cli, f"schedule-{family}", *overrides)
    steps, lrs = _check_trained(trial, run)
    cfg = compose_cfg(*SMALL, *overrides)
    multiplier = lr_multiplier(dict(cfg.schedule), STEPS)
    expected = [float(cfg.optimizer.lr) * multiplier(step) for step in range(STEPS)]
    assert steps == list(range(STEPS))
    if family == "plateau":
        # Reductions depend on the metric: never above the closed form, which has none.
        assert all(lr <= e * (1 + 1e-6) for lr, e in zip(lrs, expected, strict=True))
        assert lrs[:20] == pytest.approx(expected[:20], rel=1e-6)  # no report before step 20
    else:
        assert lrs == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains(store, run_cli, compose_cfg, name):
    overrides = [f"optimizer={name}", "schedule=warmup_cosine"]
    trial, run = _study(store, run_cli, f"optimizer-{name}", *overrides)
    steps, lrs = _check_trained(trial, run)
    cfg = compose_cfg(*SMALL, *overrides)
    multiplier = lr_multiplier(dict(cfg.schedule), STEPS)
    assert lrs == pytest.approx([float(cfg.optimizer.lr) * multiplier(s) for s in steps], rel=1e-6)
    config = mlflow.MlflowClient().download_artifacts(run.info.run_id, "trial_config.yaml")
    assert f"name: {name}" in Path(config).read_text()
