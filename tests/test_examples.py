"""examples/modadd, run as a user runs their own project: from another folder, through --config-dir."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pytest

from tests.conftest import REPO, run_subprocess
from tuner.tracking.tracker import EXPERIMENT_KIND, MLFLOW_UI, MODEL_TRAINING, local_uri, runs_page

PROJECT = REPO / "examples" / "modadd"


@pytest.mark.slow
def test_the_example_project_runs_a_study_from_another_folder(tmp_path):
    data = tmp_path / "modadd.npz"
    subprocess.run([sys.executable, str(PROJECT / "make_data.py"), "--out", str(data)], check=True)
    with np.load(data) as arrays:
        assert arrays["x"].dtype == np.int64
    done = run_subprocess(
        "-cd", str(PROJECT / "conf"), "experiment=modadd", f"data.path={data}", "study.name=modadd",
        "study.n_trials=3", "trainer.max_steps=200", "trainer.val_check_interval=100",
        # Two workers: the project's model module and configs must reach other processes too.
        "launcher=local", "launcher.workers=2",
        cwd=tmp_path, env={"PYTHONPATH": str(PROJECT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "are not arguments of" not in done.stdout + done.stderr

    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    experiment = mlflow.get_experiment_by_name("modadd")
    assert experiment is not None and experiment.tags[EXPERIMENT_KIND] == MODEL_TRAINING
    assert f"then open {runs_page(MLFLOW_UI, experiment.experiment_id)}" in done.stdout
    runs = mlflow.search_runs(experiment_names=["modadd"], output_format="list")
    parent = next(r for r in runs if r.data.tags.get("tuner.role") == "study")
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(trials) == 3
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"lr", "weight_decay"} <= set(run.data.params)  # the project's own search space
        assert "val_acc" in run.data.metrics
    assert parent.data.params["model._target_"] == "modadd_model.TokenMLP"
    assert parent.data.params["optimizer.name"] == "adamw"
